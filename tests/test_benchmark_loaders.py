"""Benchmark registry and loaders on the real data in ../shared/data; bad input is reported with file and line."""

import csv
from collections import Counter

import numpy as np
import pytest

from nucel.benchmarks.loaders import (
    BenchmarkDataError,
    MissingSplitError,
    carve_validation,
    cross_validation_folds,
    fold_split,
    load_genomic_benchmark,
    load_gue_task,
    load_nucleotide_transformer_task,
    read_labelled_file,
    read_nucleotide_transformer_table,
)
from nucel.benchmarks.registry import load_suite
from nucel.core.tables import TableError
from nucel.tokenization import InvalidDNAError

NT_SUBSAMPLE = "nucleotide_transformer/_subsampled_from_ai4h/train_subsample_all_tasks.tsv"


@pytest.fixture(scope="module")
def manifest(shared_data):
    """MANIFEST.tsv: the documented row count and sha256 of every data file."""
    with open(shared_data / "MANIFEST.tsv", newline="") as handle:
        return {row["path"]: row for row in csv.DictReader(handle, delimiter="\t")}


@pytest.fixture(scope="module")
def gue():
    return load_suite("gue")


def write_table(path, header, rows, delimiter=","):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ------------------------------------------------------------------------------------------------ registry


def test_registry_lists_every_task_with_its_protocol():
    gue, gb, nt = load_suite("gue"), load_suite("genomic_benchmarks"), load_suite("nucleotide_transformer")
    assert len(gue.tasks) == 28 and len(gb.tasks) == 9 and len(nt.tasks) == 18
    assert Counter(task.group for task in gue.tasks) == {
        "EMP": 10,
        "TF-M": 5,
        "PD": 3,
        "CPD": 3,
        "SSP": 1,
        "TF-H": 5,
        "CVC": 1,
    }
    assert sum(task.group == "paper" for task in gb.tasks) == 7
    assert (len(gue.seeds), len(gb.seeds), len(nt.seeds)) == (3, 5, 10)
    assert gue.task("virus/covid").metric == "f1_macro" and gue.task("virus/covid").num_labels == 9
    assert gue.task("splice/reconstructed").num_labels == 3 and nt.task("splice_sites_all").num_labels == 3
    assert gb.task("human_ensembl_regulatory").label_names == ("enhancer", "ocr", "promoter")
    for suite in (gue, gb, nt):
        for task in suite.tasks:
            assert task.metric in ("mcc", "accuracy", "f1_macro") and task.max_length_bp > 0
            assert {"learning_rate", "batch_size", "epochs", "eval_steps"} <= set(task.hyperparameters)
    # The paper's numbers are stored as fractions, like every metric the runner writes.
    assert gue.paper["suite_average"] == pytest.approx(0.7516) and 0 < gue.paper["groups"]["TF-H"] < 1
    assert gb.paper["suite_average"] == pytest.approx(0.899) and nt.paper["suite_average"] == pytest.approx(0.664)


# ------------------------------------------------------------------------------------------------ GUE


@pytest.mark.parametrize("task_name", ["tf/0", "prom/prom_core_tata"])
def test_gue_task_matches_the_manifest(shared_data, manifest, gue, task_name):
    data = load_gue_task(shared_data / "GUE", gue.task(task_name))
    assert data.trainable and not data.notes
    for split, filename in (("train", "train.csv"), ("validation", "dev.csv"), ("test", "test.csv")):
        documented = manifest[f"GUE/{task_name}/{filename}"]
        assert len(data.splits[split]) == int(documented["rows_or_bp"])
        assert data.splits[split].sha256 == documented["sha256"]
        assert set(data.splits[split].labels) == {0, 1}


def test_gue_folder_without_train_is_evaluation_only(shared_data, gue):
    data = load_gue_task(shared_data / "GUE", gue.task("EMP/H3"))
    assert not data.trainable and set(data.splits) == {"validation", "test"}
    assert "train.csv is missing" in data.notes[0] and "evaluated only" in data.notes[0]
    with pytest.raises(MissingSplitError, match=r"EMP/H3/train\.csv is missing"):
        data.split("train")


