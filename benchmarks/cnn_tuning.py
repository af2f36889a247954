"""Choose the one-hot CNN baseline's hyper-parameters once, on GUE validation data (dev.csv), never on test.

    python -m nucel.benchmarks.cnn_tuning --data ../shared/data/GUE --output benchmarks/results/cnn-tuning.md

A small grid, learning rate x epoch budget, on four GUE tasks (tf/0, tf/1, prom/prom_core_all,
prom/prom_300_tata), one seed, one CPU thread, the runner's own training loop (training/finetune.py's
`train_with_selection`: AdamW, batch 64, a constant learning rate, an evaluation at the end of every epoch, early
stopping after `--patience` epochs without a lower validation loss, the checkpoint with the lowest validation loss
kept). The score of a grid point is the validation MCC of the checkpoint it selects, averaged over the tasks.

Each (task, learning rate) is trained once, for the largest budget: with a constant learning rate, the same seed
and the same data order, a run with a smaller budget is exactly the first epochs of that run (early stopping counts
the same evaluations), so the checkpoint it selects is the lowest-validation-loss evaluation within its budget. The
report checks this on one task by training the smallest budget on its own and comparing the validation losses.
"""

import argparse
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nucel.benchmarks.cnn_baseline import OneHotCNN, OneHotCNNConfig
from nucel.benchmarks.loaders import load_gue_task
from nucel.benchmarks.registry import load_suite
from nucel.core.metrics import compute_metrics
from nucel.tokenization import build_tokenizer
from nucel.training.finetune import train_with_selection
from nucel.training.finetune_config import FinetuneSettings

TASKS = ("tf/0", "tf/1", "prom/prom_core_all", "prom/prom_300_tata")
LEARNING_RATES = (1e-3, 3e-3)
EPOCH_BUDGETS = (2, 6)
BATCH_SIZE = 64
PATIENCE = 3  # epochs without a lower validation loss before stopping
SEED = 42  # GUE's first registry seed
PREFIX_CHECK_TASK = "prom/prom_300_tata"  # the cheapest task (4,904 training rows)


class RecordingCNN(OneHotCNN):
    """The CNN, keeping the logits and labels of every evaluation-mode forward: the Trainer's validation passes
    (evaluation happens only at epoch ends here), from which each epoch's validation MCC is computed."""

    def __init__(self, config: OneHotCNNConfig):
        super().__init__(config)
        self.evaluated_logits, self.evaluated_labels = [], []

    def forward(self, input_ids, attention_mask=None, labels=None, **kwargs):
        output = super().forward(input_ids, attention_mask, labels, **kwargs)
        if not self.training and labels is not None:
            self.evaluated_logits.append(output.logits.detach().numpy())
            self.evaluated_labels.append(labels.numpy())
        return output


@dataclass
class Curve:
    """One (task, learning rate) run: validation loss and MCC at the end of every epoch."""

    task: str
    learning_rate: float
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    mccs: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def selected(self, epochs: int) -> tuple[int, float]:
        """(epoch, validation MCC) of the checkpoint a run of `epochs` epochs selects: the lowest validation loss
        among its evaluations (the Trainer keeps the first of equal losses)."""
        losses = self.losses[:epochs]
        best = losses.index(min(losses))
        return best + 1, self.mccs[best]


def settings_for(task, learning_rate: float, epochs: int) -> FinetuneSettings:
    return FinetuneSettings(
        label_names=list(task.label_names),
        max_length_bp=task.max_length_bp,
        seed=SEED,
        learning_rate=learning_rate,
        batch_size=BATCH_SIZE,
        epochs=epochs,
        lr_scheduler="constant",
        warmup_steps=0,
        weight_decay=0.01,
        eval_steps=None,
        early_stopping_patience=PATIENCE,
    )


def train_curve(task, splits: dict, learning_rate: float, epochs: int) -> Curve:
    """Train the CNN for up to `epochs` epochs; the validation loss and MCC after each epoch."""
    torch.manual_seed(SEED)
    validation = splits["validation"]
    model = RecordingCNN(OneHotCNNConfig(num_labels=task.num_labels))
    started = time.perf_counter()
    _, summary = train_with_selection(
        model, build_tokenizer(), splits["train"], validation, settings_for(task, learning_rate, epochs)
    )
    logits, labels = np.concatenate(model.evaluated_logits), np.concatenate(model.evaluated_labels)
    history = summary["validation_history"]
    if len(labels) != len(history) * len(validation):
        raise RuntimeError(
            f"{task.name}: {len(labels)} evaluated rows for {len(history)} evaluations of {len(validation)}"
        )
    curve = Curve(task.name, learning_rate, seconds=time.perf_counter() - started)
    for index, entry in enumerate(history):
        rows = slice(index * len(validation), (index + 1) * len(validation))
        if not np.array_equal(labels[rows], np.asarray(validation.labels)):
            raise RuntimeError(f"{task.name}: evaluation {index} did not see the validation rows in order")
        curve.steps.append(entry["step"])
        curve.losses.append(entry["loss"])
        curve.mccs.append(compute_metrics("single_label_classification", labels[rows], logits[rows])["mcc"])
    return curve


