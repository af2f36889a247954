"""Reading sequences to embed, score or classify: FASTA(.gz), CSV or TSV, each record with an id.

Every record is validated as DNA; an error names the file and the line (or FASTA record).
"""

import csv
from dataclasses import dataclass
from pathlib import Path

from .fasta import read_fasta
from .tokenization.dna import InvalidDNAError, validate_dna

FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fsa", ".fa.gz", ".fasta.gz", ".fna.gz", ".fsa.gz")
SEQUENCE_COLUMNS = ("sequence", "seq")
ID_COLUMNS = ("id", "name", "sequence_id")


@dataclass(frozen=True)
class SequenceRecord:
    id: str
    sequence: str  # as given (case kept); the tokenizer upper-cases
    source: str  # "file line N" or "file record NAME", for error messages


def is_fasta(path: str | Path) -> bool:
    return str(path).lower().endswith(FASTA_SUFFIXES)


def read_sequences(path: str | Path, sequence_column: str | None = None, id_column: str | None = None) -> list[SequenceRecord]:
    """Records from a FASTA, CSV or TSV file. Table files need a header; the sequence column defaults to
    "sequence" or "seq", the id column to "id"/"name"/"sequence_id" and else the line number."""
    path = Path(path)
    if is_fasta(path):
        return [SequenceRecord(name, sequence, f"{path} record {name!r}") for name, sequence in read_fasta(path)]
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
        records = []
        for line_number, row in enumerate(reader, start=2):
            source = f"{path} line {line_number}"
            sequence = row[sequence_column] or ""
            validate_dna(sequence, source)
            records.append(SequenceRecord(row[id_column] if id_column else str(line_number - 1), sequence, source))
    if not records:
        raise InvalidDNAError(f"{path}: no sequences")
    return records


def add_one_sequence_arguments(parser):
    """`--sequence` / `--fasta` (+ `--record`) for commands that take one sequence; returns the exclusive group so
    a command can add other ways to give it (e.g. `--region`). Read back with `read_one_sequence`."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--sequence", help="the DNA sequence itself")
    where.add_argument("--fasta", help="a FASTA file; its first record, or --record")
    parser.add_argument("--record", help="record name in --fasta")
    return where


def read_one_sequence(sequence: str | None = None, fasta: str | Path | None = None, record: str | None = None) -> str:
    """The sequence given on a command line: the text itself, or a record (default: the first) of a FASTA file.
    Validated and upper-cased."""
    if fasta is None:
        return validate_dna(sequence or "", "--sequence")
    records = dict(read_fasta(fasta))
    name = record or next(iter(records))
    if name not in records:
        raise ValueError(f"{fasta}: no record {name!r} (records: {', '.join(list(records)[:10])})")
    return validate_dna(records[name], f"{fasta} record {name!r}")
