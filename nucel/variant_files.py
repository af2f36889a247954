"""Variant files read for `nucel score-variants`: VCF/BCF through htslib (`pysam.VariantFile`), and TSV tables.

- VCF (.vcf, .vcf.gz: bgzip, or plain gzip read through a temporary decompressed copy) and BCF: one row per ALT
  allele; a record's rows share its reference lookup. A file is read twice: once before any model loads (every
  record parsed, so a malformed line fails in seconds, and the contigs htslib adds for a header that lacks them
  are known before the output's header is written), then for scoring.
  `regions` restricts the records: by the index (.tbi/.csi) where the file has one, else by reading past the others.
- TSV: `position`, `ref`, `alt`, an optional `id`, and `sequence` (the DNA itself) or `region` (in the reference);
  or the project's own genomic table (`chrom`, `pos`, `ref`, `alt`, optional `variant_id`/`id`: the BRCA1 table
  ../shared/data/vep/brca1_sge_findlay2018_snvs.tsv).
The reference is read by position (core/references.py), so the order of the variants costs nothing.
"""

import csv
import dataclasses
import gzip
import shutil
import tempfile
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from nucel.core.bed import read_bed
from nucel.core.references import Reference, compression
from nucel.core.regions import region_bounds
from nucel.core.variant_scores import VariantError, VariantRow, check_variant
from nucel.tokenization import validate_dna

VCF_SUFFIXES = (".vcf", ".vcf.gz", ".vcf.bgz", ".bcf")
GENOMIC_TABLE_COLUMNS = ("chrom", "pos", "ref", "alt")  # the project's own variant tables (BRCA1)
ID_COLUMNS = ("id", "variant_id")


def is_vcf(path: str | Path) -> bool:
    return str(path).lower().endswith(VCF_SUFFIXES)


def check_input_file(path: Path) -> None:
    if path.is_dir():
        raise VariantError(f"{path} is a directory; --variants names a VCF, BCF or TSV file")
    if not path.is_file():
        raise VariantError(f"{path}: no such file")


def parse_regions(text: str) -> list[tuple[str, int, int | None]]:
    """`--regions`: `CHROM:START-END[,...]` (1-based, inclusive) or a BED file -> (chrom, start, end) 0-based, end
    exclusive (None: to the chromosome's end), overlapping ones merged so that no record is read twice."""
    if text.lower().endswith(".bed") or Path(text).is_file():
        spans = [(region.chrom, region.start, region.end) for region in read_bed(text)]
    else:
        spans = []
        for part in filter(None, (piece.strip() for piece in text.split(","))):
            chrom, first, last = region_bounds(part, "--regions")
            spans.append((chrom, 0 if first is None else first - 1, last))
    merged: list[tuple[str, int, int | None]] = []
    for chrom, start, end in sorted(spans, key=lambda s: (s[0], s[1])):
        if merged and merged[-1][0] == chrom and (merged[-1][2] is None or start <= merged[-1][2]):
            previous_end = merged[-1][2]
            merged[-1] = (chrom, merged[-1][1], None if previous_end is None or end is None else max(previous_end, end))
        else:
            merged.append((chrom, start, end))
    return merged


def chromosome_view(reference: Reference, chrom: str, bounds: tuple[int, int] | None = None):
    """The reference's bases of `chrom` (either `chr` spelling; counted once per call) as a ReferenceSlice read on
    demand, or None when the reference has neither name. `bounds` (0-based, end exclusive): only that region."""
    found = reference.resolve(chrom)
    if found is None:
        return None
    start, end = bounds or (0, reference.lengths[found])
    return reference.view(found, start, end)


def genome_row(
    reference: Reference, context, name: str, chrom: str, position: int, ref: str, alt: str, source: str
) -> VariantRow:
    """A variant at a 1-based chromosome position checked in `context` (`chromosome_view`); a missing chromosome's
    reason names what the reference has instead."""
    offset = position - 1 - (context.start if context is not None else 0)
    row = check_variant(name, chrom, position, ref, alt, context, offset, source)
    if row.status == "missing_contig":
        row = dataclasses.replace(row, reason=f"{row.reason}; {reference.missing_contig_hint(chrom)}")
    return row