def report(curves: list[Curve], prefix_check: tuple[Curve, Curve], command: str, wall_seconds: float) -> str:
    """The grid, each task's curve, the prefix check and the choice, as markdown."""
    grid = [(rate, budget) for rate in LEARNING_RATES for budget in EPOCH_BUDGETS]
    scores = {}
    lines = [
        "# One-hot CNN baseline: hyper-parameters chosen on validation data",
        "",
        f"Command: `{command}` ({wall_seconds / 60:.1f} min wall time, torch on one thread).",
        "",
        "The CNN (benchmarks/cnn_baseline.py) is tuned once, on GUE's dev.csv (never test.csv), with the runner's own "
        f"training loop: AdamW, batch {BATCH_SIZE}, constant learning rate, weight decay 0.01, an evaluation at the "
        f"end of every epoch, early stopping after {PATIENCE} epochs without a lower validation loss, the "
        f"lowest-validation-loss checkpoint kept; seed {SEED}. Cell: validation MCC of the checkpoint that budget "
        "selects (its epoch in brackets). A smaller budget is the first epochs of the largest one (constant learning "
        "rate, same seed and data order), checked below.",
        "",
        "| learning rate | epochs | " + " | ".join(TASKS) + " | mean |",
        "|---|---|" + "---|" * len(TASKS) + "---|",
    ]
    for rate, budget in grid:
        picked = [
            next(c for c in curves if c.task == name and c.learning_rate == rate).selected(budget) for name in TASKS
        ]
        scores[rate, budget] = statistics.fmean(mcc for _, mcc in picked)
        cells = [f"{mcc:.3f} ({epoch})" for epoch, mcc in picked]
        lines.append(f"| {rate:g} | {budget} | " + " | ".join(cells) + f" | {scores[rate, budget]:.3f} |")
    best_rate, best_budget = max(grid, key=lambda point: scores[point])
    lines += [
        "",
        f"Chosen: learning rate {best_rate:g}, {best_budget} epochs (highest mean validation MCC), with batch "
        f"{BATCH_SIZE}, constant learning rate, early stopping patience {PATIENCE} epochs: `cnn_hyperparameters` in "
        "benchmarks/tasks/*.yaml (the same values for Genomic Benchmarks and NT, which were not tuned on).",
    ]
    # A task whose best checkpoint is the budget's last epoch was still improving: the budget, not the CNN, limited it.
    limited = [
        c.task
        for c in curves
        if c.learning_rate == best_rate and c.selected(best_budget)[0] == best_budget == len(c.losses)
    ]
    if limited:
        lines += [
            "",
            f"Still improving at the chosen budget's last epoch: {', '.join(limited)}. The grid's largest budget "
            "binds there; a longer budget (early stopping ends the large tasks by itself) may help small data sets.",
        ]
    lines += [
        "",
        "Validation loss / MCC after each epoch:",
        "",
        "| task | learning rate | epoch: loss / MCC | seconds |",
        "|---|---|---|---|",
    ]
    for curve in curves:
        points = ", ".join(
            f"{i + 1}: {loss:.4f} / {mcc:.3f}" for i, (loss, mcc) in enumerate(zip(curve.losses, curve.mccs))
        )
        lines.append(f"| {curve.task} | {curve.learning_rate:g} | {points} | {curve.seconds:.0f} |")
    short, long = prefix_check
    agree = np.allclose(short.losses, long.losses[: len(short.losses)], rtol=0, atol=1e-6)
    lines += [
        "",
        f"Prefix check ({short.task}, learning rate {short.learning_rate:g}): a separate {len(short.losses)}-epoch "
        f"run's validation losses {[round(x, 6) for x in short.losses]} vs the first epochs of the "
        f"{max(EPOCH_BUDGETS)}-epoch run {[round(x, 6) for x in long.losses[: len(short.losses)]]}: "
        f"{'equal' if agree else 'DIFFERENT'} (to 1e-6).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the GUE data root (../shared/data/GUE)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/cnn-tuning.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    suite = load_suite("gue")
    curves = []
    for name in TASKS:
        task = suite.task(name)
        splits = load_gue_task(args.data, task).splits
        for rate in LEARNING_RATES:
            curves.append(train_curve(task, splits, rate, max(EPOCH_BUDGETS)))
            print(
                f"{name} lr {rate:g}: losses {[round(x, 4) for x in curves[-1].losses]}, "
                f"MCC {[round(x, 3) for x in curves[-1].mccs]}"
            )
    task = suite.task(PREFIX_CHECK_TASK)
    short = train_curve(task, load_gue_task(args.data, task).splits, LEARNING_RATES[0], min(EPOCH_BUDGETS))
    long = next(c for c in curves if c.task == PREFIX_CHECK_TASK and c.learning_rate == LEARNING_RATES[0])
    command = f"python -m nucel.benchmarks.cnn_tuning --data {args.data} --output {args.output}"
    text = report(curves, (short, long), command, time.perf_counter() - started)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
