"""The pre-training study (benchmarks/pretraining_study.py): the full plan's design (arms, seeds, budgets at equal
FLOPs, choices on dev only), its analysis, and `--quick` end to end on real data."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from nucel.benchmarks import pretraining_study as study
from nucel.benchmarks import study_jobs, study_plan, study_report
from nucel.benchmarks.registry import load_suite
from nucel.cli import main as nucel_main

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FASTA = SHARED / "pretrain" / "human_hg38_chr2_1-2333275" / "chr2_1-2333275.fa.gz"
GUE = SHARED / "GUE"


def full_study(tmp_path, **results) -> study.Study:
    """The full-size study's plan (nothing run), with `results` as its finished jobs."""
    args = argparse.Namespace(
        quick=False,
        tasks=None,
        work_dir=str(tmp_path / "work"),
        output=str(tmp_path / "out"),
        fasta=["genome.fa"],
        ood_fasta=["other.fa"],
        data=str(tmp_path / "gue"),
        workers=2,
        threads=1,
        report_only=True,
        argv=[],
    )
    plan = study.Study(args)
    plan.results.update(results)
    return plan


def dev_probe(score: float) -> dict:
    return {"wall_seconds": 1.0, "tasks": {task: {"test": score, "layer": "layer 2"} for task in study_plan.TASKS}}


def flops(spec: dict) -> float:
    return study_jobs.training_flops_per_step(spec["overrides"])["per_step"] * spec["overrides"]["max_steps"]


def test_both_objectives_get_the_same_sweep_effort_at_the_same_compute(tmp_path):
    plan = full_study(tmp_path)
    assert len(study_plan.MLM_SWEEP) >= len(study_plan.RTD_SWEEP) >= 8
    jobs = dict(plan.sweep_jobs())
    assert len(jobs) == len(study_plan.RTD_SWEEP) + len(study_plan.MLM_SWEEP)
    for name, spec in jobs.items():
        assert spec["overrides"]["seed"] == study_plan.SWEEP_SEED
        assert abs(flops(spec) / plan.budget_flops("small") - 1) < 0.01, name
        assert spec["overrides"]["validation_block_length"] > 0 and spec["overrides"]["ood_validation_fasta"]
    # every lever of the issue is a setting of the RTD sweep; MLM has BERT's 80/10/10 and ELECTRA's 85/15
    rtd = [overrides for _, overrides in study_plan.RTD_SWEEP]
    assert {"none", "gdes"} <= {o.get("embedding_sharing") for o in rtd}
    assert any(o.get("disallow_correct") is False for o in rtd) and any("sampling_temperature_start" in o for o in rtd)
    mlm = {(o["mask_token_fraction"], o["random_token_fraction"]) for _, o in study_plan.MLM_SWEEP}
    assert {(0.8, 0.1), (0.85, 0.0)} <= mlm


def test_recipes_are_chosen_on_dev_probes_only_when_the_whole_sweep_is_probed(tmp_path):
    scores = {f"probe_sweep_rtd{i}": dev_probe(0.1 + 0.01 * i) for i in range(len(study_plan.RTD_SWEEP))}
    scores["probe_sweep_rtd3"] = dev_probe(0.5)
    plan = full_study(tmp_path, **scores)
    assert plan.chosen_recipe("rtd") == study_plan.RTD_SWEEP[3]
    assert plan.chosen_recipe("mlm") is None  # MLM's sweep is not probed: its runs wait, RTD's need not
    assert {name.split("_")[1] for name, _ in plan.pretrain_jobs(("small",))} == {"rtd-small", "control-small"}
    del plan.results["probe_sweep_rtd0"]
    assert plan.chosen_recipe("rtd") is None  # a sweep still running decides nothing
    # the sweeps' probes and the fine-tuning search are scored on dev, never on test
    plan = full_study(tmp_path, **{f"sweep_{o}{i}": {} for o in ("rtd", "mlm") for i in range(8)})
    choices = plan.sweep_probe_jobs() + plan.finetune_search_jobs()
    assert len(choices) == 16 + len(study_plan.FINETUNE_CANDIDATES) * len(study_plan.TASKS)
    assert {spec["score"] for _, spec in choices} == {"dev"}
    assert {spec["model"] for _, spec in plan.finetune_search_jobs()} == {"random:tiny"}


