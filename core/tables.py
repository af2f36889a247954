"""Tables of sequences (CSV, TSV, parquet): one reader for every program, rows named by file and line.

`read_table` reads a labelled table whole (fine-tuning and benchmark splits); `table_rows` streams one (inputs that
may be large); both name each row by the file's own line, so an error points where the user looks.
"""

import csv
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from nucel.tokenization.alphabet import ONLY_IUPAC, validate_dna

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet")
SEQUENCE_COLUMNS = ("sequence", "seq")


class TableError(ValueError):
    """A table that cannot be used as it is; the message names the file (and the line where it applies)."""


@dataclass(frozen=True)
class Split:
    sequences: list[str]
    labels: list  # label ids (int) for classification
    source: str  # where the rows came from
    sha256: str  # checksum of the data read (the file, or the files of a folder layout)
    label_spelling: str = ""  # single-label classes written as "names" or as "ids" (positions); "" unknown

    def __len__(self) -> int:
        return len(self.sequences)

    def subset(self, indices, source: str) -> "Split":
        return replace(
            self,
            sequences=[self.sequences[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            source=source,
        )


def delimiter_of(path: Path) -> str:
    return "," if path.suffix.lower() == ".csv" else "\t"


def table_rows(path: str | Path) -> tuple[list[str], Iterator[tuple[str, dict]]]:
    """(column names, lazily read [(source, row)]) of a CSV or TSV file; `source` is "file line N", the file's own
    line (blank lines are skipped, not uncounted)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give the CSV/TSV file inside it")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    handle = open(path, newline="")
    reader = csv.DictReader(handle, delimiter=delimiter_of(path))
    columns = list(reader.fieldnames or [])

    def rows() -> Iterator[tuple[str, dict]]:
        with handle:
            for row in reader:
                yield f"{path} line {reader.line_num}", row

    return columns, rows()


def read_table(path: str | Path) -> tuple[list[str], list[tuple[str, dict]]]:
    """(column names, [(source, row)]) from a CSV, TSV or parquet file; `source` is "file line N" (the header
    is line 1) or "file row N" for parquet."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise TableError(f"{path}: unsupported table format {suffix!r}; use one of {TABLE_SUFFIXES}")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return table.column_names, [(f"{path} row {i + 1}", row) for i, row in enumerate(table.to_pylist())]
    columns, rows = table_rows(path)
    return columns, list(rows)


def require_columns(path, columns: list[str], needed: list[str]) -> None:
    missing = [column for column in needed if column not in columns]
    if missing:
        raise TableError(f"{path}: missing column(s) {missing}; the header is {columns}")


def find_sequence_column(path, columns: list[str]) -> str:
    for column in SEQUENCE_COLUMNS:
        if column in columns:
            return column
    raise TableError(f"{path}: missing sequence column (looked for {list(SEQUENCE_COLUMNS)}); the header is {columns}")


def check_sequence(sequence, source: str) -> str:
    """The sequence, if it is DNA; else InvalidDNAError naming the character, position and source."""
    if isinstance(sequence, str) and ONLY_IUPAC.fullmatch(sequence):
        return sequence  # the common case, checked by one regex instead of character by character
    return validate_dna(sequence if isinstance(sequence, str) else "", source)


def carve_validation(train: Split, fraction: float, seed: int) -> tuple[Split, Split, str]:
    """Split train into (train, validation) with a seeded permutation; also returns a note saying how."""
    import numpy as np  # here: table readers run before --help's and errors' answers, and need no numpy

    count = round(len(train) * fraction)
    if not 0 < count < len(train):
        raise TableError(f"{train.source}: {len(train)} rows are too few to carve a {fraction:.0%} validation split")
    order = np.random.default_rng(seed).permutation(len(train))
    validation_rows, train_rows = sorted(order[:count]), sorted(order[count:])
    note = (
        f"validation = {count} rows carved from {train.source} ({fraction:.0%}, numpy seed {seed}); "
        f"train keeps {len(train_rows)}"
    )
    return (
        train.subset(train_rows, f"{train.source} minus carved validation"),
        train.subset(validation_rows, f"{train.source} carved validation (seed {seed})"),
        note,
    )
