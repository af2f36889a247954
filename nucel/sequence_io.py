"""Reading sequences to embed, score or classify: FASTA(.gz), CSV or TSV, each record with an id.

Records are read one at a time (`iter_sequences`): a genome never sits in memory whole, only its current record.
Every record is validated as DNA; an error names the file and the line (or FASTA record).
"""

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nucel.fasta import read_fasta
from nucel.tokenization.dna import IUPAC_CODES, InvalidDNAError, validate_dna

FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fsa", ".fa.gz", ".fasta.gz", ".fna.gz", ".fsa.gz")
SEQUENCE_COLUMNS = ("sequence", "seq")
ID_COLUMNS = ("id", "name", "sequence_id")

_CODES = "".join(sorted(IUPAC_CODES))
_PLAIN_DNA = re.compile(f"[{_CODES}{_CODES.lower()}]+")


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
    if _PLAIN_DNA.fullmatch(sequence):
        return sequence.upper()
    return validate_dna(sequence, source)


def iter_sequences(path: str | Path, sequence_column: str | None = None, id_column: str | None = None) -> Iterator[SequenceRecord]:
    """Records from a FASTA, CSV or TSV file, read lazily. Table files need a header; the sequence column defaults
    to "sequence" or "seq", the id column to "id"/"name"/"sequence_id" and else the line number."""
    path = Path(path)
    if is_fasta(path):
        for name, sequence in read_fasta(path):
            yield SequenceRecord(name, sequence, f"{path} record {name!r}")
        return
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give the FASTA/CSV/TSV file inside it")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        columns = reader.fieldnames or []
        sequence_column = sequence_column or next((c for c in SEQUENCE_COLUMNS if c in columns), None)
        if sequence_column not in columns:
            raise ValueError(f"{path}: no sequence column (looked for {sequence_column or SEQUENCE_COLUMNS}; header is {columns})")
        id_column = id_column or next((c for c in ID_COLUMNS if c in columns), None)
        if id_column is not None and id_column not in columns:
            raise ValueError(f"{path}: no id column {id_column!r} (header is {columns}); check --id-column")
        empty = True
        for row_number, row in enumerate(reader, start=1):
            source = f"{path} line {reader.line_num}"  # the file's line: blank lines are skipped, not uncounted
            sequence = row[sequence_column] or ""
            clean_sequence(sequence, source)
            empty = False
            yield SequenceRecord(row[id_column] if id_column else str(row_number), sequence, source)
    if empty:
        raise InvalidDNAError(f"{path}: no sequences")


def read_sequences(path: str | Path, sequence_column: str | None = None, id_column: str | None = None) -> list[SequenceRecord]:
    """All records of a file in a list (`iter_sequences` for inputs that may be large)."""
    return list(iter_sequences(path, sequence_column, id_column))


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