def test_every_pretrained_arm_has_three_seeds_and_equal_flops_at_two_budgets(tmp_path):
    chosen = {f"probe_sweep_{o}{i}": dev_probe(0.2 + (i == 5) * 0.1) for o in ("rtd", "mlm") for i in range(8)}
    plan = full_study(tmp_path, **chosen)
    jobs = dict(plan.pretrain_jobs(("small", "large")))
    arms = {}
    for name, spec in jobs.items():
        _, key, seed = name.split("_")
        arms.setdefault(key, []).append(spec["overrides"]["seed"])
        budget = key.rsplit("-", 1)[1]
        assert abs(flops(spec) / plan.budget_flops(budget) - 1) < 0.01, name
    assert {key: sorted(seeds) for key, seeds in arms.items()} == {
        key: [1, 2, 3] for key in ("rtd-small", "rtd-large", "mlm-small", "mlm-large", "control-small")
    }
    assert plan.budget_flops("large") >= 4 * plan.budget_flops("small")
    control = jobs["pretrain_control-small_seed1"]["overrides"]
    assert control["replacement"] == "uniform" and study_plan.RTD_SWEEP[5][1].items() <= control.items()
    assert set(study_jobs.training_flops_per_step(control)["networks"]) == {"discriminator"}  # no generator runs
    assert jobs["pretrain_mlm-small_seed2"]["overrides"]["objective"] == "mlm"


def fine_tuned(predictions, labels, best_step=300, steps=800) -> dict:
    history = [{"step": 100, "loss": 0.69}, {"step": best_step, "loss": 0.5}]
    return {
        "value": 0.0,
        "predictions": study_jobs.digits(predictions),
        "labels": study_jobs.digits(labels),
        "validation_history": history,
        "one_class_loss": float(np.log(2)),
        "best_step": best_step,
        "steps_trained": steps,
        "wall_seconds": 1.0,
        "settings": {"max_steps": 2000, "epochs": 3, "batch_size": 32},
        "split_sizes": {"train": 1000, "validation": 100},
    }


