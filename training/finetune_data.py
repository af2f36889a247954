"""Labelled data for fine-tuning: tables and `datasets` splits read into `Split`s, every sequence checked as DNA and
every label read as the user means it, before any model is loaded (this module does not import torch).

Single-label classes are written as their names ("bound") or, where no class name is itself an integer, as ids
(positions in the label names, as `datasets` ClassLabel columns give them). Labels that are integers themselves
("0", "1") are names, never positions: read as positions in the sorted training classes they would swap meaning
between splits without a word. Every split must write its classes as the training split does, the training split
must hold at least two classes, and no other split may hold a class the training split lacks: each is a one-line
error with counts, raised before any model is loaded (`check_label_sets`).
"""

import hashlib
from collections import Counter
from pathlib import Path

from nucel.core.files import file_sha256
from nucel.core.tables import Split, TableError, check_sequence, find_sequence_column, read_table, require_columns
from nucel.training.finetune_config import FinetuneSettings

SPELLINGS = {"names": "class names", "ids": "integer ids"}


def ids_allowed(label_names: list[str]) -> bool:
    """Whether an integer label may mean a position: only when no class name is an integer itself."""
    return not any(name.lstrip("-").isdigit() for name in label_names)


def spelling_of(texts: list[str], label_names: list[str]) -> str:
    """How a split writes its classes: "names", "ids", or "mixed" (some of each)."""
    if all(text in label_names for text in texts):
        return "names"
    if ids_allowed(label_names) and all(text.isdigit() and int(text) < len(label_names) for text in texts):
        return "ids"
    return "mixed"


def labelled_split(
    rows: list[tuple[str, dict]],
    sequence_column: str,
    label_columns: list[str],
    settings: FinetuneSettings,
    source: str,
    sha256: str,
) -> Split:
    """Rows of a table -> a Split with labels encoded for the problem type; errors name the row's source."""
    if not rows:
        raise TableError(f"{source}: empty split (no rows)")
    spelling = ""
    if settings.problem_type == "single_label_classification":
        check_class_labels(
            source, [(row_source, row[label_columns[0]]) for row_source, row in rows], settings.label_names
        )
        spelling = spelling_of([str(row[label_columns[0]]).strip() for _, row in rows], settings.label_names)
        if spelling == "mixed":
            raise TableError(
                f"{source}: the labels mix class names {settings.label_names} with integer ids; write every "
                "label the same way (the names, as the training split does)"
            )
    sequences, labels = [], []
    for row_source, row in rows:
        sequences.append(check_sequence(row[sequence_column], row_source))
        labels.append(encode_label([row[column] for column in label_columns], settings, row_source))
    return Split(sequences, labels, source, sha256, spelling)


def encode_label(values: list, settings: FinetuneSettings, source: str):
    """One row's label value(s) -> a class id, a multi-hot vector or the regression target(s)."""
    if settings.problem_type == "single_label_classification":
        text = str(values[0]).strip()
        if text in settings.label_names:
            return settings.label_names.index(text)
        if ids_allowed(settings.label_names) and text.isdigit() and int(text) < len(settings.label_names):
            return int(text)  # an id, as `datasets` ClassLabel columns give them
        raise TableError(f"{source}: label {text!r} is not one of the labels {settings.label_names}")
    try:
        numbers = [float(value) for value in values]
    except (TypeError, ValueError):
        raise TableError(f"{source}: label values {values} are not numbers") from None
    if settings.problem_type == "multi_label_classification":
        if any(number not in (0.0, 1.0) for number in numbers):
            raise TableError(f"{source}: multi-label values must be 0 or 1, got {values}")
        return numbers
    return numbers if len(numbers) > 1 else numbers[0]


def read_labelled_data(
    path: str | Path, settings: FinetuneSettings, label_columns: list[str], sequence_column: str | None = None
) -> Split:
    """A CSV/TSV/parquet file with a sequence column and the label column(s)."""
    path = Path(path)
    columns, rows = read_table(path)
    sequence_column = sequence_column or find_sequence_column(path, columns)
    require_columns(path, columns, [sequence_column, *label_columns])
    return labelled_split(rows, sequence_column, label_columns, settings, str(path), file_sha256(path))


