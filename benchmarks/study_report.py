"""The pre-training study's analysis: from the finished jobs of a running Study (benchmarks/pretraining_study.py) to
the report `pretraining_study.json` holds (the markdown and the figure: benchmarks/study_markdown.py).
"""

import math
import statistics
import time
from dataclasses import asdict
from pathlib import Path

from nucel.benchmarks.paired_differences import ArmRuns, matthews, paired_difference, verdict
from nucel.benchmarks.study_jobs import classes_of, training_flops_per_step
from nucel.core.files import display_path

ARM_LABELS = {
    "rtd": "RTD",
    "mlm": "MLM",
    "control": "uniform-replacement control",
    "random": "random init",
    "cnn": "one-hot CNN",
}
# A validation loss this far below the one-class loss has left the plateau (training/finetune.py's margin).
PLATEAU_MARGIN = 0.02


# ----------------------------------------------------------------------------------------------------------------
# Per-job figures


def mean_dev_mcc(probe_result: dict | None) -> float | None:
    """A dev-scored probe job's mean MCC over its tasks (the sweeps' choice)."""
    if not probe_result:
        return None
    return statistics.fmean(task["test"] for task in probe_result["tasks"].values())


def left_plateau(result: dict) -> bool:
    """Whether a fine-tuning run's validation loss ever fell below the one-class predictor's."""
    lowest = min(entry["loss"] for entry in result["validation_history"])
    return lowest < result["one_class_loss"] * (1 - PLATEAU_MARGIN)


def selected_last(result: dict) -> bool:
    return result["best_step"] == result["steps_trained"]


def reached_step_limit(result: dict) -> bool:
    """Whether a fine-tuning run trained to its step limit (max_steps, or its epochs when it has none, as the
    CNN's settings do): early stopping did not end it."""
    settings = result["settings"]
    limit = settings.get("max_steps") or 0
    if limit <= 0:
        limit = math.ceil(settings["epochs"] * math.ceil(result["split_sizes"]["train"] / settings["batch_size"]))
    return result["steps_trained"] >= limit


def finetune_counts(results: list[dict]) -> dict:
    """How many fine-tuning runs there are, and how many of them show each sign of not having converged."""
    return {
        "runs": len(results),
        "selected_last_checkpoint": sum(selected_last(r) for r in results),
        "reached_step_limit": sum(reached_step_limit(r) for r in results),
        "stayed_on_plateau": sum(not left_plateau(r) for r in results),
    }


def end_figures(series: list[dict] | None) -> dict:
    return dict(series[-1]) if series else {}


# Job-name prefix -> the stage of the study it belongs to, in the report's order ("probe_sweep_" before "probe_").
COMPUTE_STAGES = (
    ("sweep_", "sweep"),
    ("probe_sweep_", "sweep probes"),
    ("pretrain_", "pretraining"),
    ("finetune_", "fine-tuning"),
    ("probe_", "probes"),
)


def compute_by_arm(results: dict, threads: int) -> dict:
    """CPU-hours of the finished jobs by arm and stage: {"rtd": {"sweep": h, "pretraining": h, "fine-tuning": h,
    "probes": h}, ..., "fine-tuning search": {...}}. Arms are read off the job names (Study's naming); a budget
    suffix ("rtd-small") counts towards its arm."""
    hours = {}
    for name, result in results.items():
        if name.startswith("ftsearch"):
            arm, stage = "fine-tuning search", "fine-tuning"
        else:
            prefix, stage = next((p, s) for p, s in COMPUTE_STAGES if name.startswith(p))
            rest = name.removeprefix(prefix)
            arm = rest.rstrip("0123456789") if stage.startswith("sweep") else rest.split("_")[0].split("-")[0]
        by_stage = hours.setdefault(arm, {})
        by_stage[stage] = by_stage.get(stage, 0.0) + result.get("wall_seconds", 0) * threads / 3600
    return hours


def summarise(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
    }


# ----------------------------------------------------------------------------------------------------------------
# Stages


