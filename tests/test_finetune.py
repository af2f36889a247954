"""Fine-tuning, model selection, saving/reloading (full, frozen, LoRA), prediction and the benchmark runner,
with the tiny preset on CPU and, where it matters, the real GUE data."""

import csv
import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, roc_auc_score

from nucel.benchmarks.run import run_benchmark
from nucel.cli import main as nucel_main
from nucel.core.classifiers import load_finetuned, predict_logits
from nucel.core.tables import Split, TableError
from nucel.predict import predict_file
from nucel.tokenization import InvalidDNAError
from nucel.training import finetune as finetune_module
from nucel.training.finetune import finetune
from nucel.training.finetune_config import FinetuneSettings
from nucel.training.finetune_data import read_labelled_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_dna(count, length, seed):
    rng = random.Random(seed)
    return ["".join(rng.choice("ACGT") for _ in range(length)) for _ in range(count)]


def gc_fraction(sequence):
    return (sequence.count("G") + sequence.count("C")) / len(sequence)


def quick_settings(**overrides):
    values = dict(
        label_names=["low_gc", "high_gc"],
        max_steps=6,
        eval_steps=2,
        batch_size=16,
        learning_rate=2e-3,
        early_stopping_patience=None,
    )
    return FinetuneSettings(**{**values, **overrides})


def validation_loss(model, tokenizer, split):
    logits = torch.from_numpy(predict_logits(model, tokenizer, split.sequences))
    return torch.nn.functional.cross_entropy(logits, torch.tensor(split.labels)).item()


# ------------------------------------------------------------------------------------------------ full fine-tuning


def test_full_finetune_selects_lowest_validation_loss_and_loads_everywhere(base_folder, gc_task, tmp_path):
    from transformers import AutoModelForSequenceClassification, pipeline

    train, validation, test = gc_task
    result = finetune(base_folder, train, validation, tmp_path / "model", quick_settings(pooling="mean"), test)
    losses = [entry["loss"] for entry in result.validation_history]
    assert len(losses) == 3 and result.best_validation_loss == min(losses)
    model, tokenizer, metadata = load_finetuned(tmp_path / "model")
    # The saved weights are the selected checkpoint's: their validation loss is the best one seen.
    assert validation_loss(model, tokenizer, validation) == pytest.approx(result.best_validation_loss, abs=1e-4)
    assert metadata["method"] == "full" and metadata["best_step"] == result.best_step
    assert np.allclose(predict_logits(model, tokenizer, test.sequences), result.test_logits, atol=1e-5)

    auto = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model", trust_remote_code=True)
    assert auto.config.id2label == {0: "low_gc", 1: "high_gc"} and auto.config.classifier_pooling == "mean"
    classify = pipeline("text-classification", model=str(tmp_path / "model"), trust_remote_code=True)
    scores = classify(test.sequences[:3], top_k=None)
    expected = torch.softmax(torch.from_numpy(result.test_logits[:3]), dim=-1)
    for row, probabilities in zip(scores, expected):
        by_name = {entry["label"]: entry["score"] for entry in row}
        assert set(by_name) == {"low_gc", "high_gc"}
        assert by_name["high_gc"] == pytest.approx(probabilities[1].item(), abs=1e-5)


def test_frozen_backbone_trains_only_the_head(base_folder, gc_task, tmp_path):
    train, validation, _ = gc_task
    finetune(base_folder, train, validation, tmp_path / "frozen", quick_settings(method="frozen"))
    base = load_file(f"{base_folder}/model.safetensors")
    tuned = load_file(tmp_path / "frozen" / "model.safetensors")
    assert all(torch.equal(tuned[f"model.{name}"], tensor) for name, tensor in base.items())
    initial = finetune_module.build_classifier(base_folder, quick_settings(method="frozen"))
    assert not torch.equal(tuned["classifier.weight"], initial.classifier.weight.detach())