def test_paired_differences_of_finished_arms(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    results = {}
    for seed in (1, 2, 3):
        good = np.where(rng.random(400) < 0.9, labels, 1 - labels)
        for key, predictions in (("rtd-small", good), ("mlm-small", good), ("random", 1 - labels)):
            results[f"finetune_{key}_tf_0_seed{seed}"] = fine_tuned(predictions, labels)
    plan = full_study(tmp_path, **results)
    entries = study_report.differences(plan, study_report.downstream_runs(plan))
    by_pair = {(e["a"], e["b"], e["task"]): e for e in entries}
    assert set(by_pair) == {
        (a, b, t) for a, b in (("rtd", "mlm"), ("rtd", "random"), ("mlm", "random")) for t in ("tf/0", "mean")
    }
    same = by_pair[("rtd", "mlm", "tf/0")]
    assert same["difference"] == 0 and same["ci95"] == [0.0, 0.0] and "no difference" in same["verdict"]
    better = by_pair[("rtd", "random", "mean")]
    assert better["ci95"][0] > 0 and better["verdict"].startswith("RTD better") and better["tasks"] == 1
    assert not better["all_tasks"]  # 1 of the 7 tasks


def test_plateau_and_last_checkpoint_are_counted():
    labels = [0, 1]
    assert study_report.left_plateau(fine_tuned(labels, labels))
    stuck = fine_tuned(labels, labels)
    stuck["validation_history"] = [{"step": 100, "loss": 0.693}, {"step": 200, "loss": 0.690}]
    assert not study_report.left_plateau(stuck)
    assert study_report.selected_last(fine_tuned(labels, labels, best_step=800, steps=800))


def test_downstream_runs_use_the_chosen_candidate_with_the_longer_step_limit(tmp_path):
    labels = [0, 1]
    searched = {}
    for index, _ in enumerate(study_plan.FINETUNE_CANDIDATES):
        for task in study_plan.TASKS:
            searched[f"ftsearch{index}_{study.slug(task)}"] = {**fine_tuned(labels, labels), "value": 0.1 * index}
    del searched[f"ftsearch1_{study.slug(study_plan.TASKS[0])}"]
    plan = full_study(tmp_path, **searched)
    assert plan.chosen_finetuning() is None  # a search still running decides nothing
    best = len(study_plan.FINETUNE_CANDIDATES) - 1
    plan.results[f"ftsearch1_{study.slug(study_plan.TASKS[0])}"] = fine_tuned(labels, labels)
    label, recipe = plan.chosen_finetuning()
    candidate = study_plan.FINETUNE_CANDIDATES[best][1]
    assert label == study_plan.FINETUNE_CANDIDATES[best][0]
    assert recipe == {**study_plan.FINETUNE_BASE, **candidate, **study_plan.FINETUNE_DOWNSTREAM}
    assert recipe["max_steps"] > study_plan.FINETUNE_BASE["max_steps"]
    finetuned = [spec for name, spec in plan.downstream_jobs("small", 1) if name.startswith("finetune_random_")]
    assert len(finetuned) == len(study_plan.TASKS) and all(spec["recipe"] == recipe for spec in finetuned)
    assert {spec["recipe"]["max_steps"] for _, spec in plan.finetune_search_jobs()} == {2000}
    # the CNN keeps its own tuned settings, with an epoch limit long enough for early stopping to end its runs
    cnn = [spec for name, spec in plan.downstream_jobs("small", 1) if name.startswith("finetune_cnn_")]
    registry_epochs = load_suite("gue").task("tf/0").cnn_hyperparameters["epochs"]
    assert len(cnn) == len(study_plan.TASKS) and all(spec["recipe"] == study_plan.CNN_DOWNSTREAM for spec in cnn)
    assert study_plan.CNN_DOWNSTREAM["epochs"] >= 5 * registry_epochs


def test_runs_that_early_stopping_did_not_end_are_counted():
    labels = [0, 1]
    stopped, capped = fine_tuned(labels, labels, steps=1999), fine_tuned(labels, labels, steps=2000)
    assert not study_report.reached_step_limit(stopped) and study_report.reached_step_limit(capped)
    by_epochs = fine_tuned(labels, labels, steps=94)  # the CNN's settings: 3 epochs of ceil(1000 / 32) = 32 steps
    by_epochs["settings"]["max_steps"] = -1
    assert not study_report.reached_step_limit(by_epochs)
    by_epochs["steps_trained"] = 96
    assert study_report.reached_step_limit(by_epochs)
    counts = study_report.finetune_counts([stopped, capped, by_epochs])
    assert counts == {"runs": 3, "selected_last_checkpoint": 0, "reached_step_limit": 2, "stayed_on_plateau": 0}


def test_compute_is_summed_by_arm_and_stage_from_the_job_names():
    hour = {"wall_seconds": 3600}
    results = {
        "sweep_rtd0": hour,
        "sweep_rtd7": hour,
        "probe_sweep_mlm3": hour,
        "pretrain_rtd-large_seed2": hour,
        "pretrain_control-small_seed1": hour,
        "ftsearch2_tf_0": hour,
        "finetune_random_tf_0_seed1": hour,
        "finetune_rtd-small_prom_prom_300_tata_seed3": hour,
        "probe_mlm-small_seed1": hour,
    }
    assert study_report.compute_by_arm(results, threads=2) == {
        "rtd": {"sweep": 4.0, "pretraining": 2.0, "fine-tuning": 2.0},
        "mlm": {"sweep probes": 2.0, "probes": 2.0},
        "control": {"pretraining": 2.0},
        "fine-tuning search": {"fine-tuning": 2.0},
        "random": {"fine-tuning": 2.0},
    }


def run_quick_study(output, work, *extra) -> int:
    paths = ["--fasta", str(FASTA), "--data", str(GUE), "--output", str(output), "--work-dir", str(work)]
    return nucel_main(["study", "--quick", *paths, *extra])


@pytest.mark.slow
@pytest.mark.skipif(
    not (FASTA.is_file() and (GUE / "tf" / "0").is_dir() and Path(study_plan.DEFAULT_OOD_FASTA).is_file()),
    reason=f"needs the shared data ({FASTA}, {study_plan.DEFAULT_OOD_FASTA} and {GUE}/tf/0), absent here",
)
def test_quick_study_writes_its_results(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    output, work = tmp_path / "results", tmp_path / "work"
    assert run_quick_study(output, work) == 0
    report = json.loads((output / "pretraining_study.json").read_text())
    assert (output / "pretraining_study.png").stat().st_size > 0
    markdown = (output / "pretraining_study.md").read_text()
    assert report["status"] == "finished" and "QUICK MODE" in markdown
    assert report["chosen"]["rtd"] and report["chosen"]["mlm"] and report["finetune_chosen"]
    for arm in ("rtd", "mlm", "control"):
        assert report["arms"][arm]["pretraining_seeds"] == list(study_plan.QUICK.seeds)
        for budget in report["arms"][arm]["budgets"].values():
            assert len(budget["runs"]) == len(study_plan.QUICK.seeds)
            assert all(run["validation_end"] and run["ood_validation_end"] for run in budget["runs"])
    cells = report["downstream"]["tf/0"]
    keys = {"rtd-small", "rtd-large", "mlm-small", "mlm-large", "control-small", "random"}
    assert set(cells["finetune"]) == keys | {"cnn"} and set(cells["probe"]) == keys
    pairs = {(e["a"], e["b"], e["budget"]) for e in report["paired_differences"] if e["task"] == "mean"}
    assert pairs == {
        ("rtd", "mlm", "small"),
        ("rtd", "control", "small"),
        ("rtd", "random", "small"),
        ("mlm", "random", "small"),
        ("rtd", "mlm", "large"),
        ("rtd", "random", "large"),
        ("mlm", "random", "large"),
    }
    assert all(e["ci95"][0] <= e["difference"] <= e["ci95"][1] for e in report["paired_differences"])
    assert report["finetune_counts"]["runs"] == 7 * len(study_plan.QUICK.seeds)
    by_arm = report["cpu_hours_by_arm"]
    assert sum(sum(stages.values()) for stages in by_arm.values()) == pytest.approx(report["cpu_hours"])
    assert set(by_arm) == {"rtd", "mlm", "control", "random", "cnn", "fine-tuning search"}
    cnn_run = json.loads((output / "pretraining_study_jobs" / "finetune_cnn_tf_0_seed1.json").read_text())["result"]
    assert cnn_run["settings"]["epochs"] == study_plan.QUICK.cnn_downstream["epochs"]
    assert cnn_run["settings"]["learning_rate"] == load_suite("gue").task("tf/0").cnn_hyperparameters["learning_rate"]
    # a second run reuses every job
    assert run_quick_study(output, work) == 0
    assert json.loads((output / "pretraining_study.json").read_text())["downstream"] == report["downstream"]
    # the finished jobs' results name no folder of this machine: another checkout reuses them
    store = output / "pretraining_study_jobs"
    assert not [path for path in store.glob("*.json") if str(tmp_path) in path.read_text()]
    # --report-only rewrites the report from what has finished and runs nothing
    (store / "probe_random_seed1.json").unlink()
    assert run_quick_study(output, work, "--report-only") == 0
    partial = json.loads((output / "pretraining_study.json").read_text())
    assert partial["status"].startswith("stopped with") and not (store / "probe_random_seed1.json").exists()
    assert partial["downstream"]["tf/0"]["probe"]["random"]["n"] == 1 and "--report-only" not in partial["command"]
    # a new machine: the work folder is gone. Only the encoder an unfinished job needs is pre-trained again, with the
    # same weights as the stored run's (else that job would not run and the study would not finish).
    (store / "probe_rtd-small_seed1.json").unlink()
    assert run_quick_study(output, tmp_path / "new-work") == 0
    rebuilt = json.loads((output / "pretraining_study.json").read_text())
    assert rebuilt["status"] == "finished" and rebuilt["downstream"] == report["downstream"]
    assert [p.name for p in (tmp_path / "new-work" / "pretrain").iterdir()] == ["rtd-small-seed1"]


def test_finished_jobs_name_no_machine_folder_and_are_reused_by_another_checkout(tmp_path):
    def runner(machine: str) -> study_jobs.JobRunner:
        roots = {"{work_dir}": tmp_path / machine / "work", "{shared}": tmp_path / machine / "shared"}
        return study_jobs.JobRunner(tmp_path / "store", tmp_path / machine / "work", roots, 1, 1, lambda *_: None)

    def spec(machine: str) -> dict:
        model, data = tmp_path / machine / "work" / "pretrain" / "rtd", tmp_path / machine / "shared" / "data" / "GUE"
        return {"kind": "probe", "model": str(model), "data": str(data)}

    first = runner("first")
    first.execute = lambda name, job: {"model": job["model"], "mcc": 0.5}  # what a job's result may hold: its paths
    assert first.run("probe_rtd", spec("first"))["mcc"] == 0.5
    assert str(tmp_path) not in (tmp_path / "store" / "probe_rtd.json").read_text()
    second = runner("second")
    assert second.cached("probe_rtd", spec("second")) == {"model": spec("second")["model"], "mcc": 0.5}
    assert second.cached("probe_rtd", {**spec("second"), "kind": "finetune"}) is None  # another spec: run again


def test_an_encoder_rebuilt_on_a_new_machine_must_have_the_recorded_weights(tmp_path):
    jobs = study_jobs.JobRunner(tmp_path / "store", tmp_path / "work", {}, 1, 1, lambda *_: None)
    run = tmp_path / "work" / "pretrain" / "rtd-small-seed1"
    pretraining = ("pretrain_rtd-small_seed1", {"kind": "pretrain", "overrides": {"output_dir": str(run)}})

    def execute(weights: str):
        def pretrain(name, job):
            (run / "export").mkdir(parents=True, exist_ok=True)
            return {"weights_sha256": weights}

        return pretrain

    jobs.execute = execute("aaa")
    jobs.run(*pretraining)
    assert jobs.rebuild_all([pretraining]) == {pretraining[0]} and run.is_dir()
    jobs.execute = execute("bbb")  # not the weights the finished jobs used: they must not mix with them
    assert jobs.rebuild_all([pretraining]) == set() and not run.exists()


def test_class_indices_are_stored_as_digits_and_read_back():
    assert study_jobs.digits(np.array([0, 1, 1, 9])) == "0119"
    assert study_jobs.classes_of("0119").tolist() == [0, 1, 1, 9]
    assert study_jobs.digits([3, 11]) == [3, 11]  # ten classes or more: a list, read the same way
    assert study_jobs.classes_of([3, 11]).tolist() == [3, 11]


def test_rtd_flops_count_the_generator():
    weak = study_jobs.training_flops_per_step({"generator_preset": "tiny-generator-1x16"})
    strong = study_jobs.training_flops_per_step({"generator_preset": "tiny-generator"})
    mlm = study_jobs.training_flops_per_step({"objective": "mlm"})
    assert set(weak["networks"]) == {"generator", "discriminator"} and set(mlm["networks"]) == {"encoder"}
    assert weak["networks"]["discriminator"] == strong["networks"]["discriminator"]
    assert strong["networks"]["generator"] > weak["networks"]["generator"] > 0
