"""The benchmark runner's bookkeeping: suite averages as each paper computes them, reuse keyed on the model's
checksum, the NT ten-fold cross-validation, the CNN's own settings, one process."""

import json
import random
import statistics

import numpy as np
import pytest
import torch

from nucel import NucELConfig, NucELModel
from nucel.benchmarks import run as runner
from nucel.benchmarks import suite_results
from nucel.benchmarks.loaders import load_task
from nucel.benchmarks.registry import load_suite
from nucel.core.identity import folder_identity
from nucel.core.models import save_model_folder

NT_TASK = "promoter_tata"
GUE_TASK = "prom/prom_core_tata"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def summary(task: str, group: str, mean: float) -> dict:
    """A task summary as the runner writes it, reduced to what the averages read."""
    return {"task": task, "group": group, "mean": mean}


def gc_rows(count: int, seed: int, length: int = 40) -> list[tuple[str, int]]:
    """Random DNA labelled 1 when GC-rich: learnable in a few steps."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        sequence = "".join(rng.choice("ACGT") for _ in range(length))
        rows.append((sequence, int((sequence.count("G") + sequence.count("C")) / length > 0.5)))
    return rows


def write_csv(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("sequence,label\n" + "".join(f"{sequence},{label}\n" for sequence, label in rows))


@pytest.fixture
def gue_folder(tmp_path):
    """A GUE root with one small task (train/dev/test.csv)."""
    root = tmp_path / "GUE"
    for split, count, seed in (("train", 48, 1), ("dev", 16, 2), ("test", 20, 3)):
        write_csv(root / GUE_TASK / f"{split}.csv", gc_rows(count, seed))
    return root


@pytest.fixture
def nt_folder(tmp_path):
    """An NT root in the <task>/{train,test}.csv layout: 53 training rows (folds of 5 and 6), 20 test rows."""
    root = tmp_path / "NT"
    write_csv(root / NT_TASK / "train.csv", gc_rows(53, 4))
    write_csv(root / NT_TASK / "test.csv", gc_rows(20, 5))
    return root


QUICK = dict(
    max_steps=2,
    eval_steps=1,
    batch_size=8,
    learning_rate=1e-3,
    warmup_steps=0,
    epochs=None,
    early_stopping_patience=None,
)


# ------------------------------------------------------------------------------------------------ averages


def test_paper_gue_group_figures_average_to_the_paper_suite_average():
    """NucEL's GUE 75.16 is the mean of its seven group figures, not of the 28 tasks."""
    gue = load_suite("gue")
    groups = gue.paper["groups"]
    assert list(groups) == list(gue.average.groups) and len(groups) == 7
    assert 100 * statistics.fmean(groups.values()) == pytest.approx(100 * gue.paper["suite_average"], abs=0.005)


def test_gue_suite_average_is_the_mean_of_group_averages():
    """On a hand-made table of all 28 tasks: EMP's ten tasks weigh as one group, not as ten tasks."""
    gue = load_suite("gue")
    by_group = {"TF-H": 0.70, "PD": 0.80, "CPD": 0.60, "SSP": 0.90, "TF-M": 0.50, "EMP": 0.20, "CVC": 0.40}
    tasks = [summary(task.name, task.group, by_group[task.group]) for task in gue.tasks]
    tasks[0]["mean"] = tasks[1]["mean"] = 0.30  # two EMP tasks off the group's 0.20: EMP's average is 0.22
    assert [t["group"] for t in tasks[:2]] == ["EMP", "EMP"]
    expected = (0.70 + 0.80 + 0.60 + 0.90 + 0.50 + 0.22 + 0.40) / 7
    average = suite_results.suite_average(gue, tasks)
    assert average["value"] == pytest.approx(expected) and average["complete"] and average["over"] == "groups"
    assert average["value"] != pytest.approx(statistics.fmean(t["mean"] for t in tasks))  # not the mean of 28 tasks
    assert average["label"].startswith("mean of the 7 group averages") and not average["tasks_missing"]
    averages = suite_results.averages(gue, tasks)
    assert averages["EMP"] == pytest.approx(0.22) and averages["suite"] == pytest.approx(expected)


