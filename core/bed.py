"""Regions from a BED file (`--regions FILE.bed`): BED is 0-based and half-open (`chr1 0 100` is the first 100
bases, 1-based positions 1..100), one region a line: chrom, start, end and an optional name (column 4).

A region without a name (or with `.`) is named `chrom:start-end` in 1-based inclusive coordinates, as `--region`
writes it; names that repeat get `#2`, `#3`, ... so that every output row or file is told apart.
"""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from nucel.core.regions import RegionError

HEADER_PREFIXES = ("#", "track", "browser")  # the UCSC browser's header lines


@dataclass(frozen=True)
class BedRegion:
    chrom: str
    start: int  # 0-based
    end: int  # exclusive
    name: str
    source: str  # "regions.bed line 3", for messages


def read_bed(path: str | Path) -> list[BedRegion]:
    """Every region of a BED file, checked (three tab- or space-separated columns at least, 0 <= start < end)."""
    path = Path(path)
    if path.is_dir():
        raise RegionError(f"{path} is a directory; --regions names a BED file")
    if not path.is_file():
        raise RegionError(f"{path}: no such file")
    regions, seen = [], Counter()
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip() or line.startswith(HEADER_PREFIXES):
                continue
            source = f"{path} line {line_number}"
            fields = line.rstrip("\n").split("\t") if "\t" in line else line.split()
            if len(fields) < 3:
                raise RegionError(f"{source}: a BED line needs chrom, start and end; found {len(fields)} column(s)")
            chrom, start_text, end_text = (field.strip() for field in fields[:3])
            if not (start_text.isdigit() and end_text.isdigit()):
                raise RegionError(
                    f"{source}: start {start_text!r} and end {end_text!r} must be whole numbers "
                    "(BED is 0-based, end exclusive)"
                )
            start, end = int(start_text), int(end_text)
            if start >= end:
                raise RegionError(f"{source}: start {start} is not before end {end} (BED is 0-based, end exclusive)")
            given = fields[3].strip() if len(fields) > 3 else ""
            name = given if given not in ("", ".") else f"{chrom}:{start + 1}-{end}"
            seen[name] += 1
            regions.append(BedRegion(chrom, start, end, name if seen[name] == 1 else f"{name}#{seen[name]}", source))
    if not regions:
        raise RegionError(f"{path}: no regions (expected lines of chrom, start, end[, name])")
    return regions