def test_gue_folder_without_dev_is_an_error(tmp_path, gue):
    folder = tmp_path / "tf" / "0"
    folder.mkdir(parents=True)
    write_table(folder / "train.csv", ["sequence", "label"], [["ACGT", 0]])
    write_table(folder / "test.csv", ["sequence", "label"], [["ACGT", 1]])
    with pytest.raises(MissingSplitError, match=r"dev\.csv is missing"):
        load_gue_task(tmp_path, gue.task("tf/0"))


# ------------------------------------------------------------------------------------------------ Genomic Benchmarks


@pytest.mark.parametrize(
    "task_name, rows, per_class",
    [("human_nontata_promoters", 9034, {0: 4119, 1: 4915}), ("human_enhancers_cohn", 6948, {0: 3474, 1: 3474})],
)
def test_genomic_benchmarks_test_tsv(shared_data, task_name, rows, per_class):
    suite = load_suite("genomic_benchmarks")
    data = load_genomic_benchmark(shared_data / "genomic_benchmarks", suite.task(task_name), suite)
    assert len(data.splits["test"]) == rows and Counter(data.splits["test"].labels) == per_class
    assert not data.trainable and "no train split" in data.notes[0]


def test_genomic_benchmarks_folder_per_class_layout(shared_data, tmp_path):
    """The package's own layout (<split>/<class>/<n>.txt) reads to the same rows as the flattened TSV."""
    suite = load_suite("genomic_benchmarks")
    task = suite.task("human_ensembl_regulatory")
    flat = read_labelled_file(
        shared_data / "genomic_benchmarks/_subsampled_from_ai4h/human_ensembl_regulatory/train_subsample.tsv", task
    )
    assert len(flat) == 1500 and Counter(flat.labels) == {0: 500, 1: 500, 2: 500}
    picked = [i for label in range(3) for i in [j for j, y in enumerate(flat.labels) if y == label][:20]]
    for split in ("train", "test"):
        for n, i in enumerate(picked):
            class_folder = tmp_path / task.name / split / task.label_names[flat.labels[i]]
            class_folder.mkdir(parents=True, exist_ok=True)
            (class_folder / f"{n}.txt").write_text(flat.sequences[i] + "\n")
    data = load_genomic_benchmark(tmp_path, task, suite)
    assert sorted(zip(data.splits["test"].sequences, data.splits["test"].labels)) == sorted(
        (flat.sequences[i], flat.labels[i]) for i in picked
    )
    # Validation is carved from train with the registry's fixed seed, and the notes say so.
    assert len(data.splits["validation"]) == round(60 * suite.validation_fraction)
    assert len(data.splits["train"]) + len(data.splits["validation"]) == 60
    assert f"seed {suite.validation_seed}" in data.notes[-1]
    (tmp_path / task.name / "train" / "unknown").mkdir()
    with pytest.raises(BenchmarkDataError, match=r"class folder\(s\) \['unknown'\]"):
        load_genomic_benchmark(tmp_path, task, suite)


def test_carved_validation_is_reproducible_and_disjoint(shared_data, gue):
    train = load_gue_task(shared_data / "GUE", gue.task("prom/prom_core_tata")).splits["train"]
    first_train, first_validation, _ = carve_validation(train, 0.1, seed=7)
    again_train, again_validation, _ = carve_validation(train, 0.1, seed=7)
    _, other_validation, _ = carve_validation(train, 0.1, seed=8)
    assert first_validation.sequences == again_validation.sequences and first_train.sequences == again_train.sequences
    assert first_validation.sequences != other_validation.sequences
    assert len(first_train) + len(first_validation) == len(train)
    assert Counter(first_train.sequences) + Counter(first_validation.sequences) == Counter(train.sequences)


