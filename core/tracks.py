"""Genome-browser tracks: per-base values written as bigWig (pyBigWig) and bedGraph side by side, on the
reference's chromosome names and sizes (its .fai), so that IGV and the UCSC browser open them as they are.

A track is a list of (chrom, start, value): one base each, 0-based as bedGraph and bigWig count. Both files are
written under temporary names and renamed when complete (core/files.atomic_file). Entries are sorted into the
reference's record order here: a browser needs them sorted, and a VCF need not be.
"""

import math
from pathlib import Path

from nucel.core.files import atomic_file

TRACK_SUFFIXES = (".bw", ".bedgraph")


class TrackError(ValueError):
    """A track that cannot be written as given (a chromosome the reference lacks, two values for one base)."""


def write_track(
    stem: str | Path, chrom_sizes: dict[str, int], entries: list[tuple[str, int, float]], description: str
) -> list[Path]:
    """`stem`.bw and `stem`.bedgraph from per-base `entries`; NaN values are left out (no data). Returns the paths."""
    import pyBigWig

    order = {name: i for i, name in enumerate(chrom_sizes)}
    unknown = sorted({chrom for chrom, _, _ in entries} - set(order))
    if unknown:
        raise TrackError(f"{stem}: chromosome(s) {', '.join(unknown[:5])} are not in the reference's index")
    entries = sorted(((c, s, v) for c, s, v in entries if not math.isnan(v)), key=lambda e: (order[e[0]], e[1]))
    for (chrom, start, _), (next_chrom, next_start, _) in zip(entries, entries[1:]):
        if (chrom, start) == (next_chrom, next_start):
            raise TrackError(f"{stem}: two values for {chrom}:{start + 1}; a track holds one value per base")
    stem = Path(stem)
    bigwig, bedgraph = stem.with_name(stem.name + ".bw"), stem.with_name(stem.name + ".bedgraph")
    with atomic_file(bigwig) as staging:
        track = pyBigWig.open(str(staging), "w")
        track.addHeader(list(chrom_sizes.items()))
        if entries:
            starts = [s for _, s, _ in entries]
            track.addEntries(
                [c for c, _, _ in entries],
                starts,
                ends=[s + 1 for s in starts],
                values=[float(v) for _, _, v in entries],
            )
        track.close()
    name = stem.name.replace(" ", "_")
    with atomic_file(bedgraph) as staging, open(staging, "w") as handle:
        handle.write(f'track type=bedGraph name="{name}" description="{description}"\n')
        handle.writelines(f"{chrom}\t{start}\t{start + 1}\t{value:.6g}\n" for chrom, start, value in entries)
    return [bigwig, bedgraph]
