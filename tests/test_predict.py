"""`nucel predict`: any classifier (fine-tuned folder, released folder, Hub id from the offline cache), inputs longer
than the training sequences windowed or refused by the recorded length, and predictions streamed in input order."""

import csv
import json
import logging
import shutil

import numpy as np
import pytest
import torch

from nucel import NucELConfig, NucELForSequenceClassification, NucELModel, cli
from nucel.core.classifiers import TRAINING_LENGTHS, load_classifier
from nucel.core.models import save_model_folder
from nucel.core.tables import Split
from nucel.core.windows import window_plan
from nucel.predict import LengthPolicy, predict_file
from nucel.tokenization import build_tokenizer
from nucel.training.finetune import finetune
from nucel.training.finetune_config import FinetuneSettings

LABELS = ["background", "promoter"]
TRAINED = {"min_bp": 20, "max_bp": 40, "median_bp": 30}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def classifier_folder(
    folder, lengths=TRAINED, problem_type="single_label_classification", labels=LABELS, tokenizer=True
):
    """A released-style classifier folder (no finetune.json): config.json with id2label and the training lengths."""
    torch.manual_seed(0)
    config = NucELConfig.from_preset(
        "tiny",
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
        problem_type=problem_type,
    )
    if lengths is not None:
        setattr(config, TRAINING_LENGTHS, lengths)
    save_model_folder(NucELForSequenceClassification(config), folder)
    if not tokenizer:
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            (folder / name).unlink(missing_ok=True)
    return folder


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return classifier_folder(tmp_path_factory.mktemp("released") / "classifier")


def random_dna(length: int, seed: int) -> str:
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), size=length))


def direct_probabilities(folder, sequence: str) -> np.ndarray:
    """The classifier's softmax for one sequence, run alone (no batching, no windows)."""
    model = NucELForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = model(input_ids=build_tokenizer()(sequence, return_tensors="pt")["input_ids"]).logits[0]
    return torch.softmax(logits.double(), -1).numpy()


def read_rows(path, delimiter="\t"):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter=delimiter))


INPUTS = {"short": random_dna(25, 1), "long": random_dna(100, 2), "exact": random_dna(40, 3), "tiny": "ACGTN"}


def write_fasta(path, records=INPUTS):
    path.write_text("".join(f">{name}\n{sequence}\n" for name, sequence in records.items()))
    return path


