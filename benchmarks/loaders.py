"""Loading benchmark tasks from the layouts the data really comes in, into train/validation/test splits.

- GUE: `<root>/<task>/{train,dev,test}.csv` (`sequence,label`). Some published copies lack train.csv: such a
  task loads without a train split, says so in `TaskData.notes`, and can be evaluated only.
- Genomic Benchmarks: the package's `<root>/<task>/<split>/<class>/*.txt` (one sequence per file), or
  flattened `<root>/<task>/<split>.tsv` (`seq<TAB>label`).
- Nucleotide Transformer (revised): the Hub dataset id, a folder of `{train,test}.{csv,tsv,parquet}` with a
  `task` column or `<task>/{train,test}.<ext>`, or one such file holding the train split of all tasks.

GB and NT have no validation split. GB's is carved from train with a fixed seed (recorded in the notes); NT's
comes from its protocol, a ten-fold cross-validation of the training set (`cross_validation_folds`), so the
NT loader leaves train whole.
Every sequence is checked as DNA and every label against the task's label set; errors name the file and line.
"""

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nucel.benchmarks.registry import Suite, Task
from nucel.core.files import file_sha256
from nucel.core.tables import (
    TABLE_SUFFIXES,
    Split,
    TableError,
    carve_validation,
    check_sequence,
    find_sequence_column,
    read_table,
    require_columns,
)


class BenchmarkDataError(TableError):
    """Benchmark data that cannot be used as it is; the message names the file (and line where it applies)."""


class MissingSplitError(BenchmarkDataError):
    """A split the caller needs (usually train) is absent from the task's data."""


@dataclass
class TaskData:
    task: Task
    splits: dict[str, Split]  # any of "train", "validation", "test"
    notes: list[str] = field(default_factory=list)

    @property
    def trainable(self) -> bool:
        return "train" in self.splits and "validation" in self.splits

    def split(self, name: str) -> Split:
        if name not in self.splits:
            reason = "; ".join(self.notes) or f"the data has only {sorted(self.splits)}"
            raise MissingSplitError(f"task {self.task.name}: no {name} split ({reason})")
        return self.splits[name]


def split_overlaps(splits: dict[str, Split]) -> dict[str, int]:
    """Per pair of splits (in train, validation, test order), how many rows of the second hold a sequence that the
    first holds too, compared case-insensitively; pairs that share none are left out."""
    names = [name for name in ("train", "validation", "test") if name in splits]
    overlaps = {}
    for i, first in enumerate(names):
        seen = {sequence.upper() for sequence in splits[first].sequences}
        for second in names[i + 1 :]:
            shared = sum(sequence.upper() in seen for sequence in splits[second].sequences)
            if shared:
                overlaps[f"{first}/{second}"] = shared
    return overlaps


def label_id(value, task: Task, source: str) -> int:
    """A label given as its id ("0", 1) or its name ("positive") -> the id; anything else is an error."""
    text = str(value).strip()
    if text in task.label_names:
        return task.label_names.index(text)
    if text.lstrip("-").isdigit() and 0 <= int(text) < task.num_labels:
        return int(text)
    raise BenchmarkDataError(
        f"{source}: label {text!r} is not in the label set of task {task.name} "
        f"(ids 0..{task.num_labels - 1}, names {list(task.label_names)})"
    )


def read_labelled_file(path: str | Path, task: Task, label_column: str = "label") -> Split:
    """A CSV/TSV/parquet split of `task`: every sequence checked as DNA, every label in the task's label set."""
    path = Path(path)
    columns, rows = read_table(path)
    sequence_column = find_sequence_column(path, columns)
    require_columns(path, columns, [label_column])
    if not rows:
        raise BenchmarkDataError(f"{path}: empty split (a header but no rows)")
    sequences = [check_sequence(row[sequence_column], source) for source, row in rows]
    labels = [label_id(row[label_column], task, source) for source, row in rows]
    return Split(sequences, labels, str(path), file_sha256(path))


