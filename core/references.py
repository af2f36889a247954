"""Reference genomes read by position through htslib (`pysam.FastaFile`): `score-variants`, `ism` and `attention`
fetch the bases they need, in any order, without reading the genome from the start.

A reference is a plain FASTA or a bgzip-compressed FASTA, with its htslib index beside it (`.fai`; bgzip also `.gzi`).
A missing or outdated index is built once where the folder is writable. A FASTA compressed with plain gzip cannot
be read by position: it is recognised (a gzip file without the BGZF header) and refused with the one command that
makes an indexable copy, `nucel index REF.fa.gz` (nucel/index.py). Pre-training keeps its streaming reader
(core/sequences.read_fasta): it reads every base once, in order.

Chromosome names that differ by a `chr` prefix (`1` vs `chr1`) are matched, and counted so that a command can say
so; a name the reference lacks is answered with the reference's own names and the nearest one.
"""

import difflib
import gzip
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from nucel.core.bed import read_bed
from nucel.core.regions import RegionError, other_spelling, region_bounds

INDEXED_SUFFIX = ".bgz.fa.gz"  # what `nucel index` writes: bgzip-compressed, with .fai and .gzi beside it
NAMES_SHOWN = 5  # contig names quoted in a message about a missing one
MOSTLY_N = 0.5  # a region with more than this share of N (or other non-ACGT codes) has too little DNA to score


class ReferenceFileError(RegionError):
    """A reference that cannot be read by position as it is; the message says the one thing that fixes it."""


def compression(path: Path) -> str:
    """ "bgzip", "gzip" or "plain", from the file's first bytes: BGZF is gzip with a `BC` extra field (SAM spec 4.1)."""
    with open(path, "rb") as handle:
        head = handle.read(18)
    if head[:2] != b"\x1f\x8b":
        return "plain"
    has_extra_field = len(head) >= 4 and head[3] & 0x04
    return "bgzip" if has_extra_field and head[12:14] == b"BC" else "gzip"


def indexed_copy_name(path: str | Path) -> Path:
    """Where `nucel index` writes the indexable copy by default: genome.fa.gz -> genome.bgz.fa.gz, beside it."""
    path = Path(path)
    stem = path.name.removesuffix(".gz").removesuffix(".bgz")
    for suffix in (".fasta", ".fa", ".fna", ".fsa"):
        stem = stem.removesuffix(suffix)
    return path.with_name(stem.removesuffix(".bgz") + INDEXED_SUFFIX)


def index_command(path: Path) -> str:
    """The command line that makes `path` readable by position (with -o where its folder is not writable)."""
    target = indexed_copy_name(path)
    if os.access(target.parent, os.W_OK):
        return f"nucel index {path}"
    return f"nucel index {path} -o WRITABLE_FOLDER/{target.name}"


def index_paths(path: Path, compressed: bool) -> list[Path]:
    return [Path(f"{path}.fai"), *([Path(f"{path}.gzi")] if compressed else [])]


def build_indexes(path: Path) -> None:
    """htslib's .fai (and .gzi for bgzip) beside `path`, each written under a temporary name and then renamed, so
    that a run stopped half-way never leaves an index that looks complete."""
    import pysam

    compressed = compression(path) == "bgzip"
    final = index_paths(path, compressed)
    staged = [index.with_name(f".{index.name}.partial") for index in final]
    options = ["--fai-idx", str(staged[0]), *(["--gzi-idx", str(staged[1])] if compressed else [])]
    try:
        pysam.faidx(str(path), *options)
        for source, target in zip(staged, final):
            os.replace(source, target)
    except pysam.SamtoolsError as error:
        raise ReferenceFileError(
            f"{path}: htslib cannot index it as FASTA (is every line of a record, but its last, the same length?); "
            f"`nucel index {path}` writes an indexable copy"
        ) from error
    finally:
        for leftover in staged:
            leftover.unlink(missing_ok=True)