@pytest.mark.parametrize("aggregate", ["mean", "max"])
def test_long_inputs_are_windowed_at_the_trained_length(released, tmp_path, aggregate):
    fasta = write_fasta(tmp_path / "input.fa")
    output = tmp_path / "predictions.tsv"
    assert (
        cli.main(
            [
                "predict",
                "--model",
                str(released),
                str(fasta),
                "-o",
                str(output),
                "--aggregate",
                aggregate,
                "--batch-size",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    rows = read_rows(output)
    assert list(rows[0]) == ["id", "prediction", "probability_background", "probability_promoter", "windows"]
    assert [row["id"] for row in rows] == list(INPUTS)
    # 100 bp through a classifier trained on 20-40 bp: 40-bp windows 20 bp apart (0, 20, 40, 60).
    spans = [(start, end) for start, end, _, _ in window_plan(100, 40, 20)]
    assert spans == [(0, 40), (20, 60), (40, 80), (60, 100)]
    assert [int(row["windows"]) for row in rows] == [1, 4, 1, 1]
    for row, (name, sequence) in zip(rows, INPUTS.items()):
        if name == "long":
            per_window = np.array([direct_probabilities(released, sequence[start:end]) for start, end in spans])
            expected = per_window.mean(axis=0) if aggregate == "mean" else per_window.max(axis=0)
        else:
            expected = direct_probabilities(released, sequence)
        scores = [float(row["probability_background"]), float(row["probability_promoter"])]
        np.testing.assert_allclose(scores, expected, atol=1e-5)
        assert row["prediction"] == LABELS[int(np.argmax(scores))]


def test_stride_and_window_can_be_chosen(released, tmp_path):
    fasta = write_fasta(tmp_path / "input.fa", {"long": INPUTS["long"]})
    output = tmp_path / "predictions.csv"
    assert (
        cli.main(
            ["predict", "--model", str(released), str(fasta), "-o", str(output), "--stride", "30", "--device", "cpu"]
        )
        == 0
    )
    assert read_rows(output, ",")[0]["windows"] == "3"  # starts 0, 30, 60
    assert (
        cli.main(
            [
                "predict",
                "--model",
                str(released),
                str(fasta),
                "-o",
                str(output),
                "--window",
                "100",
                "--device",
                "cpu",
                "--overwrite",
            ]
        )
        == 0
    )
    assert read_rows(output, ",")[0]["windows"] == "1"


def test_long_inputs_can_be_refused_before_anything_is_predicted(released, tmp_path, capsys):
    fasta = write_fasta(tmp_path / "input.fa")
    output = tmp_path / "predictions.tsv"
    assert (
        cli.main(
            [
                "predict",
                "--model",
                str(released),
                str(fasta),
                "-o",
                str(output),
                "--long-inputs",
                "refuse",
                "--device",
                "cpu",
            ]
        )
        != 0
    )
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert (
        f"input.fa record 'long': 100 bp is longer than the 40 bp classifier {released} knows (trained on 20-40 bp "
        "sequences); --long-inputs window predicts from 40-bp windows 20 bp apart, mean of their scores"
    ) in error
    assert not output.exists() and not list(tmp_path.glob(".*partial"))
    short = write_fasta(tmp_path / "short.fa", {"short": INPUTS["short"], "exact": INPUTS["exact"]})
    assert (
        cli.main(
            [
                "predict",
                "--model",
                str(released),
                str(short),
                "-o",
                str(output),
                "--long-inputs",
                "refuse",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert [row["windows"] for row in read_rows(output)] == ["1", "1"]


def test_a_classifier_without_a_record_is_windowed_at_1024_and_says_so(tmp_path, capsys):
    folder = classifier_folder(tmp_path / "unrecorded", lengths=None, tokenizer=False)  # and no tokenizer: ours
    classifier = load_classifier(folder, "cpu")
    assert classifier.training_lengths is None and LengthPolicy.for_lengths(classifier.training_lengths).window == 1024
    fasta = write_fasta(tmp_path / "input.fa", {"long": random_dna(1500, 5), "short": INPUTS["short"]})
    assert (
        cli.main(["predict", "--model", str(folder), str(fasta), "-o", str(tmp_path / "p.tsv"), "--device", "cpu"]) == 0
    )
    assert [row["windows"] for row in read_rows(tmp_path / "p.tsv")] == ["2", "1"]  # starts 0 and 476 (= 1500 - 1024)
    error = capsys.readouterr().err
    assert (
        "does not record the lengths it was trained on; inputs longer than 1,024 bp are cut into 1,024-bp windows"
        in error
    )
    assert "1 of 2 inputs are longer than 1,024 bp and were predicted from 1,024-bp windows 512 bp apart" in error


def test_the_misleading_tokenizer_warning_is_not_shown(tmp_path):
    """A 3,000 bp input through a classifier trained on 2,000 bp: windows longer than the tokenizer's 1,025-token
    maximum are the model's business, not "indexing errors"."""
    folder = classifier_folder(tmp_path / "long_trained", lengths={"min_bp": 2000, "max_bp": 2000, "median_bp": 2000})
    fasta = write_fasta(tmp_path / "input.fa", {"long": random_dna(3000, 6)})
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        assert (
            cli.main(["predict", "--model", str(folder), str(fasta), "-o", str(tmp_path / "p.tsv"), "--device", "cpu"])
            == 0
        )
        assert not [m for m in messages if "indexing errors" in m]
        build_tokenizer()(random_dna(3000, 7))  # the control: plain tokenization of the same length does warn
        assert [m for m in messages if "indexing errors" in m]
    finally:
        logger.removeHandler(handler)
    assert read_rows(tmp_path / "p.tsv")[0]["windows"] == "2"


def test_regression_and_multi_label_classifiers(tmp_path):
    fasta = write_fasta(tmp_path / "input.fa", {"long": INPUTS["long"], "short": INPUTS["short"]})
    regression = classifier_folder(tmp_path / "regression", problem_type="regression", labels=["gc"])
    assert (
        cli.main(["predict", "--model", str(regression), str(fasta), "-o", str(tmp_path / "r.tsv"), "--device", "cpu"])
        == 0
    )
    rows = read_rows(tmp_path / "r.tsv")
    assert list(rows[0]) == ["id", "gc", "windows"] and [row["windows"] for row in rows] == ["4", "1"]
    multi = classifier_folder(tmp_path / "multi", problem_type="multi_label_classification", labels=["tata", "cpg"])
    assert (
        cli.main(["predict", "--model", str(multi), str(fasta), "-o", str(tmp_path / "m.tsv"), "--device", "cpu"]) == 0
    )
    rows = read_rows(tmp_path / "m.tsv")
    for row in rows:
        chosen = [name for name in ("tata", "cpg") if float(row[f"probability_{name}"]) >= 0.5]
        assert row["prediction"] == ";".join(chosen)


def test_predict_from_a_hub_id_in_the_offline_cache(released, tmp_path, monkeypatch, capsys):
    """The Hub cache layout (models--owner--name/refs/main, snapshots/<commit>/...) with HF_HUB_OFFLINE=1."""
    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repository = tmp_path / "hub" / "models--nucel-tests--promoter-classifier"
    shutil.copytree(released, repository / "snapshots" / commit)
    (repository / "refs").mkdir()
    (repository / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert huggingface_hub.constants.HF_HUB_OFFLINE  # tests/conftest.py switches the Hub off

    fasta = write_fasta(tmp_path / "input.fa")
    assert (
        cli.main(
            [
                "predict",
                "--model",
                "nucel-tests/promoter-classifier",
                str(fasta),
                "-o",
                str(tmp_path / "hub.tsv"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert (
        cli.main(
            ["predict", "--model", str(released), str(fasta), "-o", str(tmp_path / "folder.tsv"), "--device", "cpu"]
        )
        == 0
    )
    assert (tmp_path / "hub.tsv").read_text() == (tmp_path / "folder.tsv").read_text()

    capsys.readouterr()
    offline = " (not in the local Hugging Face cache, and HF_HUB_OFFLINE=1 keeps the Hub off)"
    for missing, reason in (("nucel-tests/not-cached", offline), (str(tmp_path / "no-such-folder"), "")):
        assert cli.main(["predict", "--model", missing, str(fasta), "-o", str(tmp_path / "never.tsv")]) != 0
        error = capsys.readouterr().err.strip()
        assert error.endswith(f"{missing}: no such model folder or Hub id{reason}") and len(error.splitlines()) == 1
    assert not (tmp_path / "never.tsv").exists()


def test_an_encoder_is_not_taken_for_a_classifier(tmp_path, capsys):
    encoder = save_model_folder(NucELModel(NucELConfig.from_preset("tiny")), tmp_path / "encoder")
    fasta = write_fasta(tmp_path / "input.fa")
    assert cli.main(["predict", "--model", str(encoder), str(fasta), "-o", str(tmp_path / "p.tsv")]) != 0
    assert "is not a NucELForSequenceClassification checkpoint: it has no weights for" in capsys.readouterr().err


def test_finetune_records_the_training_lengths_and_predict_uses_them(tmp_path):
    """nucel-finetune writes the range into config.json (which a release keeps) and finetune.json; a folder
    without finetune.json (as released) windows the same way."""
    rng = np.random.default_rng(0)
    sequences = [random_dna(int(n), i) for i, n in enumerate(rng.integers(30, 61, size=24))]
    split = Split(sequences, [int(s.count("G") > s.count("C")) for s in sequences], "toy", "")
    settings = FinetuneSettings(
        label_names=["c_rich", "g_rich"],
        max_steps=1,
        eval_steps=1,
        batch_size=8,
        early_stopping_patience=None,
        max_length_bp=50,
    )
    finetune("random:tiny", split, split, tmp_path / "model", settings)
    lengths = {"min_bp": 30, "max_bp": 50, "median_bp": float(np.median([min(len(s), 50) for s in sequences]))}
    assert min(map(len, sequences)) == 30 and max(map(len, sequences)) > 50  # truncated at 50 bp in training
    assert json.loads((tmp_path / "model" / "config.json").read_text())[TRAINING_LENGTHS] == lengths
    assert json.loads((tmp_path / "model" / "finetune.json").read_text())[TRAINING_LENGTHS] == lengths

    fasta = write_fasta(tmp_path / "input.fa", {"long": INPUTS["long"], "short": INPUTS["short"]})
    predict_file(tmp_path / "model", fasta, tmp_path / "finetuned.tsv", progress=False)
    released = tmp_path / "released"
    shutil.copytree(tmp_path / "model", released)
    (released / "finetune.json").unlink()
    predict_file(released, fasta, tmp_path / "released.tsv", progress=False)
    assert [row["windows"] for row in read_rows(tmp_path / "finetuned.tsv")] == ["3", "1"]  # 50-bp windows at 0, 25, 50
    assert (tmp_path / "finetuned.tsv").read_text() == (tmp_path / "released.tsv").read_text()
