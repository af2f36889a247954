"""Run a benchmark suite (or some of its tasks) for one or more models, every seed or fold, and tabulate the results.

    nucel benchmark --suite gue --data ../shared/data/GUE --model ./nucel-93m
    nucel benchmark --suite gue --data ../shared/data/GUE --task tf/0 --model random:tiny --model cnn
    nucel benchmark --suite nucleotide_transformer \
        --data InstaDeepAI/nucleotide_transformer_downstream_tasks_revised --model ./nucel-93m

(the command's options: benchmarks/benchmark_cli.py)

Each run follows the suite's published protocol (benchmarks/tasks/<suite>.yaml, `protocol:`):
- GUE: train.csv, the checkpoint with the lowest loss on dev.csv, scored on test.csv; 3 seeds, mean ± sd.
- Genomic Benchmarks (Caduceus's protocol): validation carved from train (10 %, fixed seed); 5 seeds, mean ± sd.
- Nucleotide Transformer (Dalla-Torre et al. 2025): ten-fold cross-validation of the training set; run k selects
  its checkpoint on fold k after training on the other nine, and is scored on the test split; mean MCC ± 2 sd.
Every run fine-tunes with the registry's hyper-parameters unless overridden on the command line (an override
applies to every model). Language models use the registry's `hyperparameters` (the paper's head: one linear layer
on the pooled [CLS] vector); `--model cnn`, the one-hot CNN baseline, uses its own `cnn_hyperparameters`, tuned
once on GUE validation data (benchmarks/results/cnn-tuning.md), never a transformer's learning rate. The
effective batch is the registry's `batch_size`: the runner is one process, without gradient accumulation, and
the Trainer does not spread a batch over several GPUs (DataParallel).

Suite averages are computed as each paper does (`average:` in the registry): GUE, the mean of its 7 group
averages; Genomic Benchmarks, the mean over its 7 human tasks; NT, the mean over its 18 tasks. A run that lacks
some of those tasks says so beside its average ("partial"), so it is never mistaken for the paper's number.

Output, per model, in `<output>/<run name>-<model>/`: runs/<task>/seed<N>.json or fold<k>.json (+ test
predictions), results.json and results.md (per task mean and error bar, group and suite averages beside the
paper's NucEL numbers, split sizes, checksums). With several models, `<output>/<run name>.md` compares them side
by side. A finished run is reused only when the model is the same — the same weights, config and tokenizer
(sha256; core/identity.py), whatever its folder is called — and its settings and data are unchanged,
so an interrupted command can simply be started again. A checkpoint's output folder name carries the first 8 hex
digits of that checksum, so two different `export/discriminator` folders never share a results folder.

`--model random:<preset>` is a randomly initialised NucEL. Tasks without a train split are listed as
evaluation-only; `--evaluate FOLDER` scores an already fine-tuned model on test splits without training.
`--suite vep` is the zero-shot variant-effect benchmark on BRCA1 (benchmarks/vep.py), with options of its own.
"""

import csv
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from nucel.benchmarks.cnn_baseline import (
    CNN_MODEL,
    CNN_NAME,
    OneHotCNN,
    OneHotCNNConfig,
    cnn_identity,
)
from nucel.benchmarks.loaders import TaskData, fold_split, load_task, split_overlaps
from nucel.benchmarks.registry import HYPERPARAMETER_KEYS, Suite, Task, load_suite
from nucel.benchmarks.suite_results import (
    markdown_table,
    model_label,
    summarise_task,
    write_results,
)
from nucel.core.classifiers import load_finetuned, predict_logits
from nucel.core.files import write_json_atomically, write_text_atomically
from nucel.core.identity import RANDOM_INIT_PREFIX
from nucel.core.identity import model_identity as checkpoint_identity
from nucel.core.metrics import compute_metrics, softmax
from nucel.core.tables import Split
from nucel.tokenization import build_tokenizer
from nucel.training.finetune import finetune, train_with_selection
from nucel.training.finetune_config import FinetuneSettings