def test_partial_gue_run_says_it_is_partial():
    gue = load_suite("gue")
    tasks = [summary("tf/0", "TF-H", 0.6), summary("tf/1", "TF-H", 0.8), summary("prom/prom_core_all", "CPD", 0.5)]
    average = suite_results.suite_average(gue, tasks)
    assert average["value"] == pytest.approx((0.7 + 0.5) / 2) and not average["complete"]
    assert average["label"].startswith("PARTIAL (2 of 7 groups, 3 of 28 tasks), not the paper's average")
    assert average["groups_present"] == ["TF-H", "CPD"] and "SSP" in average["groups_missing"]
    assert len(average["tasks_missing"]) == 25 and "virus/covid" in average["tasks_missing"]
    results = {
        "model": "m",
        "model_identity": {"sha256": "0" * 64},
        "tasks": [],
        "caps": "none",
        "wall_seconds": 0,
        "averages": suite_results.averages(gue, tasks),
        "suite_average": average,
        "skipped_tasks": {},
    }
    table = suite_results.markdown_table(gue, [results])
    assert "| **suite average**: mean of the 7 group averages" in table and "| 0.600 (partial) | 0.752 |" in table
    assert "- m: PARTIAL (2 of 7 groups, 3 of 28 tasks)" in table
    assert "Missing: EMP/H3, " in table and "splice/reconstructed, tf/2, tf/3, tf/4, virus/covid." in table


def test_genomic_benchmarks_average_is_over_the_seven_human_tasks():
    gb = load_suite("genomic_benchmarks")
    human = [task.name for task in gb.averaged_tasks()]
    assert (
        len(human) == 7 and "drosophila_enhancers_stark" not in human and "dummy_mouse_enhancers_ensembl" not in human
    )
    tasks = [summary(task.name, task.group, 0.9 if task.group == "paper" else 0.1) for task in gb.tasks]
    average = suite_results.suite_average(gb, tasks)
    assert average["value"] == pytest.approx(0.9) and average["complete"]
    assert average["tasks_left_out"] == ["dummy_mouse_enhancers_ensembl", "drosophila_enhancers_stark"]
    assert suite_results.averages(gb, tasks) == pytest.approx({"paper": 0.9, "other": 0.1, "suite": 0.9})


def test_nucleotide_transformer_average_is_over_its_18_tasks():
    nt = load_suite("nucleotide_transformer")
    tasks = [summary(task.name, task.group, index / 100) for index, task in enumerate(nt.tasks)]
    average = suite_results.suite_average(nt, tasks)
    assert len(nt.averaged_tasks()) == 18 and average["complete"]
    assert average["value"] == pytest.approx(statistics.fmean(index / 100 for index in range(18)))


# ------------------------------------------------------------------------------------------------ settings


def test_cnn_trains_with_its_own_settings_and_language_models_with_the_paper_head():
    task = load_suite("gue").task("tf/0")
    cnn = runner.task_settings(task, 42, {}, runner.CNN_MODEL)
    language_model = runner.task_settings(task, 42, {}, "random:tiny")
    assert cnn.learning_rate == task.cnn_hyperparameters["learning_rate"] != language_model.learning_rate == 3e-5
    assert (
        cnn.batch_size == task.cnn_hyperparameters["batch_size"]
        and cnn.lr_scheduler == task.cnn_hyperparameters["lr_scheduler"]
    )
    assert language_model.head == "linear" and language_model.epochs == 3 and language_model.batch_size == 32
    overridden = runner.task_settings(task, 42, {"learning_rate": 0.01, "max_train_samples": 5}, runner.CNN_MODEL)
    assert overridden.learning_rate == 0.01 and runner.effective_batch_size(overridden) == cnn.batch_size


def test_runner_refuses_to_run_as_several_processes(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="one process"):
        runner.run_benchmark("gue", str(tmp_path), ["cnn"], ["tf/0"], [1], {}, tmp_path, "x")


# ------------------------------------------------------------------------------------------------ reuse by identity


def save_tiny(folder, seed: int) -> str:
    torch.manual_seed(seed)
    return str(save_model_folder(NucELModel(NucELConfig.from_preset("tiny")), folder))