class VcfInput:
    """A VCF or BCF read through htslib (see the module docstring). `pending` holds (record, rows) for each record
    whose rows `rows()` has handed out and a VCF writer has not yet written: the writer takes them back in order."""

    def __init__(self, path: str | Path, regions: list[tuple[str, int, int | None]] | None = None):
        import pysam

        pysam.set_verbosity(0)  # htslib's warnings (a contig missing from the header) are handled here, not printed
        self.path, self.regions = Path(path), regions
        check_input_file(self.path)
        self.readable = self.path  # what htslib opens
        if compression(self.path) == "gzip":  # htslib reads bgzip, not plain gzip: read a decompressed copy instead
            self._copy_folder = tempfile.TemporaryDirectory(prefix="nucel-vcf-")
            self.readable = Path(self._copy_folder.name) / self.path.name.removesuffix(".gz")
            with gzip.open(self.path, "rb") as source, open(self.readable, "wb") as target:
                shutil.copyfileobj(source, target)
        self.header_line_count = self._count_header_lines()
        self.pending: deque = deque()
        self.header_text = ""  # the header as htslib completes it while reading (contigs it had to add included)
        for _ in self._records():  # the validation pass
            pass

    def _count_header_lines(self) -> int | None:
        """Header lines of a text VCF, so that a record's line can be named (None for BCF)."""
        if self.path.suffix.lower() == ".bcf":
            return None
        with open(self.path, "rb") as handle:
            gzipped = handle.read(2) == b"\x1f\x8b"
        count = 0
        with gzip.open(self.path, "rt", errors="replace") if gzipped else open(self.path, errors="replace") as handle:
            for line in handle:
                if not line.startswith("#"):
                    break
                count += 1
        return count

    def _open(self):
        import pysam

        try:
            return pysam.VariantFile(str(self.readable))
        except (ValueError, OSError, NotImplementedError) as error:
            raise VariantError(
                f"{self.path}: not a VCF or BCF that htslib can read (a VCF starts with a "
                "##fileformat=VCFv4.x line and has a #CHROM header line)"
            ) from error

    def _records(self) -> Iterator:
        handle = self._open()
        if self.regions and handle.index is not None:
            chunks = (self._fetch(handle, chrom, start, end) for chrom, start, end in self.regions)
            records = (record for chunk in chunks for record in chunk)
        else:
            records = (record for record in iter(handle) if self._inside_regions(record))
        number = 0
        try:
            for number, record in enumerate(records, start=1):
                yield record
        except OSError as error:
            where = (
                f"line {self.header_line_count + number + 1}"
                if self.header_line_count is not None
                else f"record {number + 1}"
            )
            raise VariantError(
                f"{self.path} {where}: htslib cannot parse this record (a VCF line has 8 tab-separated "
                "columns at least, CHROM POS ID REF ALT QUAL FILTER INFO, and POS is a whole number)"
            ) from error
        finally:
            self.header_text = str(handle.header)
            handle.close()

    @staticmethod
    def _fetch(handle, chrom: str, start: int, end: int | None) -> Iterator:
        try:
            yield from handle.fetch(chrom, start, end)
        except ValueError:  # a contig the index does not have: no records there
            return

    def _inside_regions(self, record) -> bool:
        if not self.regions:
            return True
        return any(
            record.chrom == chrom and start < record.pos and (end is None or record.pos - 1 < end)
            for chrom, start, end in self.regions
        )

    def source(self, number: int, record) -> str:
        if self.header_line_count is not None and not self.regions:
            return f"{self.path} line {self.header_line_count + number}"
        return f"{self.path} record {record.chrom}:{record.pos}"

    def rows(self, reference: Reference, strict: bool = False, keep_records: bool = False) -> Iterator[VariantRow]:
        """One row per ALT allele (a record without ALT: one row, ALT "."); `strict`: the first row that is not
        "ok" raises a VariantError naming its line."""
        for number, record in enumerate(self._records(), start=1):
            source = self.source(number, record)
            context = chromosome_view(reference, record.chrom)  # one lookup for all the record's alleles
            rows = []
            for alt in record.alts or (".",):
                name = record.id or f"{record.chrom}:{record.pos} {record.ref}>{alt}"
                row = genome_row(reference, context, name, record.chrom, record.pos, record.ref, alt, source)
                if strict and row.status != "ok":
                    raise VariantError(row.reason)
                rows.append(row)
            if keep_records:
                self.pending.append((record, len(rows)))
            yield from rows