SUBSAMPLE_SEED = 0  # row caps take the first N rows of one fixed permutation, the same for every seed and model


def model_identity(model: str) -> dict:
    """The checksum identity of `model` (core/identity.py; the CNN baseline: benchmarks/cnn_baseline.py)."""
    return cnn_identity() if model == CNN_MODEL else checkpoint_identity(model)


def model_slug(model: str, identity: dict | None = None) -> str:
    """The model's part of its output folder name; checkpoints add their checksum, since folder names repeat."""
    if model == CNN_MODEL:
        return CNN_NAME
    if model.startswith(RANDOM_INIT_PREFIX):
        return model.replace(":", "-")
    name = Path(model).name if Path(model).exists() else model.replace("/", "-")
    return f"{name}-{identity['sha256'][:8]}" if identity else name


def capped(split: Split, limit: int | None) -> Split:
    if limit is None or len(split) <= limit:
        return split
    rows = sorted(np.random.default_rng(SUBSAMPLE_SEED).permutation(len(split))[:limit])
    return split.subset(rows, f"{split.source} ({limit} of {len(split)} rows, seed {SUBSAMPLE_SEED})")


def task_settings(task: Task, seed: int, overrides: dict, model: str | None = None) -> FinetuneSettings:
    """The registry's settings for `task` (the CNN baseline's own for `model` "cnn"), command-line overrides on top."""
    registry = task.cnn_hyperparameters if model == CNN_MODEL else task.hyperparameters
    hyperparameters = {**registry, **{k: v for k, v in overrides.items() if v is not None and k in HYPERPARAMETER_KEYS}}
    return FinetuneSettings(
        label_names=list(task.label_names),
        max_length_bp=task.max_length_bp,
        seed=seed,
        **hyperparameters,
    )


def effective_batch_size(settings: FinetuneSettings) -> int:
    """Rows per optimiser step. The runner is one process without gradient accumulation, and training/finetune.py
    keeps the Trainer off DataParallel, so it is the registry's batch_size itself."""
    return settings.batch_size