def sweep_rows(study) -> dict[str, list[dict]]:
    rows = {}
    for (name, objective, _), (job, spec) in zip(study.sweep_runs(), study.sweep_jobs()):
        label, recipe = study.budget.sweeps[objective][int(name.removeprefix(f"sweep_{objective}"))]
        result, probe = study.results.get(name), study.results.get(f"probe_{name}")
        rows.setdefault(objective, []).append(
            {
                "setting": label,
                "overrides": recipe,
                "steps": spec["overrides"]["max_steps"],
                "flops": training_flops_per_step(spec["overrides"])["per_step"] * spec["overrides"]["max_steps"],
                "wall_seconds": result["wall_seconds"] if result else None,
                "validation_end": end_figures(result["validation"]) if result else {},
                "ood_validation_end": end_figures(result["ood_validation"]) if result else {},
                "validation": result["validation"] if result else [],
                "dev_probe_mcc": mean_dev_mcc(probe),
                "dev_probe_by_task": {t: r["test"] for t, r in probe["tasks"].items()} if probe else {},
                "dev_probe_layers": {t: r["layer"] for t, r in probe["tasks"].items()} if probe else {},
            }
        )
    return rows


def finetune_search_rows(study) -> list[dict]:
    rows = []
    for index, (label, overrides) in enumerate(study.budget.finetune_candidates):
        results = {}
        for task in study.budget.tasks:
            result = study.results.get(f"ftsearch{index}_{task.replace('/', '_')}")
            if result:
                results[task] = result
        rows.append(
            {
                "setting": label,
                "overrides": overrides,
                "finished": len(results),
                "left_plateau": sum(left_plateau(r) for r in results.values()),
                "mean_dev": statistics.fmean(r["value"] for r in results.values()) if results else None,
                "dev_by_task": {t: r["value"] for t, r in results.items()},
                "steps_by_task": {t: r["steps_trained"] for t, r in results.items()},
            }
        )
    return rows


def arms_entry(study) -> dict:
    """`arms`: per arm its pre-training seeds, recipe and per-budget runs (steps, FLOPs, validation at the end)."""
    arms = {}
    for arm, budgets in study.pretrained_arms.items():
        entry = {"pretraining_seeds": list(study.budget.seeds), "recipe": study.arm_recipe(arm), "budgets": {}}
        for name, spec in study.pretrain_jobs(budgets):
            budget = name.split("_")[1].rsplit("-", 1)[1]
            if not name.startswith(f"pretrain_{arm}-"):
                continue
            result = study.results.get(name)
            overrides = spec["overrides"]
            runs = entry["budgets"].setdefault(
                budget,
                {
                    "steps": overrides["max_steps"],
                    "flops": training_flops_per_step(overrides)["per_step"] * overrides["max_steps"],
                    "runs": [],
                },
            )["runs"]
            if result:
                runs.append(
                    {
                        "seed": overrides["seed"],
                        "wall_seconds": result["wall_seconds"],
                        "validation_end": end_figures(result["validation"]),
                        "ood_validation_end": end_figures(result["ood_validation"]),
                        "windows": result["windows"],
                    }
                )
        arms[arm] = entry
    arms["random"] = {"pretraining_seeds": [], "initialisation_seeds": list(study.budget.seeds)}
    arms["cnn"] = {
        "pretraining_seeds": [],
        "finetuning_seeds": list(study.budget.seeds),
        "settings": {
            "registry": "cnn_hyperparameters",
            "overrides": dict(study.budget.cnn_downstream),
        },
    }
    return arms


def downstream_runs(study) -> dict[tuple[str, str, str], dict[int, dict]]:
    """{(kind, arm key, task): {seed: result}} of the finished fine-tuning runs and probes."""
    runs: dict = {}
    for name, result in study.results.items():
        kind = name.split("_")[0]
        if kind == "finetune":
            _, key, *task, seed = name.split("_")
            task = "/".join(task) if task[0] != "prom" else "prom/" + "_".join(task[1:])
            runs.setdefault(("finetune", key, task), {})[int(seed.removeprefix("seed"))] = result
        elif kind == "probe" and not name.startswith("probe_sweep"):
            _, key, seed = name.split("_")
            for task, probe in result["tasks"].items():
                runs.setdefault(("probe", key, task), {})[int(seed.removeprefix("seed"))] = probe
    return runs


def score(kind: str, result: dict) -> float:
    return result["value"] if kind == "finetune" else result["test"]


_DIFFERENCES_CACHE: dict = {}


