"""Genomic regions as a command line gives them: `CHROM:START-END` (1-based, inclusive) or `CHROM`, and the two
naming conventions of human chromosomes (`1` vs `chr1`). Reading a reference at a region: core/references.py."""

import re

REGION = re.compile(r"^(?P<chrom>[^:\s]+)(?::(?P<start>[\d,]+)-(?P<end>[\d,]+))?$")


class RegionError(ValueError):
    """A region or reference that cannot be used as given; the message names it and where it came from."""


def other_spelling(chrom: str) -> str:
    """chr1 <-> 1: the two naming conventions of human references."""
    return chrom[3:] if chrom.startswith("chr") else f"chr{chrom}"


def region_bounds(region: str, source: str) -> tuple[str, int | None, int | None]:
    """`chr1:1001-2000` (1-based, inclusive) -> ("chr1", 1001, 2000); `chr1` -> ("chr1", None, None)."""
    match = REGION.match(region.strip())
    if not match:
        raise RegionError(f"{source}: region {region!r} is not CHROM or CHROM:START-END")
    if match["start"] is None:
        return match["chrom"], None, None
    return match["chrom"], int(match["start"].replace(",", "")), int(match["end"].replace(",", ""))