def test_lora_saves_only_adapters_and_heads_and_reloads_to_the_same_predictions(base_folder, gc_task, tmp_path):
    train, validation, test = gc_task
    result = finetune(base_folder, train, validation, tmp_path / "lora", quick_settings(method="lora"), test)
    files = {path.name for path in (tmp_path / "lora").iterdir()}
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
    } <= files and "model.safetensors" not in files
    saved = load_file(tmp_path / "lora" / "adapter_model.safetensors")
    for name in saved:
        assert "lora_" in name or ".head." in name or ".classifier." in name, name
    assert any(".Wqkv.lora_A" in n for n in saved) and any(".mlp.Wi.lora_B" in n for n in saved)
    assert any(".classifier." in n for n in saved) and any(".head.dense." in n for n in saved)
    base_size = sum(t.numel() for t in load_file(f"{base_folder}/model.safetensors").values())
    assert sum(t.numel() for t in saved.values()) < base_size / 3
    model, tokenizer, metadata = load_finetuned(tmp_path / "lora")
    assert metadata["base_model"] == base_folder
    assert np.allclose(predict_logits(model, tokenizer, test.sequences), result.test_logits, atol=1e-5)


def test_lora_on_a_random_model_is_refused(gc_task, tmp_path):
    train, validation, _ = gc_task
    with pytest.raises(ValueError, match="LoRA needs a saved base checkpoint"):
        finetune("random:tiny", train, validation, tmp_path / "x", quick_settings(method="lora"))


# ------------------------------------------------------------------------------------------------ other problem types