def differences(study, runs: dict) -> list[dict]:
    """Paired differences (fine-tuning, test MCC) of every comparison at every budget both arms have, per task with
    all seeds finished for both arms, and their mean."""
    seeds, entries = list(study.budget.seeds), []
    for budget in ("small", "large"):
        for a, b in study.comparisons:
            keys = [arm if arm in ("random", "cnn") else f"{arm}-{budget}" for arm in (a, b)]
            if any(budget not in study.pretrained_arms.get(arm, (budget,)) for arm in (a, b)):
                continue
            complete = [
                task
                for task in study.budget.tasks
                if all(set(seeds) <= set(runs.get(("finetune", key, task), {})) for key in keys)
            ]
            if not complete:
                continue
            arm_runs = [
                {
                    task: ArmRuns(
                        [[classes_of(runs[("finetune", key, task)][s]["predictions"])] for s in seeds],
                        classes_of(runs[("finetune", keys[0], task)][seeds[0]]["labels"]),
                    )
                    for task in complete
                }
                for key in keys
            ]
            cache_key = (budget, a, b, tuple(complete))
            if cache_key not in _DIFFERENCES_CACHE:
                _DIFFERENCES_CACHE[cache_key] = paired_difference(*arm_runs, matthews)
            for task, entry in _DIFFERENCES_CACHE[cache_key].items():
                entries.append(
                    {
                        "a": a,
                        "b": b,
                        "budget": budget,
                        "task": task,
                        **entry,
                        "tasks": len(complete) if task == "mean" else 1,
                        "all_tasks": len(complete) == len(study.budget.tasks),
                        "verdict": verdict(ARM_LABELS[a], ARM_LABELS[b], entry),
                    }
                )
    return entries


def build_report(study) -> dict:
    b = study.budget
    runs = downstream_runs(study)
    downstream: dict = {}
    for (kind, key, task), by_seed in runs.items():
        values = [score(kind, result) for _, result in sorted(by_seed.items())]
        downstream.setdefault(task, {}).setdefault(kind, {})[key] = summarise(values)
    finetuned: dict[str, list[dict]] = {}
    for (kind, key, _), by_seed in runs.items():
        if kind == "finetune":
            finetuned.setdefault(key, []).extend(by_seed.values())
    counts = finetune_counts([result for results in finetuned.values() for result in results])
    counts["by_arm"] = {key: finetune_counts(results) for key, results in sorted(finetuned.items())}
    chosen_finetuning = study.chosen_finetuning()
    cpu_hours_by_arm = compute_by_arm(study.results, study.args.threads)
    return {
        "quick": study.args.quick,
        "status": study.status,
        "command": " ".join(["nucel study", *(display_path(a) if Path(a).exists() else a for a in study.args.argv)]),
        "written": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "elapsed_minutes": (time.time() - study.started) / 60,
        "cpu_hours": sum(sum(stages.values()) for stages in cpu_hours_by_arm.values()),
        "cpu_hours_by_arm": cpu_hours_by_arm,
        "jobs_finished": len(study.results),
        "jobs_planned_now": len(study.planned()),
        "fasta": [display_path(name) for name in study.fasta],
        "ood_fasta": [display_path(name) for name in study.ood_fasta],
        "work_dir": display_path(study.args.work_dir, follow_links=False),
        "workers": study.args.workers,
        "threads": study.args.threads,
        "budget": {k: v for k, v in asdict(b).items() if k not in ("sweeps", "finetune_candidates")},
        "budgets": {name: {"flops": study.budget_flops(name)} for name in ("small", "large")},
        "sweeps": sweep_rows(study),
        "chosen": {objective: (study.chosen_recipe(objective) or (None,))[0] for objective in b.sweeps},
        "finetune_search": finetune_search_rows(study),
        "finetune_chosen": chosen_finetuning[0] if chosen_finetuning else None,
        "finetune_recipe": chosen_finetuning[1] if chosen_finetuning else None,
        "arms": arms_entry(study),
        "downstream": downstream,
        "finetune_counts": counts,
        "paired_differences": differences(study, runs),
        "downstream_runs": [
            {
                "arm": key,
                "task": task,
                "seed": seed,
                "value": result["value"],
                "best_step": result["best_step"],
                "steps_trained": result["steps_trained"],
                "left_plateau": left_plateau(result),
                "wall_seconds": result["wall_seconds"],
            }
            for (kind, key, task), by_seed in sorted(runs.items())
            if kind == "finetune"
            for seed, result in sorted(by_seed.items())
        ],
    }
