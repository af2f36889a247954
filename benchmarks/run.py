"""Run a benchmark suite (or some of its tasks) for one or more models, every seed, and tabulate the results.

    python benchmarks/run.py --suite gue --data ../shared/data/GUE --model ./nucel-93m
    python -m nucel.benchmarks.run --suite gue --data ../shared/data/GUE --task tf/0 --model random:tiny --model cnn
    python -m nucel.benchmarks.run --suite nucleotide_transformer \
        --data InstaDeepAI/nucleotide_transformer_downstream_tasks_revised --model ./nucel-93m

Each (task, seed, model) fine-tunes with the registry's hyper-parameters (benchmarks/tasks/<suite>.yaml) unless
overridden, selects the checkpoint with the lowest validation loss, and scores the whole test split. Output,
per model, in `<output>/<run name>-<model>/`: runs/<task>/seed<N>.json (+ test predictions),
results.json (notes/RESULTS_SCHEMA.md) and results.md (mean ± sd per task, averages per group and suite
beside the paper's NucEL numbers, split sizes, checksums). With several models, `<output>/<run name>.md`
compares them side by side. A finished run is reused when its settings are unchanged, so an interrupted
command can simply be started again.

`--model cnn` is the one-hot CNN baseline; `--model random:<preset>` a randomly initialised NucEL.
Tasks without a train split are listed as evaluation-only; `--evaluate FOLDER` scores an already fine-tuned
model on test splits without training (such tasks included).
"""

import argparse
import csv
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nucel.training.cnn_baseline import OneHotCNN, OneHotCNNConfig
from nucel.tokenization import build_tokenizer
from nucel.folders import write_json_atomically
from nucel.training.finetune import FinetuneSettings, finetune, train_with_selection
from nucel.training.predict import load_finetuned, predict_logits

from nucel.benchmarks.loaders import Split, TaskData, load_task
from nucel.benchmarks.metrics import compute_metrics, softmax
from nucel.benchmarks.registry import Suite, Task, load_suite

CNN_MODEL = "cnn"
CNN_NAME = "cnn-baseline"
SUBSAMPLE_SEED = 0  # row caps take the first N rows of one fixed permutation, the same for every seed and model
OVERRIDABLE = ("learning_rate", "batch_size", "epochs", "max_steps", "eval_steps", "warmup_steps", "early_stopping_patience")


def model_label(model: str) -> str:
    return CNN_NAME if model == CNN_MODEL else model


def model_slug(model: str) -> str:
    if model == CNN_MODEL:
        return CNN_NAME
    return Path(model).name if Path(model).exists() else model.replace(":", "-").replace("/", "-")


def capped(split: Split, limit: int | None) -> Split:
    if limit is None or len(split) <= limit:
        return split
    rows = sorted(np.random.default_rng(SUBSAMPLE_SEED).permutation(len(split))[:limit])
    return split.subset(rows, f"{split.source} ({limit} of {len(split)} rows, seed {SUBSAMPLE_SEED})")


def task_settings(task: Task, seed: int, overrides: dict) -> FinetuneSettings:
    hyperparameters = {**task.hyperparameters, **{k: v for k, v in overrides.items() if v is not None}}
    return FinetuneSettings(
        label_names=list(task.label_names),
        max_length_bp=task.max_length_bp,
        seed=seed,
        **{key: hyperparameters[key] for key in (*OVERRIDABLE, "weight_decay") if key in hyperparameters},
    )


def train_and_test(model: str, train: Split, validation: Split, test: Split, settings: FinetuneSettings) -> dict:
    """One fine-tuning run; returns the summary, test logits and test metrics."""
    with tempfile.TemporaryDirectory(prefix="nucel-benchmark-model-") as folder:
        if model == CNN_MODEL:
            torch.manual_seed(settings.seed)
            tokenizer = build_tokenizer()
            network = OneHotCNN(OneHotCNNConfig(num_labels=len(settings.label_names), problem_type=settings.problem_type))
            network, summary = train_with_selection(network, tokenizer, train, validation, settings)
            logits = predict_logits(network, tokenizer, test.sequences, settings.batch_size, settings.max_length_bp)
        else:
            result = finetune(model, train, validation, Path(folder) / "model", settings, test)
            logits = result.test_logits
            summary = {key: getattr(result, key) for key in
                       ("best_validation_loss", "best_step", "steps_trained", "train_seconds", "validation_history", "train_history")}
    return {**summary, "test_logits": logits, "metrics": compute_metrics(settings.problem_type, test.labels, logits)}