def test_a_different_model_in_a_folder_of_the_same_name_is_trained_not_reused(gue_folder, tmp_path, capsys):
    first = save_tiny(tmp_path / "a" / "export" / "discriminator", seed=1)
    second = save_tiny(tmp_path / "b" / "export" / "discriminator", seed=2)
    output = tmp_path / "out"
    arguments = ("gue", str(gue_folder))

    def run(model):
        (results,) = runner.run_benchmark(*arguments, [model], [GUE_TASK], [7], QUICK, output, "reuse")
        return results, capsys.readouterr().out

    first_results, log = run(first)
    assert "reusing" not in log
    second_results, log = run(second)
    assert "reusing" not in log  # same folder name, different weights: trained
    identities = [folder_identity(first)["sha256"], folder_identity(second)["sha256"]]
    assert identities[0] != identities[1]
    assert [first_results["model_identity"]["sha256"], second_results["model_identity"]["sha256"]] == identities
    folders = sorted(path.name for path in output.iterdir() if path.is_dir())
    assert folders == sorted(f"reuse-discriminator-{sha[:8]}" for sha in identities)  # never one shared folder
    for sha in identities:
        run_record = json.loads(
            (output / f"reuse-discriminator-{sha[:8]}" / "runs" / "prom_prom_core_tata" / "seed7.json").read_text()
        )
        on_disk = json.loads((output / f"reuse-discriminator-{sha[:8]}" / "results.json").read_text())
        assert run_record["model_identity"]["sha256"] == on_disk["model_identity"]["sha256"] == sha
        assert set(run_record["model_identity"]["files"]) == {"model.safetensors", "config.json", "tokenizer.json"}
        assert run_record["settings"]["effective_batch_size"] == QUICK["batch_size"]

    again, log = run(second)
    assert f"{GUE_TASK} seed7: reusing" in log and again["tasks"][0]["values"] == second_results["tasks"][0]["values"]
    # A byte-identical copy elsewhere is the same model.
    copy = save_tiny(tmp_path / "c" / "discriminator", seed=2)
    _, log = run(copy)
    assert "reusing" in log


def test_identity_follows_the_weights_not_the_folder(tmp_path):
    folder = save_tiny(tmp_path / "model", seed=3)
    before = folder_identity(folder)
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    config["transformers_version"] = "0.0"  # config.json is part of the identity: any change makes another model
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    assert folder_identity(folder)["files"]["model.safetensors"] == before["files"]["model.safetensors"]
    assert folder_identity(folder)["sha256"] != before["sha256"]
    assert runner.model_identity("random:tiny") == runner.model_identity("random:tiny")
    assert runner.model_identity("random:tiny")["sha256"] != runner.model_identity("random:nucel-93m")["sha256"]
    assert runner.model_identity("cnn")["kind"] == "cnn"


# ------------------------------------------------------------------------------------------------ NT cross-validation


def test_nt_runs_are_the_ten_folds_of_the_training_set(nt_folder):
    nt = load_suite("nucleotide_transformer")
    task = nt.task(NT_TASK)
    task_data = load_task(nt, task, str(nt_folder))
    assert set(task_data.splits) == {"train", "test"}  # no carved validation: the folds make it
    train = task_data.splits["train"]
    plans = runner.plan_runs(nt, task, task_data, {}, None, None)
    assert [plan.name for plan in plans] == [f"fold{k}" for k in range(10)]
    assert [plan.seed for plan in plans] == list(task.seeds)
    held_out = []
    for plan in plans:
        fold_train, validation = plan.used["train"], plan.used["validation"]
        assert (
            not set(fold_train.sequences) & set(validation.sequences)
            and len(fold_train) + len(validation) == len(train) == 53
        )
        assert sorted(fold_train.sequences + validation.sequences) == sorted(train.sequences)
        assert plan.used["test"] is task_data.splits["test"]
        held_out += validation.sequences
    assert sorted(held_out) == sorted(train.sequences)  # every training row is held out exactly once
    assert [len(plan.used["validation"]) for plan in plans].count(6) == 3  # 53 rows: three folds of 6, seven of 5
    assert [p.name for p in runner.plan_runs(nt, task, task_data, {}, None, [0, 9])] == ["fold0", "fold9"]
    with pytest.raises(ValueError, match="fold 10 does not exist"):
        runner.plan_runs(nt, task, task_data, {}, None, [10])


