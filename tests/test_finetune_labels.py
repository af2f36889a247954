"""Fine-tuning labels read as a person means them: a class is written the same way in every split, the training split
holds two classes at least, and no other split holds a class training lacks; each is one line, exit 2, before any
model is loaded. Integer labels are class names, never positions in the sorted names (which swapped them silently)."""

import pytest

from nucel.cli import main
from nucel.core.tables import TableError
from nucel.training.finetune_config import FinetuneSettings
from nucel.training.finetune_data import check_label_sets, label_names_from, read_labelled_data

SEQUENCES = ["ACGTACGTAC", "GGGCCCAAAT", "TTTTAAAACC", "CAGTCAGTCA"]


def table(path, labels, column="label"):
    path.write_text(f"sequence,{column}\n" + "".join(f"{SEQUENCES[i % 4]},{label}\n" for i, label in enumerate(labels)))
    return path


def read(path, names, problem_type="single_label_classification", columns=("label",)):
    return read_labelled_data(path, FinetuneSettings(label_names=list(names), problem_type=problem_type), list(columns))


def test_integer_labels_are_names_not_positions(tmp_path):
    """Training labels "1" and "2" with validation "0": "0" is an unknown class, not position 0 (class "1")."""
    names = label_names_from(table(tmp_path / "train.csv", [1, 2, 1, 2]), "label")
    with pytest.raises(TableError, match=r"1 with a class not among the training classes \['1', '2'\]"):
        read(table(tmp_path / "dev.csv", [0, 1]), names)


def test_names_in_training_and_ids_in_validation_are_refused(tmp_path):
    names = label_names_from(table(tmp_path / "train.csv", ["bound", "unbound"] * 2), "label")
    train = read(tmp_path / "train.csv", names)
    validation = read(
        table(tmp_path / "dev.csv", [0, 1, 1, 0]), names
    )  # ids 0/1: each parses, but not as training does
    with pytest.raises(
        TableError,
        match=r"dev\.csv: the validation labels are integer ids but the training labels .* "
        r"are class names of \['bound', 'unbound'\]",
    ):
        check_label_sets(train, {"validation": validation}, FinetuneSettings(label_names=names))


def test_one_class_training_data_is_refused_with_its_count(tmp_path):
    with pytest.raises(
        TableError,
        match=r"one\.csv: all 3 rows are class '1': a classifier needs training rows of at "
        "least two classes",
    ):
        label_names_from(table(tmp_path / "one.csv", [1, 1, 1]), "label")
    names = ["0", "1"]  # given by --label-names: the training split must still hold both
    settings = FinetuneSettings(label_names=names)
    train = read(table(tmp_path / "train.csv", [1, 1, 1]), names)
    validation = read(table(tmp_path / "dev.csv", [0, 1, 0, 0]), names)
    with pytest.raises(TableError, match=r"all 3 training rows are class '1'"):
        check_label_sets(train, {"validation": validation}, settings)


def test_a_class_only_in_validation_is_refused_with_counts(tmp_path):
    names = ["a", "b", "c"]
    settings = FinetuneSettings(label_names=names)
    train = read(table(tmp_path / "train.csv", ["a", "b", "a", "b"]), names)
    validation = read(table(tmp_path / "dev.csv", ["a", "c", "c", "b"]), names)
    with pytest.raises(
        TableError,
        match=r"dev\.csv: 2 of class 'c' of 4 validation rows, a class the training split .* "
        "has no row of",
    ):
        check_label_sets(train, {"validation": validation}, settings)


def test_ids_stay_allowed_where_they_cannot_be_names(tmp_path):
    """`datasets` ClassLabel columns give ids: with names that are not integers and ids in every split, fine."""
    names = ["enhancer", "promoter"]
    train = read(table(tmp_path / "train.csv", [0, 1, 1, 0]), names)
    validation = read(table(tmp_path / "dev.csv", [1, 0]), names)
    assert train.labels == [0, 1, 1, 0] and train.label_spelling == validation.label_spelling == "ids"
    check_label_sets(train, {"validation": validation}, FinetuneSettings(label_names=names))


def test_a_multi_label_column_constant_in_training_is_refused(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("sequence,x,y\n" + "".join(f"{s},{i % 2},1\n" for i, s in enumerate(SEQUENCES)))
    settings = FinetuneSettings(label_names=["x", "y"], problem_type="multi_label_classification")
    train = read_labelled_data(path, settings, ["x", "y"])
    with pytest.raises(TableError, match=r"label column 'y' is 1 in all 4 training rows"):
        check_label_sets(train, {}, settings)


@pytest.mark.parametrize(
    "train_labels, validation_labels, expected",
    [
        ([1, 1, 1, 1], [0, 1, 0, 1], "all 4 rows are class '1'"),
        (["bound", "unbound"] * 2, [0, 1, 0, 1], "integer ids but the training labels"),
    ],
)
def test_the_command_refuses_before_any_model_loads(tmp_path, capsys, train_labels, validation_labels, expected):
    train, validation = table(tmp_path / "train.csv", train_labels), table(tmp_path / "dev.csv", validation_labels)
    # A model name that does not exist: had the command got as far as loading it, the error would name it instead.
    argv = [
        "finetune",
        "--model",
        str(tmp_path / "no-such-model"),
        "--train",
        str(train),
        "--validation",
        str(validation),
        "-o",
        str(tmp_path / "out"),
        "--max-steps",
        "1",
    ]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert expected in error and "no-such-model" not in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists()