def with_carved_validation(task_data: TaskData, suite: Suite) -> TaskData:
    """A validation split carved from train where the suite's protocol says so; other protocols leave train whole."""
    if suite.protocol.kind == "carved_validation" and "train" in task_data.splits:
        train, validation, note = carve_validation(
            task_data.splits["train"], suite.validation_fraction, suite.validation_seed
        )
        task_data.splits.update(train=train, validation=validation)
        task_data.notes.append(note)
    return task_data


def cross_validation_folds(count: int, folds: int, seed: int) -> list[np.ndarray]:
    """`folds` disjoint, sorted row-index arrays covering range(count), sizes differing by at most one: consecutive
    slices of one seeded permutation, so the folds are the same for every model and every run."""
    if not 2 <= folds <= count:
        raise BenchmarkDataError(f"{count} rows cannot be cut into {folds} cross-validation folds")
    order = np.random.default_rng(seed).permutation(count)
    return [np.sort(part) for part in np.array_split(order, folds)]


def fold_split(train: Split, fold: int, folds: int, seed: int) -> tuple[Split, Split, str]:
    """Cross-validation run `fold`: (train = the other folds, validation = fold `fold`, a note saying how)."""
    parts = cross_validation_folds(len(train), folds, seed)
    validation_rows = parts[fold]
    train_rows = np.sort(np.concatenate([part for k, part in enumerate(parts) if k != fold]))
    note = (
        f"fold {fold} of {folds}: validation = {len(validation_rows)} rows of {train.source} (folds from numpy seed "
        f"{seed}), train = the other {len(train_rows)}"
    )
    return (
        train.subset(train_rows, f"{train.source} minus fold {fold} of {folds}"),
        train.subset(validation_rows, f"{train.source} fold {fold} of {folds} (seed {seed})"),
        note,
    )


# ----------------------------------------------------------------------------------------------------------------
# GUE


def load_gue_task(root: str | Path, task: Task) -> TaskData:
    folder = Path(root) / task.name
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: GUE task folder not found (expected <GUE root>/{task.name}/{{train,dev,test}}.csv)"
        )
    splits, notes = {}, []
    for split, filename in (("train", "train.csv"), ("validation", "dev.csv"), ("test", "test.csv")):
        path = folder / filename
        if path.is_file():
            splits[split] = read_labelled_file(path, task)
        elif split == "train":
            notes.append(f"{path} is missing: task {task.name} can be evaluated only, not trained")
        else:
            raise MissingSplitError(f"{path} is missing: every GUE task folder needs dev.csv and test.csv")
    return TaskData(task, splits, notes)


# ----------------------------------------------------------------------------------------------------------------
# Genomic Benchmarks


def read_class_folders(folder: Path, task: Task) -> Split:
    """The Genomic Benchmarks package layout: `<folder>/<class name>/*.txt`, one sequence per file."""
    unknown = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in task.label_names)
    if unknown:
        raise BenchmarkDataError(
            f"{folder}: class folder(s) {unknown} are not in the label set of task {task.name} {list(task.label_names)}"
        )
    digest = hashlib.sha256()
    sequences, labels = [], []
    for label, class_name in enumerate(task.label_names):
        for path in sorted((folder / class_name).glob("*.txt")):
            content = path.read_bytes()
            digest.update(f"{class_name}/{path.name}\n".encode() + content)
            sequences.append(check_sequence(content.decode("ascii", errors="replace").strip(), f"{path} line 1"))
            labels.append(label)
    if not sequences:
        raise BenchmarkDataError(f"{folder}: empty split (no <class>/*.txt files)")
    return Split(sequences, labels, str(folder), digest.hexdigest())


def load_genomic_benchmark(root: str | Path, task: Task, suite: Suite) -> TaskData:
    folder = Path(root) / task.name
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: Genomic Benchmarks task folder not found")
    splits, notes = {}, []
    for split in ("train", "test"):
        tables = [folder / f"{split}{suffix}" for suffix in (".tsv", ".csv", ".parquet")]
        if (folder / split).is_dir():
            splits[split] = read_class_folders(folder / split, task)
        elif table := next((path for path in tables if path.is_file()), None):
            splits[split] = read_labelled_file(table, task)
        elif split == "train":
            notes.append(f"{folder} has no train split: task {task.name} can be evaluated only, not trained")
        else:
            raise MissingSplitError(f"{folder}: no test split ({split}/<class>/*.txt or {split}.tsv)")
    return with_carved_validation(TaskData(task, splits, notes), suite)