def require_one_process() -> None:
    """Every launched process would run every task and write the same files: the runner is one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        raise ValueError(
            f"the benchmark runner is one process (WORLD_SIZE is {world_size}): start it with python, "
            "not torchrun or accelerate launch"
        )


def train_and_test(
    model: str, train: Split, validation: Split, test: Split, settings: FinetuneSettings, device: str | None = None
) -> dict:
    """One fine-tuning run; returns the summary, test logits and test metrics."""
    with tempfile.TemporaryDirectory(prefix="nucel-benchmark-model-") as folder:
        if model == CNN_MODEL:
            torch.manual_seed(settings.seed)
            tokenizer = build_tokenizer()
            network = OneHotCNN(
                OneHotCNNConfig(num_labels=len(settings.label_names), problem_type=settings.problem_type)
            )
            network, summary = train_with_selection(network, tokenizer, train, validation, settings, device)
            logits = predict_logits(network, tokenizer, test.sequences, settings.batch_size, settings.max_length_bp)
        else:
            result = finetune(model, train, validation, Path(folder) / "model", settings, test, device)
            logits = result.test_logits
            summary = {
                key: getattr(result, key)
                for key in (
                    "best_validation_loss",
                    "best_step",
                    "steps_trained",
                    "train_seconds",
                    "validation_history",
                    "train_history",
                )
            }
    return {**summary, "test_logits": logits, "metrics": compute_metrics(settings.problem_type, test.labels, logits)}


def write_predictions(path: Path, test: Split, logits: np.ndarray, label_names: list[str]) -> None:
    probabilities = softmax(logits)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    with open(staging, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "label", "prediction", *(f"probability_{name}" for name in label_names)])
        for row, (label, scores) in enumerate(zip(test.labels, probabilities)):
            writer.writerow(
                [row, label, int(scores.argmax()), *(repr(float(p)) for p in scores)]
            )  # exact: metrics recompute
    staging.replace(path)


def split_record(task_data: TaskData, used: dict[str, Split]) -> dict:
    return {
        "split_sizes": {name: len(split) for name, split in used.items()},
        "split_sizes_full": {name: len(split) for name, split in task_data.splits.items()},
        "data_sha256": {name: split.sha256 for name, split in task_data.splits.items()},
        "data_sources": {name: split.source for name, split in used.items()},
        # Counted on the full splits as read: the registry's overlapping_splits say what the published copy holds.
        "split_overlaps": split_overlaps(task_data.splits),
        "notes": task_data.notes,
    }


# ----------------------------------------------------------------------------------------------------------------
# The runs of a task, as the suite's protocol makes them


@dataclass
class RunPlan:
    name: str  # "seed42" or "fold3": the run's file name
    seed: int  # training seed (the new head's initialisation, data order, dropout)
    used: dict[str, Split]  # the train, validation and test splits of this run
    protocol: dict  # what, besides the seed, makes the run: {} or {"fold": k, "folds": 10, "fold_seed": s}
    notes: list[str]


def missing_splits(suite: Suite, task_data: TaskData) -> list[str]:
    """Splits the protocol needs that the data lacks (cross-validation makes its own validation split)."""
    needed = ("train", "test") if suite.protocol.kind == "cross_validation" else ("train", "validation", "test")
    return [name for name in needed if name not in task_data.splits]


def plan_runs(
    suite: Suite, task: Task, task_data: TaskData, overrides: dict, seeds: list[int] | None, folds: list[int] | None
) -> list[RunPlan]:
    """Seeded runs on fixed splits, or (NT) one run per cross-validation fold of the (capped) training set."""
    test = task_data.splits["test"]  # always whole: metrics are over the complete test split
    train = capped(task_data.splits["train"], overrides.get("max_train_samples"))
    validation_cap = overrides.get("max_validation_samples")
    protocol = suite.protocol
    if protocol.kind != "cross_validation":
        used = {"train": train, "validation": capped(task_data.splits["validation"], validation_cap), "test": test}
        return [RunPlan(f"seed{seed}", seed, used, {}, []) for seed in seeds or task.seeds]
    plans = []
    for fold in range(protocol.folds) if folds is None else folds:
        if not 0 <= fold < protocol.folds:
            raise ValueError(f"fold {fold} does not exist: {suite.name} has folds 0..{protocol.folds - 1}")
        fold_train, fold_validation, note = fold_split(train, fold, protocol.folds, protocol.fold_seed)
        used = {"train": fold_train, "validation": capped(fold_validation, validation_cap), "test": test}
        record = {"fold": fold, "folds": protocol.folds, "fold_seed": protocol.fold_seed}
        plans.append(RunPlan(f"fold{fold}", task.seeds[fold], used, record, [note]))
    return plans


def run_one(
    model: str,
    identity: dict,
    task: Task,
    plan: RunPlan,
    task_data: TaskData,
    overrides: dict,
    run_dir: Path,
    device: str | None = None,
) -> dict:
    """One run of `model`, reused from its JSON when the model (by checksum), settings and data are unchanged."""
    settings = task_settings(task, plan.seed, overrides, model)
    settings_record = {
        **asdict(settings),
        **plan.protocol,
        "effective_batch_size": effective_batch_size(settings),
        "max_train_samples": overrides.get("max_train_samples"),
        "max_validation_samples": overrides.get("max_validation_samples"),
    }
    data_record = split_record(task_data, plan.used)
    data_record["notes"] = task_data.notes + plan.notes
    run_path = run_dir / "runs" / task.name.replace("/", "_") / f"{plan.name}.json"
    if run_path.is_file():
        previous = json.loads(run_path.read_text())
        if (
            previous.get("model_identity", {}).get("sha256") == identity["sha256"]
            and previous.get("settings") == settings_record
            and previous.get("data_sha256") == data_record["data_sha256"]
        ):
            print(f"[{model_label(model)}] {task.name} {plan.name}: reusing {run_path}")
            return previous
    started = time.perf_counter()
    outcome = train_and_test(model, plan.used["train"], plan.used["validation"], plan.used["test"], settings, device)
    wall_seconds = time.perf_counter() - started
    predictions_path = run_path.with_name(f"{plan.name}_test_predictions.csv")
    write_predictions(predictions_path, plan.used["test"], outcome.pop("test_logits"), list(task.label_names))
    record = {
        "suite": task.suite,
        "task": task.name,
        "model": model_label(model),
        "model_identity": identity,
        "run": plan.name,
        "seed": plan.seed,
        **plan.protocol,
        "metric": task.metric,
        "value": outcome["metrics"][task.metric],
        **outcome,
        "wall_seconds": wall_seconds,
        "settings": settings_record,
        "predictions": predictions_path.name,
        **data_record,
    }
    write_json_atomically(run_path, record)
    print(
        f"[{model_label(model)}] {task.name} {plan.name}: {task.metric} {record['value']:.4f} "
        f"({outcome['steps_trained']} steps of batch {settings_record['effective_batch_size']}, {wall_seconds:.0f} s)"
    )
    return record


# ----------------------------------------------------------------------------------------------------------------
# Entry points


def run_benchmark(
    suite_name: str,
    data: str,
    models: list[str],
    task_names: list[str] | None,
    seeds: list[int] | None,
    overrides: dict,
    output: Path,
    run_name: str,
    threads: int | None = None,
    folds: list[int] | None = None,
    device: str | None = None,
) -> list[dict]:
    """Fine-tune and score every (task, seed or fold, model); returns one results dict per model."""
    require_one_process()
    suite = load_suite(suite_name)
    cross_validated = suite.protocol.kind == "cross_validation"
    if cross_validated and seeds:
        raise ValueError(
            f"{suite_name} runs a {suite.protocol.folds}-fold cross-validation: choose runs with folds, not seeds"
        )
    if folds and not cross_validated:
        raise ValueError(f"{suite_name} has no cross-validation folds: choose runs with seeds")
    tasks = [suite.task(name) for name in task_names] if task_names else list(suite.tasks)
    identities = {model: model_identity(model) for model in models}
    run_dirs = {model: output / f"{run_name}-{model_slug(model, identities[model])}" for model in models}
    summaries = {model: [] for model in models}
    skipped: dict[str, str] = {}
    for task in tasks:
        try:
            task_data = load_task(suite, task, data)
        except FileNotFoundError as error:
            skipped[task.name] = f"data not found ({error})"
            print(f"{task.name}: skipped, {skipped[task.name]}")
            continue
        if missing := missing_splits(suite, task_data):
            if "train" in missing:
                skipped[task.name] = "evaluation only: " + "; ".join(task_data.notes)
            else:
                skipped[task.name] = f"no {' or '.join(missing)} split: " + "; ".join(task_data.notes)
            print(f"{task.name}: skipped, {skipped[task.name]}")
            continue
        plans = plan_runs(suite, task, task_data, overrides, seeds, folds)
        runs = {model: [] for model in models}
        for plan in plans:
            for model in models:
                runs[model].append(
                    run_one(model, identities[model], task, plan, task_data, overrides, run_dirs[model], device)
                )
        for model in models:
            summaries[model].append(summarise_task(task, runs[model], suite))
            write_results(
                suite, model, identities[model], summaries[model], skipped, overrides, threads, run_dirs[model]
            )  # progress
    all_results = [
        write_results(suite, model, identities[model], summaries[model], skipped, overrides, threads, run_dirs[model])
        for model in models
    ]
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
        scores[name] = {
            "test_rows": len(test),
            "data_sha256": test.sha256,
            **compute_metrics(metadata["problem_type"], test.labels, logits),
        }
    return scores