def read_vcf(path: str | Path, reference_path: str | Path, strict: bool = False) -> list[VariantRow]:
    """All rows of a VCF/BCF in a list."""
    return list(VcfInput(path).rows(Reference(reference_path), strict))


def table_rows(path: str | Path, reference: Reference | None = None, strict: bool = False) -> Iterator[VariantRow]:
    """The rows of a variant TSV (see the module docstring), read lazily and checked like a VCF's."""
    path = Path(path)
    check_input_file(path)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        columns = reader.fieldnames or []
        genomic = all(column in columns for column in GENOMIC_TABLE_COLUMNS)
        missing = [c for c in ("position", "ref", "alt") if c not in columns]
        if not genomic and (missing or not {"sequence", "region"} & set(columns)):
            raise VariantError(
                f"{path}: needs columns position, ref, alt and sequence or region, or chrom, pos, ref, "
                f"alt; the header is {columns}"
            )
        if genomic and reference is None:
            raise VariantError(f"{path}: a table of chrom, pos, ref, alt needs the reference FASTA (--reference)")
        id_column = next((column for column in ID_COLUMNS if column in columns), None)
        empty = True
        for line_number, fields in enumerate(reader, start=2):
            empty = False
            row = table_row(path, line_number, fields, genomic, id_column, reference)
            if strict and row.status != "ok":
                raise VariantError(row.reason)
            yield row
    if empty:
        raise VariantError(f"{path}: no variants")


def table_row(
    path: Path, line_number: int, fields: dict, genomic: bool, id_column: str | None, reference: Reference | None
) -> VariantRow:
    source = f"{path} line {line_number}"
    position_text = (fields["pos" if genomic else "position"] or "").strip()
    ref, alt = fields["ref"] or "", fields["alt"] or ""
    chrom = (fields.get("chrom") or "").strip() if genomic else ""
    default_name = f"{chrom}:{position_text} {ref}>{alt}" if genomic else f"line {line_number}"
    name = (fields.get(id_column) if id_column else None) or default_name
    if not position_text.lstrip("-").isdigit():
        raise VariantError(f"{source}: variant {name!r}: position {position_text!r} is not an integer")
    position = int(position_text)
    if genomic:
        return genome_row(reference, chromosome_view(reference, chrom), name, chrom, position, ref, alt, source)
    if not fields.get("region"):
        sequence = validate_dna(fields.get("sequence") or "", source)
        return check_variant(name, "", position, ref, alt, sequence, position - 1, source)
    if reference is None:
        raise VariantError(f"{source}: the row gives a region, so a reference FASTA is needed (--reference)")
    chrom, first, last = region_bounds(fields["region"], source)
    whole = chromosome_view(reference, chrom)
    if whole is not None and first is not None and not 1 <= first <= last <= len(whole):
        reason = f"{source}: region {fields['region']!r} is outside {chrom} (1..{len(whole)}) or empty"
        return VariantRow(name, chrom, position, ref.upper(), alt.upper(), "outside_contig", source, None, reason)
    # The region bounds the context the model sees, as the row asks.
    context = whole if whole is None or first is None else reference.view(whole.name, first - 1, last)
    return genome_row(reference, context, name, chrom, position, ref, alt, source)


def read_variant_table(
    path: str | Path, reference_path: str | Path | None = None, strict: bool = False
) -> list[VariantRow]:
    """All rows of a variant TSV in a list."""
    return list(table_rows(path, Reference(reference_path) if reference_path else None, strict))