@pytest.mark.slow
def test_regression_toy_task_trains_and_predicts(tmp_path):
    """GC content from sequence, a target a tiny model learns in a few steps (mean pooling sees every base)."""
    rows = [(s, gc_fraction(s)) for s in random_dna(160, 32, seed=4)]
    for name, part in (("train", rows[:128]), ("dev", rows[128:])):
        with open(tmp_path / f"{name}.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([("sequence", "gc"), *part])
    assert (
        nucel_main(
            [
                "finetune",
                "--model",
                "random:tiny",
                "--train",
                str(tmp_path / "train.csv"),
                "--validation",
                str(tmp_path / "dev.csv"),
                "--output",
                str(tmp_path / "model"),
                "--problem-type",
                "regression",
                "--label-column",
                "gc",
                "--pooling",
                "mean",
                "--max-steps",
                "30",
                "--eval-steps",
                "10",
                "--batch-size",
                "16",
                "--learning-rate",
                "3e-3",
                "--warmup-steps",
                "3",
            ]
        )
        == 0
    )
    metadata = json.loads((tmp_path / "model" / "finetune.json").read_text())
    targets = np.array([gc for _, gc in rows[128:]])
    assert metadata["problem_type"] == "regression" and metadata["label_names"] == ["gc"]
    # Better than always predicting the mean: the model learnt something about the target.
    assert metadata["best_validation_loss"] < targets.var()
    predictions = predict_file(tmp_path / "model", tmp_path / "dev.csv", tmp_path / "predictions.csv")
    with open(predictions, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["id", "gc", "windows"] and len(table) == 32


def test_multi_label_toy_task_trains(tmp_path):
    from transformers import pipeline

    def labels(s):
        return [float(gc_fraction(s) > 0.5), float("TT" in s[:8])]

    train, validation = (
        Split(seqs, [labels(s) for s in seqs], "toy", "") for seqs in (random_dna(96, 32, 5), random_dna(32, 32, 6))
    )
    settings = quick_settings(label_names=["high_gc", "starts_tt"], problem_type="multi_label_classification")
    result = finetune("random:tiny", train, validation, tmp_path / "model", settings)
    assert np.isfinite(result.best_validation_loss)
    model, tokenizer, _ = load_finetuned(tmp_path / "model")
    assert model.config.problem_type == "multi_label_classification"
    classify = pipeline("text-classification", model=str(tmp_path / "model"), trust_remote_code=True)
    scores = {entry["label"]: entry["score"] for entry in classify(validation.sequences[0], top_k=None)}
    expected = torch.sigmoid(torch.from_numpy(predict_logits(model, tokenizer, validation.sequences[:1])))[0]
    assert scores["high_gc"] == pytest.approx(expected[0].item(), abs=1e-5)
    assert scores["starts_tt"] == pytest.approx(expected[1].item(), abs=1e-5)


# ------------------------------------------------------------------------------------------------ predict command


def test_predict_command_on_fasta_and_csv(gc_task, tmp_path):
    train, validation, test = gc_task
    finetune("random:tiny", train, validation, tmp_path / "model", quick_settings(max_steps=2, eval_steps=1))
    fasta = tmp_path / "input.fa"
    fasta.write_text("".join(f">seq{i} description\n{s[:16]}\n{s[16:]}\n" for i, s in enumerate(test.sequences[:5])))
    assert (
        nucel_main(
            [
                "predict",
                "--model",
                str(tmp_path / "model"),
                str(fasta),
                "-o",
                str(tmp_path / "out.tsv"),
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    with open(tmp_path / "out.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [row["id"] for row in rows] == [f"seq{i}" for i in range(5)]
    model, tokenizer, _ = load_finetuned(tmp_path / "model")
    probabilities = torch.softmax(torch.from_numpy(predict_logits(model, tokenizer, test.sequences[:5])), dim=-1)
    for row, expected in zip(rows, probabilities):
        assert float(row["probability_high_gc"]) == pytest.approx(expected[1].item(), abs=1e-6)
        assert row["prediction"] == ("high_gc" if expected[1] > expected[0] else "low_gc")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,sequence\na,ACGT\nb,ACGU\n")
    with pytest.raises(InvalidDNAError, match=r"bad\.csv line 3"):
        predict_file(tmp_path / "model", bad, tmp_path / "never.csv")


# ------------------------------------------------------------------------------------------------ user-file errors


def test_user_file_errors_name_file_and_line(tmp_path):
    settings = quick_settings()
    path = tmp_path / "train.csv"
    path.write_text("sequence,label\nACGT,low_gc\nACGT,medium_gc\n")
    with pytest.raises(
        TableError,
        match=r"train\.csv: of 2 rows, 1 with a class not among the training classes .*'medium_gc'.* "
        r"\(first at line 3\)",
    ):
        read_labelled_data(path, settings, ["label"])
    path.write_text("sequence,target\nACGT,low_gc\n")
    with pytest.raises(TableError, match=r"missing column\(s\) \['label'\]"):
        read_labelled_data(path, settings, ["label"])
    path.write_text("sequence,label\n")
    with pytest.raises(TableError, match="empty split"):
        read_labelled_data(path, settings, ["label"])
    path.write_text("sequence,label\nACGT,low_gc\nAC>GT,low_gc\n")
    with pytest.raises(InvalidDNAError, match=r"'>' at position 3 in .*train\.csv line 3"):
        read_labelled_data(path, settings, ["label"])


# ------------------------------------------------------------------------------------------------ benchmark runner


@pytest.mark.slow
def test_runner_on_real_gue_task_reports_sklearn_metrics(shared_data, tmp_path):
    """A capped run of GUE prom_core_tata for NucEL and the CNN baseline: results follow RESULTS_SCHEMA.md and
    every reported metric equals sklearn's recomputation from the saved test predictions."""
    overrides = dict(
        max_train_samples=128,
        max_validation_samples=64,
        max_steps=4,
        eval_steps=2,
        learning_rate=1e-3,
        batch_size=32,
        warmup_steps=0,
        epochs=None,
        early_stopping_patience=None,
    )
    all_results = run_benchmark(
        "gue",
        str(shared_data / "GUE"),
        ["random:tiny", "cnn"],
        ["prom/prom_core_tata"],
        [1, 2],
        overrides,
        tmp_path,
        "test-run",
    )
    assert [results["model"] for results in all_results] == ["random:tiny", "cnn-baseline"]
    for folder, results in zip(("test-run-random-tiny", "test-run-cnn-baseline"), all_results):
        on_disk = json.loads((tmp_path / folder / "results.json").read_text())
        assert on_disk["suite"] == "gue" and set(on_disk["averages"]) == {"CPD", "suite"}
        (task,) = on_disk["tasks"]
        assert task["task"] == "prom/prom_core_tata" and task["seeds"] == [1, 2] and task["num_labels"] == 2
        assert task["split_sizes"] == {"train": 128, "validation": 64, "test": 613}
        assert task["split_sizes_full"] == {"train": 4904, "validation": 613, "test": 613}
        assert len(task["data_sha256"]["test"]) == 64
        assert task["mean"] == pytest.approx(np.mean(task["values"])) and task["sd"] == pytest.approx(
            np.std(task["values"], ddof=1)
        )
        for seed, value in zip(task["seeds"], task["values"]):
            run = json.loads((tmp_path / folder / "runs" / "prom_prom_core_tata" / f"seed{seed}.json").read_text())
            with open(tmp_path / folder / "runs" / "prom_prom_core_tata" / run["predictions"], newline="") as handle:
                rows = list(csv.DictReader(handle))
            labels = np.array([int(r["label"]) for r in rows])
            scores = np.array([[float(r["probability_0"]), float(r["probability_1"])] for r in rows])
            predictions = np.array([int(r["prediction"]) for r in rows])
            assert len(rows) == 613 and np.array_equal(predictions, scores.argmax(axis=1))
            assert value == run["metrics"]["mcc"] == pytest.approx(matthews_corrcoef(labels, predictions), abs=1e-12)
            assert run["metrics"]["accuracy"] == pytest.approx(accuracy_score(labels, predictions), abs=1e-12)
            assert run["metrics"]["f1_macro"] == pytest.approx(
                f1_score(labels, predictions, average="macro"), abs=1e-12
            )
            assert run["metrics"]["auroc"] == pytest.approx(roc_auc_score(labels, scores[:, 1]), abs=1e-12)
    table = (tmp_path / "test-run.md").read_text()
    assert "| prom/prom_core_tata | CPD | mcc | 128 (4904) / 64 (613) / 613 (613) |" in table
    assert "max_train_samples=128" in table and "0.751" in table  # the caps, and the paper's CPD number beside ours


@pytest.mark.slow
def test_evaluation_only_task_is_skipped_in_training_and_scored_by_evaluate(shared_data, gc_task, tmp_path):
    """A GUE folder without train.csv (EMP/H3 here, its first 40 real test rows) is reported as evaluation-only
    by the runner, and `evaluate_finetuned` scores a fine-tuned model on it."""
    from nucel.benchmarks.run import evaluate_finetuned
    from nucel.core.metrics import compute_metrics

    lines = (shared_data / "GUE/EMP/H3/test.csv").read_text().splitlines()[:41]
    folder = tmp_path / "GUE" / "EMP" / "H3"
    folder.mkdir(parents=True)
    for name in ("dev.csv", "test.csv"):
        (folder / name).write_text("\n".join(lines) + "\n")
    (results,) = run_benchmark(
        "gue", str(tmp_path / "GUE"), ["cnn"], ["EMP/H3"], [1], {}, tmp_path / "out", "eval-only"
    )
    assert results["tasks"] == [] and "train.csv is missing" in results["skipped_tasks"]["EMP/H3"]
    assert "EMP/H3: evaluation only" in (tmp_path / "out" / "eval-only-cnn-baseline" / "results.md").read_text()

    train, validation, _ = gc_task
    finetune(
        "random:tiny",
        train,
        validation,
        tmp_path / "model",
        quick_settings(label_names=["0", "1"], max_steps=2, eval_steps=1),
    )
    scores = evaluate_finetuned("gue", str(tmp_path / "GUE"), str(tmp_path / "model"), ["EMP/H3"])["EMP/H3"]
    model, tokenizer, _ = load_finetuned(tmp_path / "model")
    sequences = [line.split(",")[0] for line in lines[1:]]
    labels = [int(line.split(",")[1]) for line in lines[1:]]
    expected = compute_metrics(
        "single_label_classification", labels, predict_logits(model, tokenizer, sequences, max_length_bp=500)
    )
    assert scores["test_rows"] == 40 and scores["mcc"] == pytest.approx(expected["mcc"])


@pytest.mark.slow
def test_compiled_finetuning_trains_as_the_eager_model(base_folder, gc_task, tmp_path):
    train, validation, _ = gc_task
    eager = finetune(base_folder, train, validation, tmp_path / "eager", quick_settings())
    compiled = finetune(base_folder, train, validation, tmp_path / "compiled", quick_settings(compile=True))
    assert [entry["step"] for entry in compiled.validation_history] == [
        entry["step"] for entry in eager.validation_history
    ]
    for ours, reference in zip(compiled.validation_history, eager.validation_history):
        assert abs(ours["loss"] - reference["loss"]) < 1e-4