# ----------------------------------------------------------------------------------------------------------------
# Nucleotide Transformer tasks (revised)


def read_nucleotide_transformer_table(path: str | Path, suite: Suite) -> dict[str, Split]:
    """A table of several tasks (columns sequence, label, task) -> one split per task, labels checked
    against each task's label set."""
    path = Path(path)
    columns, rows = read_table(path)
    sequence_column = find_sequence_column(path, columns)
    require_columns(path, columns, ["label", "task"])
    if not rows:
        raise BenchmarkDataError(f"{path}: empty split (a header but no rows)")
    by_task: dict[str, tuple[list, list]] = {}
    for source, row in rows:
        try:
            task = suite.task(row["task"])
        except ValueError as error:
            raise BenchmarkDataError(f"{source}: {error}") from None
        sequences, labels = by_task.setdefault(task.name, ([], []))
        sequences.append(check_sequence(row[sequence_column], source))
        labels.append(label_id(row["label"], task, source))
    checksum = file_sha256(path)
    return {
        name: Split(sequences, labels, f"{path} (task {name})", checksum)
        for name, (sequences, labels) in by_task.items()
    }


def load_nucleotide_transformer_task(source: str | Path, task: Task, suite: Suite) -> TaskData:
    """`source`: a local folder or file (see the module docstring), or a Hub dataset id."""
    path = Path(source)
    if path.is_file():
        splits = {"train": read_nucleotide_transformer_table(path, suite).get(task.name)}
        notes = [f"{path} is read as the train split of every task"]
    elif path.is_dir():
        splits, notes = {}, []
        for split in ("train", "test"):
            per_task = [path / task.name / f"{split}{suffix}" for suffix in TABLE_SUFFIXES]
            all_tasks = [path / f"{split}{suffix}" for suffix in TABLE_SUFFIXES]
            if table := next((p for p in per_task if p.is_file()), None):
                splits[split] = read_labelled_file(table, task)
            elif table := next((p for p in all_tasks if p.is_file()), None):
                splits[split] = read_nucleotide_transformer_table(table, suite).get(task.name)
    else:
        splits, notes = load_hub_splits(str(source), task), [f"read from the Hub dataset {source}"]
    splits = {name: split for name, split in splits.items() if split is not None}
    if not splits:
        raise BenchmarkDataError(f"{source}: no rows for task {task.name}")
    if "train" not in splits:
        notes.append(f"{source} has no train split for task {task.name}: it can be evaluated only")
    return with_carved_validation(TaskData(task, splits, notes), suite)


def load_hub_splits(dataset_id: str, task: Task) -> dict[str, Split]:
    """The task's rows of a Hub dataset with columns sequence, label, task (the revised NT set's layout)."""
    from datasets import load_dataset

    dataset = load_dataset(dataset_id)
    splits = {}
    for split in ("train", "test"):
        if split not in dataset:
            continue
        rows = dataset[split].filter(lambda batch: [name == task.name for name in batch["task"]], batched=True)
        source = f"{dataset_id} split {split} (task {task.name})"
        sequences = [check_sequence(sequence, f"{source} row {i + 1}") for i, sequence in enumerate(rows["sequence"])]
        labels = [label_id(label, task, f"{source} row {i + 1}") for i, label in enumerate(rows["label"])]
        # The Hub serves Arrow, not the original files: the dataset fingerprint identifies the exact data.
        checksum = hashlib.sha256(f"{dataset_id}:{dataset[split]._fingerprint}".encode()).hexdigest()
        if sequences:
            splits[split] = Split(sequences, labels, source, checksum)
    return splits


def load_task(suite: Suite, task: Task, data_source: str | Path) -> TaskData:
    """The task's splits from `data_source` (the suite's data root folder, or for NT a file or Hub id)."""
    if suite.name == "gue":
        return load_gue_task(data_source, task)
    if suite.name == "genomic_benchmarks":
        return load_genomic_benchmark(data_source, task, suite)
    return load_nucleotide_transformer_task(data_source, task, suite)