def check_reference_file(path: str | Path) -> Path:
    """`path` if it is a FASTA that can be read by position now (its indexes present, or built here); else a
    ReferenceFileError naming the command that makes it so. Reads no sequence: a command checks its reference
    before it loads a model."""
    path = Path(path)
    if path.is_dir():
        raise ReferenceFileError(f"{path} is a directory; --reference names a FASTA file")
    if not path.is_file():
        raise ReferenceFileError(f"{path}: no such file")
    kind = compression(path)
    if kind == "gzip":
        raise ReferenceFileError(
            f"{path} is compressed with plain gzip, which cannot be read by position; run `{index_command(path)}` "
            f"once (it writes {indexed_copy_name(path).name} with its .fai and .gzi indexes) and pass that file as "
            "--reference"
        )
    opener = gzip.open if kind == "bgzip" else open
    with opener(path, "rb") as handle:
        first = handle.read(1)
    if first != b">":
        raise ReferenceFileError(f"{path}: not a FASTA file (it does not start with a '>' header line)")
    indexes = index_paths(path, kind == "bgzip")
    modified = path.stat().st_mtime
    if all(index.is_file() and index.stat().st_mtime >= modified for index in indexes):
        return path
    if not os.access(path.parent, os.W_OK):
        missing = ", ".join(index.name for index in indexes)
        raise ReferenceFileError(
            f"{path}: its index ({missing}) is missing or older than the FASTA, and its folder is "
            f"not writable; run `{index_command(path)}` once and pass that file as --reference"
        )
    build_indexes(path)
    return path


class Reference:
    """A reference FASTA read by position: `fetch(name, start, end)` (0-based, end exclusive) in any order.

    `resolve(chrom)` gives the reference's name for a chromosome, trying the other `chr` spelling when needed and
    counting such lookups in `renamed` ((name asked for, name found) -> lookups)."""

    def __init__(self, path: str | Path):
        import pysam

        self.path = check_reference_file(path)
        try:
            self.fasta = pysam.FastaFile(str(self.path))
        except (OSError, ValueError) as error:
            raise ReferenceFileError(f"{self.path}: htslib cannot open it as an indexed FASTA ({error})") from error
        self.lengths = dict(zip(self.fasta.references, self.fasta.lengths))
        self.renamed: Counter = Counter()

    @property
    def names(self) -> list[str]:
        return list(self.lengths)

    def resolve(self, chrom: str) -> str | None:
        """The reference's name for `chrom` (itself, or its other `chr` spelling), None when it has neither."""
        if chrom in self.lengths:
            return chrom
        other = other_spelling(chrom)
        if other in self.lengths:
            self.renamed[chrom, other] += 1
            return other
        return None

    def fetch(self, name: str, start: int, end: int) -> str:
        """Bases start..end (0-based, end exclusive) of record `name`, case kept (soft-masking)."""
        return self.fasta.fetch(name, start, end)

    def view(self, name: str, start: int = 0, end: int | None = None) -> "ReferenceSlice":
        return ReferenceSlice(self, name, start, self.lengths[name] if end is None else end)

    def missing_contig_hint(self, chrom: str) -> str:
        """What the reference has instead of `chrom`: its first few names and the nearest one."""
        names = self.names
        shown = ", ".join(names[:NAMES_SHOWN]) + (f", ... ({len(names):,} in all)" if len(names) > NAMES_SHOWN else "")
        slices = [name for name in names if name.startswith((f"{chrom}:", f"{other_spelling(chrom)}:"))]
        if slices:  # e.g. the BRCA1 reference's one record `chr17:41180001-41300000`
            return (
                f"the reference has {shown}; {slices[0]!r} looks like a slice of {chrom} whose positions start at "
                "1: use a reference of the whole chromosome, or positions relative to the slice"
            )
        nearest = difflib.get_close_matches(chrom, names, n=1, cutoff=0.5)
        return f"the reference has {shown}" + (f"; nearest name: {nearest[0]!r}" if nearest else "")

    def close(self) -> None:
        self.fasta.close()