def dataset_split(
    dataset, settings: FinetuneSettings, label_columns: list[str], sequence_column: str = "sequence"
) -> Split:
    """A `datasets.Dataset` -> Split (a hash of its Arrow fingerprint stands in for the file checksum)."""
    name = f"dataset {dataset.info.dataset_name or '(in memory)'} split {dataset.split or '(unnamed)'}"
    require_columns(name, dataset.column_names, [sequence_column, *label_columns])
    rows = [(f"{name} row {i + 1}", row) for i, row in enumerate(dataset)]
    checksum = hashlib.sha256(dataset._fingerprint.encode()).hexdigest()
    return labelled_split(rows, sequence_column, label_columns, settings, name, checksum)


def check_class_labels(source: str, labelled: list[tuple[str, object]], label_names: list[str] | None = None) -> None:
    """Refuse class labels that cannot be right, counted over the whole split: empty cells, fractional numbers (a
    regression target, not a class) and, given the training classes, classes the model was never trained on."""
    problems = {}  # reason -> [(row source, label text)]
    for row_source, value in labelled:
        text = "" if value is None else str(value).strip()
        if not text:
            reason = "an empty label"
        elif not text.lstrip("-").isdigit() and is_number(text):
            reason = (
                f"a fractional label such as {text!r} (a class is a name or an integer id; numeric targets need "
                "--problem-type regression)"
            )
        elif (
            label_names is not None
            and text not in label_names
            and not (ids_allowed(label_names) and text.isdigit() and int(text) < len(label_names))
        ):
            reason = f"a class not among the training classes {label_names}"
        else:
            continue
        problems.setdefault(reason, []).append((row_source, text))
    if problems:
        parts = []
        for reason, rows in problems.items():
            values = sorted({text for _, text in rows})
            shown = (
                f" ({', '.join(repr(v) for v in values[:5])}{', …' if len(values) > 5 else ''})"
                if label_names is not None and values != [""]
                else ""
            )
            first = rows[0][0].removeprefix(f"{source} ")  # "line 7" of the file the message names
            parts.append(f"{len(rows)} with {reason}{shown} (first at {first})")
        raise TableError(f"{source}: of {len(labelled)} rows, " + "; ".join(parts) + "; fix or remove those rows")


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def label_names_from(path: str | Path, label_column: str) -> list[str]:
    """The distinct labels of a file's column for single-label tasks: integers in numeric order, else sorted."""
    columns, rows = read_table(path)
    require_columns(path, columns, [label_column])
    check_class_labels(str(path), [(source, row[label_column]) for source, row in rows])
    values = {str(row[label_column]).strip() for _, row in rows}
    if len(values) < 2:
        raise TableError(
            f"{path}: all {len(rows)} rows are class {next(iter(values), '')!r}: a classifier needs training "
            "rows of at least two classes"
        )
    if all(value.lstrip("-").isdigit() for value in values):
        return sorted(values, key=int)
    return sorted(values)


def check_label_sets(train: Split, others: dict[str, Split], settings: FinetuneSettings) -> None:
    """The splits' labels as one set, before any model is loaded: the training split holds at least two classes (a
    multi-label target takes both values), and every other split writes its classes as training does and holds no
    class training lacks. Each problem is one line with counts."""
    if settings.problem_type == "regression":
        return
    names = settings.label_names
    if settings.problem_type == "multi_label_classification":
        for index, name in enumerate(names):
            values = {row[index] for row in train.labels}
            if len(values) < 2:
                raise TableError(
                    f"{train.source}: label column {name!r} is {next(iter(values)):g} in all {len(train)} "
                    "training rows: nothing to learn for it (remove the column or add rows of the other value)"
                )
        return
    counts = Counter(train.labels)
    if len(counts) < 2:
        only = names[next(iter(counts))]
        raise TableError(
            f"{train.source}: all {len(train)} training rows are class {only!r}: a classifier needs training "
            f"rows of at least two classes (the classes are {names})"
        )
    for role, split in others.items():
        if split.label_spelling and train.label_spelling and split.label_spelling != train.label_spelling:
            raise TableError(
                f"{split.source}: the {role} labels are {SPELLINGS[split.label_spelling]} but the training "
                f"labels ({train.source}) are {SPELLINGS[train.label_spelling]} of {names}; write both the "
                "same way, as the class names"
            )
        unseen = Counter(label for label in split.labels if label not in counts)
        if unseen:
            found = ", ".join(f"{count} of class {names[label]!r}" for label, count in sorted(unseen.items()))
            raise TableError(
                f"{split.source}: {found} of {len(split)} {role} rows, a class the training split "
                f"{train.source} has no row of; a model cannot learn it from there"
            )