def test_registry_rejects_an_unknown_hyperparameter(monkeypatch, tmp_path):
    """A misspelt key in a registry file is an error, not a setting silently left at its default."""
    import nucel.benchmarks.registry as registry

    original = (registry.TASKS_FOLDER / "gue.yaml").read_text()
    text = original.replace(
        "  early_stopping_patience: 3", "  early_stoping_patience: 3", 1
    )  # the CNN's (GUE's LMs: 5)
    assert text != original
    (tmp_path / "gue.yaml").write_text(text)
    monkeypatch.setattr(registry, "TASKS_FOLDER", tmp_path)
    with pytest.raises(
        ValueError, match=r"cnn_hyperparameters: unknown hyper-parameter\(s\) \['early_stoping_patience'\]"
    ):
        load_suite("gue")


def test_each_suite_states_its_protocol_and_the_cnn_its_own_settings():
    gue, gb, nt = load_suite("gue"), load_suite("genomic_benchmarks"), load_suite("nucleotide_transformer")
    assert (gue.protocol.kind, gb.protocol.kind, nt.protocol.kind) == (
        "given_validation",
        "carved_validation",
        "cross_validation",
    )
    assert "Caduceus" in gb.protocol.description and gb.validation_fraction == 0.1 and len(gb.seeds) == 5
    assert nt.protocol.folds == 10 and nt.protocol.error_bar_sd == 2 and nt.validation_fraction is None
    for suite in (gue, gb, nt):
        for task in suite.tasks:
            # The paper's head for the language models; the CNN never inherits a transformer's learning rate.
            assert task.hyperparameters["head"] == "linear"
            assert task.cnn_hyperparameters["learning_rate"] != task.hyperparameters["learning_rate"]
            assert {"learning_rate", "batch_size", "epochs", "early_stopping_patience"} <= set(task.cnn_hyperparameters)


# ------------------------------------------------------------------------------------------------ NT


@pytest.mark.parametrize("count, folds", [(76, 10), (10, 10), (1003, 10), (7, 3)])
def test_cross_validation_folds_are_disjoint_cover_the_rows_and_follow_the_seed(count, folds):
    parts = cross_validation_folds(count, folds, seed=2024)
    assert len(parts) == folds
    assert sorted(np.concatenate(parts).tolist()) == list(range(count))  # disjoint and covering: each row once
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert all(np.array_equal(a, b) for a, b in zip(parts, cross_validation_folds(count, folds, seed=2024)))
    assert not all(np.array_equal(a, b) for a, b in zip(parts, cross_validation_folds(count, folds, seed=7)))
    with pytest.raises(BenchmarkDataError, match="cannot be cut into"):
        cross_validation_folds(folds - 1, folds, seed=2024)


def test_fold_split_holds_out_one_fold_and_trains_on_the_rest(shared_data):
    suite = load_suite("nucleotide_transformer")
    train = load_nucleotide_transformer_task(shared_data / NT_SUBSAMPLE, suite.task("H3K4me1"), suite).splits["train"]
    validations = []
    for fold in range(10):
        fold_train, validation, note = fold_split(train, fold, 10, seed=2024)
        assert Counter(fold_train.sequences) + Counter(validation.sequences) == Counter(train.sequences)
        assert len(fold_train) + len(validation) == len(train) and f"fold {fold} of 10" in note
        validations.append(validation)
    assert sum(len(v) for v in validations) == len(train)
    assert Counter(s for v in validations for s in v.sequences) == Counter(train.sequences)


def test_nucleotide_transformer_subsample(shared_data):
    suite = load_suite("nucleotide_transformer")
    per_task = read_nucleotide_transformer_table(shared_data / NT_SUBSAMPLE, suite)
    assert set(per_task) == {task.name for task in suite.tasks}
    assert sum(len(split) for split in per_task.values()) == 1500
    assert set(per_task["splice_sites_all"].labels) == {0, 1, 2} and len(per_task["promoter_tata"]) == 9
    for name, split in per_task.items():
        assert set(split.labels) <= set(range(suite.task(name).num_labels))
    # NT's validation comes from its cross-validation folds (run.py), so the loader leaves train whole.
    data = load_nucleotide_transformer_task(shared_data / NT_SUBSAMPLE, suite.task("H3K4me1"), suite)
    assert len(data.splits["train"]) == 76 and set(data.splits) == {"train"}