def write_predictions(path: Path, test: Split, logits: np.ndarray, label_names: list[str]) -> None:
    probabilities = softmax(logits)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    with open(staging, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "label", "prediction", *(f"probability_{name}" for name in label_names)])
        for row, (label, scores) in enumerate(zip(test.labels, probabilities)):
            writer.writerow([row, label, int(scores.argmax()), *(repr(float(p)) for p in scores)])  # exact: metrics recompute
    staging.replace(path)


def split_record(task_data: TaskData, used: dict[str, Split]) -> dict:
    return {
        "split_sizes": {name: len(split) for name, split in used.items()},
        "split_sizes_full": {name: len(split) for name, split in task_data.splits.items()},
        "data_sha256": {name: split.sha256 for name, split in task_data.splits.items()},
        "data_sources": {name: split.source for name, split in used.items()},
        "notes": task_data.notes,
    }


def run_task_seed(model: str, task: Task, seed: int, used: dict[str, Split], task_data: TaskData, overrides: dict, run_dir: Path) -> dict:
    """One (task, seed) run for `model`, reused from its JSON when the settings and the data are unchanged."""
    settings = task_settings(task, seed, overrides)
    settings_record = {**vars(settings), "max_train_samples": overrides.get("max_train_samples"),
                       "max_validation_samples": overrides.get("max_validation_samples")}
    data_record = split_record(task_data, used)
    run_path = run_dir / "runs" / task.name.replace("/", "_") / f"seed{seed}.json"
    if run_path.is_file():
        previous = json.loads(run_path.read_text())
        if previous.get("settings") == settings_record and previous.get("data_sha256") == data_record["data_sha256"]:
            print(f"[{model_label(model)}] {task.name} seed {seed}: reusing {run_path}")
            return previous
    started = time.perf_counter()
    outcome = train_and_test(model, used["train"], used["validation"], used["test"], settings)
    wall_seconds = time.perf_counter() - started
    predictions_path = run_path.with_name(f"seed{seed}_test_predictions.csv")
    write_predictions(predictions_path, used["test"], outcome.pop("test_logits"), list(task.label_names))
    record = {
        "suite": task.suite, "task": task.name, "model": model_label(model), "seed": seed,
        "metric": task.metric, "value": outcome["metrics"][task.metric], **outcome,
        "wall_seconds": wall_seconds, "settings": settings_record, "predictions": predictions_path.name,
        **data_record,
    }
    write_json_atomically(run_path, record)
    print(f"[{model_label(model)}] {task.name} seed {seed}: {task.metric} {record['value']:.4f} "
          f"({outcome['steps_trained']} steps, {wall_seconds:.0f} s)")
    return record


def summarise_task(task: Task, runs: list[dict]) -> dict:
    values = [run["value"] for run in runs]
    metric_names = runs[0]["metrics"].keys()
    return {
        "task": task.name, "group": task.group, "metric": task.metric,
        "mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values, "seeds": [run["seed"] for run in runs], "num_labels": task.num_labels,
        "split_sizes": runs[0]["split_sizes"], "split_sizes_full": runs[0]["split_sizes_full"],
        "data_sha256": runs[0]["data_sha256"], "notes": runs[0]["notes"],
        "metrics": {name: mean_or_none([run["metrics"][name] for run in runs]) for name in metric_names},
        "wall_seconds": sum(run["wall_seconds"] for run in runs),
    }


def mean_or_none(values: list) -> float | None:
    return None if any(value is None for value in values) else statistics.fmean(values)


def averages(suite: Suite, tasks: list[dict]) -> dict:
    """Mean of task means per group and over all tasks run."""
    groups = {}
    for task in tasks:
        groups.setdefault(task["group"], []).append(task["mean"])
    result = {group: statistics.fmean(means) for group, means in groups.items()}
    if tasks:
        result["suite"] = statistics.fmean(task["mean"] for task in tasks)
    return result


def caps_description(overrides: dict, threads: int | None) -> str:
    parts = [f"{key}={value}" for key, value in overrides.items() if value is not None]
    if threads:
        parts.append(f"torch_threads={threads}")
    return ", ".join(parts) if parts else "none (the registry's hyper-parameters)"


