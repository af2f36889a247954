"""Reading sequences: FASTA(.gz), CSV or TSV, record by record, each record with an id.

FASTA and FASTA.gz (plain gzip or bgzip) are read record by record (`read_fasta`); `iter_sequences` reads any
input lazily, so a genome never sits in memory whole, only its current record. Every record is validated as DNA
(the one alphabet of tokenization/dna.py); an error names the file and the line (or FASTA record).
"""

import gzip
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nucel.core.tables import SEQUENCE_COLUMNS, table_rows
from nucel.tokenization.alphabet import NOT_IUPAC, ONLY_IUPAC, InvalidDNAError, validate_dna

FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fsa", ".fa.gz", ".fasta.gz", ".fna.gz", ".fsa.gz")
ID_COLUMNS = ("id", "name", "sequence_id")


class FastaError(ValueError):
    """A file that cannot be read as FASTA; the message names the file, and the line where it applies."""


def _open_text(path: Path):
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="ascii", errors="strict")
    return open(path, encoding="ascii", errors="strict")


def read_fasta(path: str | Path, validate: bool = True) -> Iterator[tuple[str, str]]:
    """Yield (record name, sequence) pairs. The sequence keeps its case (soft-masking) and its N runs.

    Raises FastaError for a missing file, a file that is not FASTA (text before the first '>', or a character
    that is not an IUPAC nucleotide code), a record without sequence, an empty file, or a truncated/corrupt gzip.
    """
    path = Path(path)
    if path.is_dir():
        raise FastaError(f"{path} is a directory; give the FASTA file inside it")
    if not path.is_file():
        raise FastaError(f"{path}: no such file")
    name, chunks, header_line, records = None, [], 0, 0
    line_number = 0
    try:
        with _open_text(path) as handle:
            for line_number, line in enumerate(handle, start=1):
                line = line.strip()
                if not line:
                    continue
                if line.startswith(">"):
                    if name is not None:
                        yield _finish(path, name, chunks, header_line)
                        records += 1
                    name, chunks, header_line = line[1:].split()[0] if line[1:].split() else "", [], line_number
                    if not name:
                        raise FastaError(f"{path} line {line_number}: header '>' without a record name")
                    continue
                if name is None:
                    raise FastaError(
                        f"{path} line {line_number}: expected a '>' header before sequence data; is this a FASTA file?"
                    )
                if validate and (bad := NOT_IUPAC.search(line)):
                    raise FastaError(
                        f"{path} line {line_number} column {bad.start() + 1}: invalid character {bad.group()!r} "
                        f"in record {name!r}"
                    )
                chunks.append(line)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise FastaError(f"{path}: truncated or corrupt gzip after line {line_number} ({error})") from error
    except UnicodeDecodeError as error:
        raise FastaError(f"{path} line {line_number + 1}: not text (binary data); is this a FASTA file?") from error
    if name is None:
        raise FastaError(f"{path}: empty FASTA (no '>' record)")
    yield _finish(path, name, chunks, header_line)


def _finish(path: Path, name: str, chunks: list[str], header_line: int) -> tuple[str, str]:
    if not chunks:
        raise FastaError(f"{path} line {header_line}: record {name!r} has no sequence")
    return name, "".join(chunks)


@dataclass(frozen=True)
class SequenceRecord:
    id: str
    sequence: str  # as given (case kept); the tokenizer upper-cases
    source: str  # "file line N" or "file record NAME", for error messages


@dataclass(frozen=True)
class InputSummary:
    """What a pass over an input file found: its size, and its longest record (for length checks before a run)."""

    records: int
    bases: int
    longest: int
    longest_source: str


def is_fasta(path: str | Path) -> bool:
    return str(path).lower().endswith(FASTA_SUFFIXES)


