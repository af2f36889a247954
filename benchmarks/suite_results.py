"""A benchmark run's summaries: per-task means and sds over seeds or folds, the suite's averages as its paper computes
them (GUE: the mean of its group averages), and the results files (`results.json`, `results.md`, the suite table).
"""

import statistics
from dataclasses import asdict
from pathlib import Path

from nucel.benchmarks.cnn_baseline import CNN_MODEL, CNN_NAME
from nucel.benchmarks.registry import Suite, Task
from nucel.core.files import write_json_atomically, write_text_atomically


def model_label(model: str) -> str:
    return CNN_NAME if model == CNN_MODEL else model


# ----------------------------------------------------------------------------------------------------------------
# Summaries and averages


def summarise_task(task: Task, runs: list[dict], suite: Suite) -> dict:
    values = [run["value"] for run in runs]
    metric_names = runs[0]["metrics"].keys()
    summary = {
        "task": task.name,
        "group": task.group,
        "metric": task.metric,
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else None,  # n = 1: none
        "error_bar_sd": suite.protocol.error_bar_sd,
        "values": values,
        "runs": [run["run"] for run in runs],
        "seeds": [run["seed"] for run in runs],
        "num_labels": task.num_labels,
        "effective_batch_size": runs[0]["settings"]["effective_batch_size"],
        "split_sizes": runs[0]["split_sizes"],
        "split_sizes_full": runs[0]["split_sizes_full"],
        "data_sha256": runs[0]["data_sha256"],
        "notes": runs[0]["notes"],
        "split_overlaps": runs[0].get("split_overlaps", {}),
        "metrics": {name: mean_or_none([run["metrics"][name] for run in runs]) for name in metric_names},
        "wall_seconds": sum(run["wall_seconds"] for run in runs),
    }
    if suite.protocol.kind == "cross_validation":
        summary["folds"] = [run["fold"] for run in runs]
    return summary


def mean_or_none(values: list) -> float | None:
    return None if any(value is None for value in values) else statistics.fmean(values)


def group_averages(tasks: list[dict]) -> dict[str, float]:
    """Mean of the task means of each group present."""
    groups: dict[str, list[float]] = {}
    for task in tasks:
        groups.setdefault(task["group"], []).append(task["mean"])
    return {group: statistics.fmean(means) for group, means in groups.items()}


def suite_average(suite: Suite, tasks: list[dict]) -> dict:
    """The suite's one number computed as its paper does (`average:` in the registry), with what it covers.

    GUE: the mean of the group averages, so EMP's 10 tasks weigh as much as SSP's one; GB and NT: the mean over
    the averaged tasks. It is `complete` only when every task that enters the paper's average was run; otherwise
    its `label` says it is partial and which groups and tasks it rests on."""
    spec = suite.average
    means = {task["task"]: task["mean"] for task in tasks}
    expected = suite.averaged_tasks()
    present = [task.name for task in expected if task.name in means]
    missing = [task.name for task in expected if task.name not in means]
    groups_present = [group for group in spec.groups if any(suite.task(name).group == group for name in present)]
    groups_missing = [group for group in spec.groups if group not in groups_present]
    if not present:
        value = None
    elif spec.over == "groups":
        value = statistics.fmean(group_averages([task for task in tasks if task["task"] in present]).values())
    else:
        value = statistics.fmean(means[name] for name in present)
    if not missing:
        label = spec.description
    else:
        coverage = f"{len(present)} of {len(expected)} tasks"
        if spec.over == "groups":
            coverage = f"{len(groups_present)} of {len(spec.groups)} groups, {coverage}"
        label = f"PARTIAL ({coverage}), not the paper's average: {spec.description}"
    return {
        "value": value,
        "complete": not missing,
        "label": label,
        "description": spec.description,
        "over": spec.over,
        "groups_present": groups_present,
        "groups_missing": groups_missing,
        "tasks_present": present,
        "tasks_missing": missing,
        "tasks_left_out": [name for name in means if suite.task(name).group not in spec.groups],
    }


def averages(suite: Suite, tasks: list[dict]) -> dict:
    """Group averages and, under "suite", the suite average as the paper computes it (see `suite_average`)."""
    result = group_averages(tasks)
    value = suite_average(suite, tasks)["value"]
    if value is not None:
        result["suite"] = value
    return result


# ----------------------------------------------------------------------------------------------------------------
# Results files


def caps_description(overrides: dict, threads: int | None) -> str:
    parts = [f"{key}={value}" for key, value in overrides.items() if value is not None]
    if threads:
        parts.append(f"torch_threads={threads}")
    return ", ".join(parts) if parts else "none (the registry's hyper-parameters)"


def write_results(
    suite: Suite, model: str, identity: dict, tasks: list[dict], skipped: dict, overrides: dict, threads, run_dir: Path
) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    results = {
        "suite": suite.name,
        "model": model_label(model),
        "model_identity": identity,
        "tasks": tasks,
        "averages": averages(suite, tasks),
        "suite_average": suite_average(suite, tasks),
        "protocol": asdict(suite.protocol),
        "paper": suite.paper,
        "caps": caps_description(overrides, threads),
        "overrides": overrides,
        "skipped_tasks": skipped,
        "wall_seconds": sum(task["wall_seconds"] for task in tasks),
        "group_tasks": {task["group"]: [t["task"] for t in tasks if t["group"] == task["group"]] for task in tasks},
    }
    write_json_atomically(run_dir / "results.json", results)
    write_text_atomically(run_dir / "results.md", markdown_table(suite, [results]))
    return results


