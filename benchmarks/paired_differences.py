"""Paired differences between two arms of a study, with 95 % intervals from a hierarchical bootstrap.

An arm's score on a task comes from runs: one per (pre-training seed, fine-tuning seed), each scored on the same
test rows. The difference of arms A and B is the mean over their runs of A's metric minus the mean of B's. Its
uncertainty has three sources, all resampled: which pre-training seeds were drawn (an objective is not one
checkpoint), which fine-tuning seeds, and which test rows. Each bootstrap replicate draws pre-training seed indices
with replacement, then fine-tuning seeds within each, then one resample of the test rows shared by every run, and
recomputes the metric on the resampled rows. Every draw is shared by both arms: seed i of A is paired with seed i of
B (trained from the same data order), fine-tuning seed j with fine-tuning seed j, and the rows are the same examples.
The interval is the 2.5th to 97.5th percentile of the replicates. A difference whose interval contains 0 is no
difference.

Averaged over tasks, each replicate averages its per-task differences, so the interval covers the task mean.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

REPLICATES = 2000
SEED = 0


@dataclass(frozen=True)
class ArmRuns:
    """One arm on one task: per pre-training seed, per fine-tuning seed, the predictions on the test rows."""

    predictions: list[list[np.ndarray]]  # [pretraining seed][finetuning seed] -> (rows,) predicted labels
    labels: np.ndarray  # (rows,) the test labels, the same for every run


def arm_score(runs: ArmRuns, metric: Callable, rows: np.ndarray | None = None, seeds=None) -> float:
    """The arm's metric averaged over runs, on the test rows `rows` (default: all) and the (pre-training index,
    fine-tuning indices) pairs in `seeds` (default: all)."""
    rows = np.arange(len(runs.labels)) if rows is None else rows
    seeds = seeds or [(p, list(range(len(runs.predictions[p])))) for p in range(len(runs.predictions))]
    scores = [metric(runs.labels[rows], runs.predictions[p][f][rows]) for p, finetuning in seeds for f in finetuning]
    return float(np.mean(scores))


def resampled_seeds(runs: ArmRuns, rng: np.random.Generator) -> list[tuple[int, list[int]]]:
    """One draw of pre-training seeds, and of fine-tuning seeds within each (indices, with replacement)."""
    count = len(runs.predictions)
    return [
        (p, list(rng.integers(0, len(runs.predictions[p]), len(runs.predictions[p]))))
        for p in rng.integers(0, count, count)
    ]


def paired_difference(
    a: dict[str, ArmRuns], b: dict[str, ArmRuns], metric: Callable, replicates: int = REPLICATES, seed: int = SEED
) -> dict[str, dict]:
    """Per task and for the mean over tasks: {"difference": A - B, "ci95": [low, high], "replicates": n}. Both arms
    need the same tasks, the same test rows per task and the same number of pre-training seeds."""
    tasks = sorted(a)
    if sorted(b) != tasks:
        raise ValueError(f"the arms were run on different tasks: {tasks} and {sorted(b)}")
    for task in tasks:
        if not np.array_equal(a[task].labels, b[task].labels):
            raise ValueError(f"{task}: the arms were scored on different test rows")
        shape_a = [len(finetuning) for finetuning in a[task].predictions]
        shape_b = [len(finetuning) for finetuning in b[task].predictions]
        if shape_a != shape_b:
            raise ValueError(
                f"{task}: the arms have {shape_a} and {shape_b} fine-tuning runs per pre-training seed; "
                "paired seeds need as many pre-training seeds and runs in both arms"
            )
    observed = {task: arm_score(a[task], metric) - arm_score(b[task], metric) for task in tasks}
    rng = np.random.default_rng(seed)
    samples = {task: np.empty(replicates) for task in tasks}
    for replicate in range(replicates):
        for task in tasks:
            seeds = resampled_seeds(a[task], rng)
            rows = rng.integers(0, len(a[task].labels), len(a[task].labels))
            samples[task][replicate] = arm_score(a[task], metric, rows, seeds) - arm_score(b[task], metric, rows, seeds)
    result = {task: summary(observed[task], samples[task]) for task in tasks}
    result["mean"] = summary(float(np.mean(list(observed.values()))), np.mean([samples[t] for t in tasks], axis=0))
    return result


def matthews(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Matthews correlation coefficient of integer class labels (any number of classes), as scikit-learn's
    matthews_corrcoef computes it, from one confusion matrix: fast enough for thousands of bootstrap replicates."""
    classes = int(max(labels.max(), predictions.max())) + 1
    confusion = np.bincount(labels * classes + predictions, minlength=classes * classes).reshape(classes, classes)
    true, predicted = confusion.sum(axis=1).astype(float), confusion.sum(axis=0).astype(float)
    correct, total = float(np.trace(confusion)), float(confusion.sum())
    numerator = correct * total - true @ predicted
    denominator = np.sqrt((total**2 - predicted @ predicted) * (total**2 - true @ true))
    return float(numerator / denominator) if denominator else 0.0


def summary(difference: float, samples: np.ndarray) -> dict:
    low, high = np.percentile(samples, [2.5, 97.5])
    return {"difference": difference, "ci95": [float(low), float(high)], "replicates": len(samples)}


def verdict(a: str, b: str, entry: dict) -> str:
    """A sentence a report can print: which arm is better, or that the interval says no difference."""
    low, high = entry["ci95"]
    interval = f"{entry['difference']:+.3f} [95 % interval {low:+.3f}, {high:+.3f}]"
    if low > 0:
        return f"{a} better than {b}: {interval}"
    if high < 0:
        return f"{b} better than {a}: {interval}"
    return f"no difference between {a} and {b}: {interval} contains 0"