def write_results(suite: Suite, model: str, tasks: list[dict], skipped: dict, overrides: dict, threads, run_dir: Path) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    results = {
        "suite": suite.name, "model": model_label(model), "tasks": tasks, "averages": averages(suite, tasks),
        "paper": suite.paper, "caps": caps_description(overrides, threads), "overrides": overrides,
        "skipped_tasks": skipped, "wall_seconds": sum(task["wall_seconds"] for task in tasks),
        "group_tasks": {task["group"]: [t["task"] for t in tasks if t["group"] == task["group"]] for task in tasks},
    }
    write_json_atomically(run_dir / "results.json", results)
    write_text_atomically(run_dir / "results.md", markdown_table(suite, [results]))
    return results


def write_text_atomically(path: Path, text: str) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text)
    staging.replace(path)


def format_score(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown_table(suite: Suite, all_results: list[dict]) -> str:
    """Per-task mean ± sd for each model, then group and suite averages beside the paper's NucEL numbers."""
    paper = suite.paper or {}
    paper_groups = paper.get("groups", {})
    paper_name = paper.get("model", "paper")
    first = all_results[0]
    models = [results["model"] for results in all_results]
    lines = [
        f"# {suite.title}: {', '.join(models)}",
        "",
        f"Metric per task as in benchmarks/tasks/{suite.name}.yaml (over the whole test split), mean ± sd over "
        f"seeds {first['tasks'][0]['seeds'] if first['tasks'] else '–'}; model selection by lowest validation loss.",
        f"Validation split: {suite.validation}; caps and overrides: {first['caps']}.",
        "Wall time: " + "; ".join(f"{r['model']} {r['wall_seconds'] / 60:.1f} min" for r in all_results) + ".",
        f"Paper column: {paper_name} ({paper.get('source', '')}), group averages only; rows here are small-scale runs.",
        "",
        "| task | group | metric | rows train / validation / test (full) | " + " | ".join(models) + f" | {paper_name} (group) |",
        "|---|---|---|---|" + "---|" * len(models) + "---|",
    ]
    by_model = [{task["task"]: task for task in results["tasks"]} for results in all_results]
    task_names = [task.name for task in suite.tasks if any(task.name in tasks for tasks in by_model)]
    for name in task_names:
        reference = next(tasks[name] for tasks in by_model if name in tasks)
        used, full = reference["split_sizes"], reference["split_sizes_full"]
        sizes = " / ".join(f"{used.get(s, 0)} ({full.get(s, 0)})" for s in ("train", "validation", "test"))
        cells = [f"{tasks[name]['mean']:.3f} ± {tasks[name]['sd']:.3f}" if name in tasks else "–" for tasks in by_model]
        lines.append(f"| {name} | {reference['group']} | {reference['metric']} | {sizes} | " + " | ".join(cells)
                     + f" | {format_score(paper_groups.get(reference['group']))} |")
    groups = list(dict.fromkeys(suite.task(name).group for name in task_names))
    in_suite = {group: sum(task.group == group for task in suite.tasks) for group in groups}
    for group in groups:
        run_count = sum(suite.task(name).group == group for name in task_names)
        cells = [format_score(results["averages"].get(group)) for results in all_results]
        lines.append(f"| **{group} average** ({run_count} of {in_suite[group]} tasks) | | | | " + " | ".join(cells)
                     + f" | {format_score(paper_groups.get(group))} |")
    cells = [format_score(results["averages"].get("suite")) for results in all_results]
    lines.append(f"| **suite average** ({len(task_names)} of {len(suite.tasks)} tasks) | | | | " + " | ".join(cells)
                 + f" | {format_score(paper.get('suite_average'))} |")
    skipped = {name: reason for results in all_results for name, reason in results["skipped_tasks"].items()}
    if skipped:
        lines += ["", "Not run:"] + [f"- {name}: {reason}" for name, reason in skipped.items()]
    checksums = [f"- {name}: " + ", ".join(f"{s} {h[:16]}…" for s, h in reference["data_sha256"].items())
                 for name in task_names for reference in [next(t[name] for t in by_model if name in t)]]
    lines += ["", "Data sha256 (first 16 hex digits; full values in results.json):"] + checksums
    return "\n".join(lines) + "\n"


def run_benchmark(suite_name: str, data: str, models: list[str], task_names: list[str] | None, seeds: list[int] | None,
                  overrides: dict, output: Path, run_name: str, threads: int | None = None) -> list[dict]:
    """Fine-tune and score every (task, seed, model); returns one results dict per model."""
    suite = load_suite(suite_name)
    tasks = [suite.task(name) for name in task_names] if task_names else list(suite.tasks)
    run_dirs = {model: output / f"{run_name}-{model_slug(model)}" for model in models}
    summaries = {model: [] for model in models}
    skipped: dict[str, str] = {}
    for task in tasks:
        try:
            task_data = load_task(suite, task, data)
        except FileNotFoundError as error:
            skipped[task.name] = f"data not found ({error})"
            print(f"{task.name}: skipped, {skipped[task.name]}")
            continue
        if not task_data.trainable:
            skipped[task.name] = "evaluation only: " + "; ".join(task_data.notes)
            print(f"{task.name}: skipped, {skipped[task.name]}")
            continue
        used = {
            "train": capped(task_data.splits["train"], overrides.get("max_train_samples")),
            "validation": capped(task_data.splits["validation"], overrides.get("max_validation_samples")),
            "test": task_data.splits["test"],  # always whole: metrics are over the complete test split
        }
        runs = {model: [] for model in models}
        for seed in seeds or task.seeds:
            for model in models:
                runs[model].append(run_task_seed(model, task, seed, used, task_data, overrides, run_dirs[model]))
        for model in models:
            summaries[model].append(summarise_task(task, runs[model]))
            write_results(suite, model, summaries[model], skipped, overrides, threads, run_dirs[model])  # progress
    all_results = [write_results(suite, model, summaries[model], skipped, overrides, threads, run_dirs[model]) for model in models]
    if len(models) > 1:
        write_text_atomically(output / f"{run_name}.md", markdown_table(suite, all_results))
    return all_results


def evaluate_finetuned(suite_name: str, data: str, model_dir: str, task_names: list[str]) -> dict:
    """Test metrics of an already fine-tuned folder on the named tasks (train splits not needed)."""
    suite = load_suite(suite_name)
    model, tokenizer, metadata = load_finetuned(model_dir)
    scores = {}
    for name in task_names:
        task = suite.task(name)
        test = load_task(suite, task, data).split("test")
        logits = predict_logits(model, tokenizer, test.sequences, max_length_bp=task.max_length_bp)
        scores[name] = {"test_rows": len(test), "data_sha256": test.sha256, **compute_metrics(metadata["problem_type"], test.labels, logits)}
    return scores


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", required=True, choices=("gue", "genomic_benchmarks", "nucleotide_transformer"))
    parser.add_argument("--data", required=True, help="the suite's data root folder (NT: also a file or the Hub dataset id)")
    parser.add_argument("--model", action="append", help="checkpoint folder, Hub id, random:<preset>, or cnn; repeatable")
    parser.add_argument("--evaluate", metavar="FOLDER", help="score this fine-tuned folder on --task test splits, no training")
    parser.add_argument("--task", action="append", help="task name (repeatable); default: the whole suite")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the registry's seeds")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--run-name", help="default: the suite name")
    parser.add_argument("--max-train-samples", type=int, help="cap: train on a fixed subsample of this many rows")
    parser.add_argument("--max-validation-samples", type=int, help="cap: select on a fixed subsample of validation")
    for key in OVERRIDABLE:
        parser.add_argument(f"--{key.replace('_', '-')}", type=float if key in ("learning_rate", "epochs") else int,
                            help="override the registry's value")
    parser.add_argument("--torch-threads", type=int, help="torch.set_num_threads (1 is fastest on a busy shared CPU)")
    args = parser.parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if args.evaluate:
        if not args.task:
            parser.error("--evaluate needs --task")
        print(json.dumps(evaluate_finetuned(args.suite, args.data, args.evaluate, args.task), indent=2))
        return
    if not args.model:
        parser.error("give --model (or --evaluate)")
    overrides = {key: getattr(args, key) for key in ("max_train_samples", "max_validation_samples", *OVERRIDABLE)}
    started = time.perf_counter()
    run_benchmark(args.suite, args.data, args.model, args.task, args.seeds, overrides, args.output,
                  args.run_name or args.suite, args.torch_threads)
    print(f"done in {(time.perf_counter() - started) / 60:.1f} min; results under {args.output}")


if __name__ == "__main__":
    main()