@dataclass(frozen=True)
class ReferenceSlice:
    """Bases start..end of one reference record, read when indexed or sliced: a variant's context without
    holding its chromosome in memory. Behaves as the string it stands for where a sequence is read."""

    reference: Reference
    name: str
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start

    def __getitem__(self, key) -> str:
        if isinstance(key, slice):
            first, last, step = key.indices(len(self))
            if step != 1:
                raise ValueError("a reference slice is read with step 1 only")
            return self.reference.fetch(self.name, self.start + first, self.start + max(first, last))
        index = key + len(self) if key < 0 else key
        if not 0 <= index < len(self):
            raise IndexError(f"position {key} is outside {self.name}:{self.start + 1}-{self.end}")
        return self.reference.fetch(self.name, self.start + index, self.start + index + 1)

    def __str__(self) -> str:
        return self[:]

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            return len(other) == len(self) and str(self) == other
        return NotImplemented

    __hash__ = None  # compared by content with strings; never a dictionary key


@dataclass(frozen=True)
class GenomeRegion:
    """A region of a reference: `name` (the user's label), `chrom` (as the user wrote it), `reference_name` (the
    reference's record), `start`..`end` 0-based, end exclusive, and its bases (upper-cased, checked as DNA)."""

    name: str
    chrom: str
    reference_name: str
    start: int
    end: int
    sequence: str

    @property
    def first_position(self) -> int:
        """The 1-based position of the region's first base."""
        return self.start + 1


def missing_contig_error(reference: Reference, chrom: str, source: str) -> ReferenceFileError:
    return ReferenceFileError(
        f"{source}: chromosome {chrom!r} is not in the reference {reference.path} "
        f"(nor {other_spelling(chrom)!r}); {reference.missing_contig_hint(chrom)}"
    )


def fetch_region(
    reference: Reference, chrom: str, start: int | None, end: int | None, name: str, source: str
) -> GenomeRegion:
    """The region `chrom`, bases start..end (0-based, end exclusive; None: the whole record) checked against the
    reference: the chromosome present (by either spelling) and the bounds inside it."""
    from nucel.core.sequences import clean_sequence

    found = reference.resolve(chrom)
    if found is None:
        raise missing_contig_error(reference, chrom, source)
    length = reference.lengths[found]
    start, end = (0, length) if start is None else (start, end)
    if not 0 <= start < end <= length:
        raise ReferenceFileError(f"{source}: region {name!r} is outside {chrom} (1..{length}) or empty")
    sequence = clean_sequence(reference.fetch(found, start, end), f"{source} ({name})")
    return GenomeRegion(name, chrom, found, start, end, sequence)


def read_region(region: str, reference: Reference, source: str = "--region") -> GenomeRegion:
    """`CHROM:START-END` (1-based, inclusive) or `CHROM` in the reference, as `--region` gives it."""
    chrom, first, last = region_bounds(region, source)
    return fetch_region(reference, chrom, None if first is None else first - 1, last, region.strip(), source)


def read_bed_regions(path: str | Path, reference: Reference) -> list[GenomeRegion]:
    """Every region of a BED file (core/bed.py) in the reference, each checked as `--region` is: all of them read
    and checked before a command loads its model."""
    return [fetch_region(reference, bed.chrom, bed.start, bed.end, bed.name, bed.source) for bed in read_bed(path)]


def command_regions(
    region: str | None, bed: str | None, reference_path: str | None
) -> tuple[Reference, list[GenomeRegion]]:
    """The reference and the regions of `--region` or `--regions FILE.bed` (one of them given)."""
    if not reference_path:
        option = "--region" if region else "--regions"
        raise RegionError(f"{option} needs --reference (the FASTA the coordinates refer to)")
    reference = Reference(reference_path)
    return reference, [read_region(region, reference)] if region else read_bed_regions(bed, reference)


def n_share(sequence: str) -> float:
    """The share of a sequence's bases that are not A, C, G or T."""
    return 1 - sum(map(sequence.count, "ACGT")) / len(sequence) if sequence else 1.0


def overlapping(regions: list[GenomeRegion]) -> tuple[GenomeRegion, GenomeRegion] | None:
    """Two regions that share a base, if any (a track holds one value per base)."""
    ordered = sorted(regions, key=lambda r: (r.reference_name, r.start))
    pairs = zip(ordered, ordered[1:])
    return next(((a, b) for a, b in pairs if a.reference_name == b.reference_name and b.start < a.end), None)
