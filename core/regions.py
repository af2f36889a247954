"""Genomic regions and references: `CHROM:START-END` (1-based, inclusive), and the sequences a reference FASTA holds.

Chromosome names that differ by a `chr` prefix (`1` vs `chr1`) are matched, and counted so that a command can say so.
"""

import re
from collections import Counter
from pathlib import Path

from nucel.core.sequences import clean_sequence, read_fasta

REGION = re.compile(r"^(?P<chrom>[^:\s]+)(?::(?P<start>[\d,]+)-(?P<end>[\d,]+))?$")


class RegionError(ValueError):
    """A region or reference that cannot be used as given; the message names it and where it came from."""


def other_spelling(chrom: str) -> str:
    """chr1 <-> 1: the two naming conventions of human references."""
    return chrom[3:] if chrom.startswith("chr") else f"chr{chrom}"


def load_reference(path: str | Path, names: set[str]) -> dict[str, str]:
    """The reference sequences named in `names`, or named in the other convention (for the error message
    that says so); the others are read past, not kept."""
    wanted = names | {other_spelling(name) for name in names}
    return {name: sequence for name, sequence in read_fasta(path) if name in wanted}


def reference_sequence(reference: dict[str, str], chrom: str, reference_path, source: str) -> str:
    if chrom in reference:
        return reference[chrom]
    other = other_spelling(chrom)
    hint = f" (it has {other!r}: the two files name chromosomes differently)" if other in reference else ""
    raise RegionError(f"{source}: chromosome {chrom!r} is not in the reference {reference_path}{hint}")


class ReferenceGenome:
    """The chromosomes of a reference FASTA(.gz), read on demand and one at a time. Reading goes on from where it
    stopped, so variants sorted like the reference cost one pass over it; a jump back costs a pass from the start.
    A name that is not in the reference is looked up in the other convention (chr1 <-> 1), counted in `renamed`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records = read_fasta(self.path)
        self.name = self.sequence = None  # the chromosome held now
        self.seen: set[str] = set()
        self.names: set[str] | None = None  # every record name, once a pass has reached the end
        self.renamed: Counter = Counter()  # (name asked for, name in the reference) -> lookups

    def get(self, chrom: str) -> str | None:
        """The sequence of `chrom` (or of its other spelling), None when the reference has neither."""
        for candidate in (chrom, other_spelling(chrom)):
            sequence = self._find(candidate)
            if sequence is not None:
                if candidate != chrom:
                    self.renamed[chrom, candidate] += 1
                return sequence
        return None

    def _find(self, name: str) -> str | None:
        if name == self.name:
            return self.sequence
        for _ in range(2):  # on from here to the end, then once more from the start
            if self.names is not None and name not in self.names:
                return None
            for record_name, sequence in self.records:
                self.seen.add(record_name)
                if record_name == name:
                    self.name, self.sequence = record_name, sequence
                    return sequence
            self.names = self.seen
            self.records = read_fasta(self.path)
        return None


def region_bounds(region: str, source: str) -> tuple[str, int | None, int | None]:
    """`chr1:1001-2000` (1-based, inclusive) -> ("chr1", 1001, 2000); `chr1` -> ("chr1", None, None)."""
    match = REGION.match(region.strip())
    if not match:
        raise RegionError(f"{source}: region {region!r} is not CHROM or CHROM:START-END")
    if match["start"] is None:
        return match["chrom"], None, None
    return match["chrom"], int(match["start"].replace(",", "")), int(match["end"].replace(",", ""))


def parse_region(region: str, reference: dict[str, str], reference_path, source: str) -> tuple[str, int, str]:
    """`chr1:1001-2000` (1-based, inclusive) or `chr1` -> (chrom, first position, sequence)."""
    chrom, start, end = region_bounds(region, source)
    sequence = reference_sequence(reference, chrom, reference_path, source)
    if start is None:
        return chrom, 1, sequence
    if not 1 <= start <= end <= len(sequence):
        raise RegionError(f"{source}: region {region!r} is outside {chrom} (1..{len(sequence)}) or empty")
    return chrom, start, sequence[start - 1 : end]


def read_region(region: str, reference_path: str | None) -> tuple[str, int, str]:
    """(chromosome, first position, sequence) of `--region` in `--reference`, as `nucel ism` and `nucel attention` read it."""
    if not reference_path:
        raise ValueError("--region needs --reference (the FASTA the coordinates refer to)")
    match = REGION.match(region.strip())
    reference = load_reference(reference_path, {match["chrom"]} if match else set())
    chrom, first, sequence = parse_region(region, reference, reference_path, "--region")
    return chrom, first, clean_sequence(sequence, f"--region {region}")