def test_nt_aggregates_the_folds_as_published(nt_folder, tmp_path, monkeypatch):
    """Mean over the ten folds' test MCCs, shown ± 2 sd; each fold's model selected on its own held-out fold."""
    seen = []

    def fake_train_and_test(model, train, validation, test, settings, device=None):
        assert not set(train.sequences) & set(validation.sequences)  # the random rows here are all distinct
        seen.append((settings.seed, len(train), len(validation), len(test)))
        logits = np.zeros((len(test), 2))
        return {
            "best_validation_loss": 0.5,
            "best_step": 1,
            "steps_trained": 1,
            "train_seconds": 0.0,
            "validation_history": [],
            "train_history": [],
            "test_logits": logits,
            "metrics": {"mcc": settings.seed / 100, "accuracy": 0.5, "f1_macro": 0.5, "auroc": None},
        }

    monkeypatch.setattr(runner, "train_and_test", fake_train_and_test)
    (results,) = runner.run_benchmark(
        "nucleotide_transformer", str(nt_folder), ["cnn"], [NT_TASK], None, {}, tmp_path, "cv"
    )
    (task,) = results["tasks"]
    expected = [seed / 100 for seed in range(1, 11)]
    assert [seed for seed, *_ in seen] == list(range(1, 11))
    assert all(
        train_rows + validation_rows == 53 and test_rows == 20 for _, train_rows, validation_rows, test_rows in seen
    )
    assert task["runs"] == [f"fold{k}" for k in range(10)] and task["folds"] == list(range(10))
    assert task["values"] == expected and task["mean"] == pytest.approx(statistics.fmean(expected))
    assert task["sd"] == pytest.approx(statistics.stdev(expected)) and task["error_bar_sd"] == 2
    assert results["protocol"]["kind"] == "cross_validation" and results["averages"]["suite"] == pytest.approx(
        task["mean"]
    )
    table = (tmp_path / "cv-cnn-baseline" / "results.md").read_text()
    assert f"| {task['mean']:.3f} ± {2 * task['sd']:.3f} (10) |" in table and "mean ± 2 sd" in table  # (runs)
    record = json.loads((tmp_path / "cv-cnn-baseline" / "runs" / NT_TASK / "fold3.json").read_text())
    assert record["fold"] == 3 and record["settings"]["fold_seed"] == 2024 and record["seed"] == 4
    with pytest.raises(ValueError, match="folds, not seeds"):
        runner.run_benchmark("nucleotide_transformer", str(nt_folder), ["cnn"], [NT_TASK], [1], {}, tmp_path, "cv")


def test_nt_fold_trains_the_cnn_and_selects_on_its_held_out_fold(nt_folder, tmp_path):
    """One real fold, CNN for two steps: the record names the fold, its sizes, and a selected checkpoint."""
    (results,) = runner.run_benchmark(
        "nucleotide_transformer", str(nt_folder), ["cnn"], [NT_TASK], None, QUICK, tmp_path, "cv-real", folds=[2]
    )
    (task,) = results["tasks"]
    record = json.loads((tmp_path / "cv-real-cnn-baseline" / "runs" / NT_TASK / "fold2.json").read_text())
    assert task["runs"] == ["fold2"] and record["split_sizes"] == {"train": 47, "validation": 6, "test": 20}
    assert record["best_step"] in (1, 2) and [entry["step"] for entry in record["validation_history"]] == [1, 2]
    assert record["value"] == record["metrics"]["mcc"] and record["settings"]["learning_rate"] == QUICK["learning_rate"]
    assert "fold 2 of 10" in " ".join(record["notes"])


def test_one_run_shows_no_error_bar():
    """A task run once has no sd to show: "0.512 (n = 1)", never "0.512 ± 0.000"."""
    from nucel.benchmarks.registry import load_suite
    from nucel.benchmarks.suite_results import mean_with_error_bar

    suite = load_suite("gue")
    assert mean_with_error_bar({"mean": 0.5123, "sd": None, "values": [0.5123]}, suite) == "0.512 (n = 1)"
    assert mean_with_error_bar({"mean": 0.5, "sd": 0.02, "values": [0.48, 0.5, 0.52]}, suite) == "0.500 ± 0.020 (3)"