def test_nucleotide_transformer_folder_layouts(shared_data, tmp_path):
    """<root>/<task>/train.parquet and <root>/{train,test}.tsv with a task column read to the same rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    suite = load_suite("nucleotide_transformer")
    task = suite.task("enhancers_types")
    with open(shared_data / NT_SUBSAMPLE, newline="") as handle:
        rows = [row for row in csv.DictReader(handle, delimiter="\t")]
    mine = [row for row in rows if row["task"] == task.name]
    (tmp_path / "per_task" / task.name).mkdir(parents=True)
    table = pa.table({"sequence": [r["sequence"] for r in mine], "label": [int(r["label"]) for r in mine]})
    pq.write_table(table, tmp_path / "per_task" / task.name / "train.parquet")
    (tmp_path / "all_tasks").mkdir()
    for split in ("train", "test"):
        write_table(
            tmp_path / "all_tasks" / f"{split}.tsv",
            ["sequence", "name", "label", "task"],
            [[r["sequence"], r["name"], r["label"], r["task"]] for r in rows],
            delimiter="\t",
        )
    from_parquet = load_nucleotide_transformer_task(tmp_path / "per_task", task, suite)
    from_tsv = load_nucleotide_transformer_task(tmp_path / "all_tasks", task, suite)
    assert from_parquet.splits["train"].sequences == from_tsv.splits["train"].sequences
    assert (
        from_parquet.splits["train"].labels == from_tsv.splits["train"].labels and "validation" not in from_tsv.splits
    )
    assert len(from_tsv.splits["test"]) == len(mine) == 91


# ------------------------------------------------------------------------------------------------ bad input


def test_missing_column_is_named(tmp_path, gue):
    path = write_table(tmp_path / "test.csv", ["sequence", "class"], [["ACGT", 0]])
    # core/tables.py checks the columns of every table reader; BenchmarkDataError is one kind of its TableError
    with pytest.raises(TableError, match=r"test\.csv: missing column\(s\) \['label'\]"):
        read_labelled_file(path, gue.task("tf/0"))


def test_label_outside_the_label_set_names_file_and_line(tmp_path, gue):
    path = write_table(tmp_path / "dev.csv", ["sequence", "label"], [["ACGT", 0], ["ACGT", 2], ["ACGT", 1]])
    with pytest.raises(BenchmarkDataError, match=r"dev\.csv line 3: label '2' is not in the label set of task tf/0"):
        read_labelled_file(path, gue.task("tf/0"))


def test_empty_split_is_an_error(tmp_path, gue):
    path = write_table(tmp_path / "train.csv", ["sequence", "label"], [])
    with pytest.raises(BenchmarkDataError, match=r"train\.csv: empty split"):
        read_labelled_file(path, gue.task("tf/0"))


def test_non_dna_sequence_names_file_line_and_character(tmp_path, gue):
    path = write_table(
        tmp_path / "test.tsv", ["seq", "label"], [["ACGT", 0], ["ACGT", 1], ["ACGTJACGT", 1]], delimiter="\t"
    )
    with pytest.raises(InvalidDNAError, match=r"'J' at position 5 in .*test\.tsv line 4"):
        read_labelled_file(path, gue.task("tf/0"))


def test_split_overlaps_are_counted_and_the_registry_says_so(shared_data):
    """GUE's own splits overlap (tf/4: 358 of 1,000 dev rows are in train.csv): the loader counts it for every run,
    and the registry's overlapping_splits match the published copy."""
    from nucel.benchmarks.loaders import load_gue_task, split_overlaps
    from nucel.benchmarks.registry import load_suite

    suite = load_suite("gue")
    for name in ("tf/4", "tf/0", "prom/prom_core_tata"):
        task = suite.task(name)
        assert split_overlaps(load_gue_task(shared_data / "GUE", task).splits) == task.overlapping_splits
    assert suite.task("tf/4").overlapping_splits == {"train/validation": 358}


def test_an_unknown_task_names_the_nearest_ones():
    from nucel.benchmarks.registry import load_suite

    with pytest.raises(ValueError, match=r"suite 'gue' has no task 'prom_core': did you mean prom/prom_core_all"):
        load_suite("gue").task("prom_core")