def clean_sequence(sequence: str, source: str | None = None) -> str:
    """`validate_dna` (upper-cased, whitespace removed, errors naming `source`), with a fast path for the usual
    input, IUPAC letters only: a chromosome is checked by one regular expression instead of a loop over its bases."""
    if ONLY_IUPAC.fullmatch(sequence):
        return sequence.upper()
    return validate_dna(sequence, source)


def iter_sequences(
    path: str | Path, sequence_column: str | None = None, id_column: str | None = None
) -> Iterator[SequenceRecord]:
    """Records from a FASTA, CSV or TSV file, read lazily. Table files need a header; the sequence column defaults
    to "sequence" or "seq", the id column to "id"/"name"/"sequence_id" and else the line number."""
    path = Path(path)
    if is_fasta(path):
        for name, sequence in read_fasta(path):
            yield SequenceRecord(name, sequence, f"{path} record {name!r}")
        return
    columns, rows = table_rows(path)
    sequence_column = sequence_column or next((c for c in SEQUENCE_COLUMNS if c in columns), None)
    if sequence_column not in columns:
        raise ValueError(
            f"{path}: no sequence column (looked for {sequence_column or SEQUENCE_COLUMNS}; header is {columns})"
        )
    id_column = id_column or next((c for c in ID_COLUMNS if c in columns), None)
    if id_column is not None and id_column not in columns:
        raise ValueError(f"{path}: no id column {id_column!r} (header is {columns}); check --id-column")
    empty = True
    for row_number, (source, row) in enumerate(rows, start=1):
        sequence = row[sequence_column] or ""
        clean_sequence(sequence, source)
        empty = False
        yield SequenceRecord(row[id_column] if id_column else str(row_number), sequence, source)
    if empty:
        raise InvalidDNAError(f"{path}: no sequences")


def scan_sequences(path: str | Path, sequence_column: str | None = None, id_column: str | None = None) -> InputSummary:
    """Read a whole input once without keeping it: every record validated (a bad record at the end of a genome
    fails in seconds, not after hours of inference), and its size counted (for progress bars and length checks)."""
    records = bases = longest = 0
    longest_source = ""
    for record in iter_sequences(path, sequence_column, id_column):
        length = len(clean_sequence(record.sequence, record.source))
        records, bases = records + 1, bases + length
        if length > longest:
            longest, longest_source = length, record.source
    return InputSummary(records, bases, longest, longest_source)


def read_one_sequence(sequence: str | None = None, fasta: str | Path | None = None, record: str | None = None) -> str:
    """The sequence given on a command line: the text itself, or a record (default: the first) of a FASTA file.
    Validated and upper-cased. Only the wanted record is kept while the file is read."""
    if fasta is None:
        return validate_dna(sequence or "", "--sequence")
    names = []
    for name, found in read_fasta(fasta):
        if record is None or name == record:
            return clean_sequence(found, f"{fasta} record {name!r}")
        names.append(name)
    raise ValueError(f"{fasta}: no record {record!r} (records: {', '.join(names[:10])})")


def with_unique_ids(records: Iterator[SequenceRecord]) -> Iterator[SequenceRecord]:
    """The records with every id made unique for the outputs: a repeated id becomes ID#2, ID#3, ... in input order.
    The first repeat is reported once on stderr (two FASTA records named alike are usually a mistake, but not
    always: several reads of one locus)."""
    seen: dict[str, int] = {}
    warned = False
    for record in records:
        if record.id not in seen:
            seen[record.id] = 1
            yield record
            continue
        if not warned:
            print(
                f"warning: {record.source}: the id {record.id!r} repeats an earlier record's; repeated ids are "
                f"written as {record.id}#2, {record.id}#3, ... (this warning is shown once)",
                file=sys.stderr,
            )
            warned = True
        count = seen[record.id]
        while f"{record.id}#{count + 1}" in seen:
            count += 1
        seen[record.id] = count + 1
        unique = f"{record.id}#{count + 1}"
        seen[unique] = 1
        yield SequenceRecord(unique, record.sequence, record.source)