def mean_with_error_bar(task: dict, suite: Suite) -> str:
    """ "0.512 ± 0.031 (3)": the mean, its error bar and the number of runs; one run has no error bar to show."""
    runs = len(task["values"])
    if task["sd"] is None:
        return f"{task['mean']:.3f} (n = {runs})"
    return f"{task['mean']:.3f} ± {suite.protocol.error_bar_sd * task['sd']:.3f} ({runs})"


def format_score(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown_table(suite: Suite, all_results: list[dict]) -> str:
    """Per-task mean ± error bar for each model, then group and suite averages beside the paper's NucEL numbers."""
    paper = suite.paper or {}
    paper_groups = paper.get("groups", {})
    paper_name = paper.get("model", "paper")
    first = all_results[0]
    models = [results["model"] for results in all_results]
    error_bar = "sd" if suite.protocol.error_bar_sd == 1 else f"{suite.protocol.error_bar_sd} sd"
    runs = first["tasks"][0]["runs"] if first["tasks"] else "–"
    lines = [
        f"# {suite.title}: {', '.join(models)}",
        "",
        f"Protocol: {suite.protocol.description}",
        f"Metric per task as in benchmarks/tasks/{suite.name}.yaml (over the whole test split), mean ± {error_bar} "
        f"over the runs {runs}; model selection by lowest validation loss (validation: {suite.validation}).",
        f"Caps and overrides: {first['caps']}. The CNN baseline trains with its own tuned hyper-parameters.",
        "Effective batch (rows per optimiser step: one process, no gradient accumulation, no DataParallel): "
        + "; ".join(
            f"{r['model']} {'/'.join(map(str, sorted({t['effective_batch_size'] for t in r['tasks']}))) or '–'}"
            for r in all_results
        )
        + ".",
        "Model identity (sha256, core/identity.py): "
        + "; ".join(f"{r['model']} {r['model_identity']['sha256'][:16]}…" for r in all_results)
        + ".",
        "Wall time: " + "; ".join(f"{r['model']} {r['wall_seconds'] / 60:.1f} min" for r in all_results) + ".",
        f"Paper column: {paper_name} ({paper.get('source', '')}), group averages only; rows here are small-scale runs.",
        "",
        "| task | group | metric | rows train / validation / test (full) | "
        + " | ".join(models)
        + f" | {paper_name} (group) |",
        "|---|---|---|---|" + "---|" * len(models) + "---|",
    ]
    by_model = [{task["task"]: task for task in results["tasks"]} for results in all_results]
    task_names = [task.name for task in suite.tasks if any(task.name in tasks for tasks in by_model)]
    for name in task_names:
        reference = next(tasks[name] for tasks in by_model if name in tasks)
        used, full = reference["split_sizes"], reference["split_sizes_full"]
        sizes = " / ".join(f"{used.get(s, 0)} ({full.get(s, 0)})" for s in ("train", "validation", "test"))
        cells = [mean_with_error_bar(tasks[name], suite) if name in tasks else "–" for tasks in by_model]
        lines.append(
            f"| {name} | {reference['group']} | {reference['metric']} | {sizes} | "
            + " | ".join(cells)
            + f" | {format_score(paper_groups.get(reference['group']))} |"
        )
    groups = list(dict.fromkeys(suite.task(name).group for name in task_names))
    in_suite = {group: sum(task.group == group for task in suite.tasks) for group in groups}
    for group in groups:
        run_count = sum(suite.task(name).group == group for name in task_names)
        outside = "" if group in suite.average.groups else ", not in the paper's average"
        cells = [format_score(results["averages"].get(group)) for results in all_results]
        lines.append(
            f"| **{group} average** ({run_count} of {in_suite[group]} tasks{outside}) | | | | "
            + " | ".join(cells)
            + f" | {format_score(paper_groups.get(group))} |"
        )
    cells = [
        format_score(r["suite_average"]["value"]) + ("" if r["suite_average"]["complete"] else " (partial)")
        for r in all_results
    ]
    lines.append(
        f"| **suite average**: {suite.average.description} | | | | "
        + " | ".join(cells)
        + f" | {format_score(paper.get('suite_average'))} |"
    )
    lines += ["", "Suite average:"]
    for results in all_results:
        average = results["suite_average"]
        detail = average["label"]
        if not average["complete"]:
            detail += f". Missing: {', '.join(average['tasks_missing'])}"
        lines.append(f"- {results['model']}: {detail}.")
    skipped = {name: reason for results in all_results for name, reason in results["skipped_tasks"].items()}
    if skipped:
        lines += ["", "Not run:"] + [f"- {name}: {reason}" for name, reason in skipped.items()]
    shared = [
        f"- {name}: " + ", ".join(f"{pair} {count}" for pair, count in reference["split_overlaps"].items())
        for name in task_names
        for reference in [next(t[name] for t in by_model if name in t)]
        if reference.get("split_overlaps")
    ]
    if shared:
        lines += [
            "",
            "Rows of one split found verbatim in another (pair: rows of the second split); selection on a "
            "validation split that repeats training rows rewards memorisation:",
        ] + shared
    checksums = [
        f"- {name}: " + ", ".join(f"{s} {h[:16]}…" for s, h in reference["data_sha256"].items())
        for name in task_names
        for reference in [next(t[name] for t in by_model if name in t)]
    ]
    lines += ["", "Data sha256 (first 16 hex digits; full values in results.json):"] + checksums
    return "\n".join(lines) + "\n"
