"""What a run shows, read back from its log.jsonl: `curves.png` and the summary printed when training ends."""

import math
from pathlib import Path

PROBE_PREFIX = "probe_mcc/"
# Below this information gain (percent of H(p), on validation) the discriminator has learned next to nothing
# beyond the replaced rate; the noise of a validation pass is well under it.
LEARNED_GAIN_PERCENT = 1.0
# (log key, row label, format) of the summary, in order; rows whose key the run did not log are left out.
SUMMARY_ROWS = (
    ("loss", "loss", "{:.4f}"),
    ("generator_loss", "generator loss", "{:.4f}"),
    ("generator_accuracy", "generator accuracy at [MASK]", "{:.3f}"),
    ("discriminator_loss", "discriminator loss", "{:.4f}"),
    ("replaced_fraction", "replaced fraction p", "{:.4f}"),
    ("information_gain", "information gain, nats/token", "{:.4f}"),
    ("information_gain_percent", "information gain, % of H(p)", "{:.2f}"),
    ("auroc", "AUROC replaced vs original", "{:.3f}"),
    ("auroc_masked", "AUROC, masked positions", "{:.3f}"),
    ("average_precision", "average precision", "{:.3f}"),
    ("average_precision_masked", "average precision, masked", "{:.3f}"),
    ("grad_norm", "gradient norm (interval mean)", "{:.3f}"),
)


def training_records(records: list[dict]) -> list[dict]:
    return [record for record in records if "loss" in record]


def validation_records(records: list[dict]) -> list[dict]:
    return [record for record in records if "validation_loss" in record]


def probe_names(records: list[dict]) -> list[str]:
    keys = {key for record in records for key in record}
    return sorted(key.removeprefix(PROBE_PREFIX) for key in keys if key.startswith(PROBE_PREFIX))


def series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the records that logged a finite `key`."""
    points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return [step for step, _ in points], [value for _, value in points]


def write_curves(records: list[dict], path: str | Path) -> Path:
    """Losses, information gain, AUROC and probe MCC against the step: training as lines, validation as dots."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    train, validation = training_records(records), validation_records(records)
    figure, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    loss_keys = ("generator_loss", "discriminator_loss") if series(train, "discriminator_loss")[0] else ("loss",)
    for key in loss_keys:
        plot_figure(axes[0, 0], train, validation, key)
    finish_panel(axes[0, 0], "losses")
    plot_figure(axes[0, 1], train, validation, "information_gain_percent")
    finish_panel(axes[0, 1], "information gain, % of H(p)", reference=(0.0, "predicting the replaced rate"))
    for key in ("auroc", "auroc_masked"):
        plot_figure(axes[1, 0], train, validation, key)
    finish_panel(axes[1, 0], "AUROC, replaced vs original", reference=(0.5, "predicting the replaced rate"))
    for name in probe_names(records):
        axes[1, 1].plot(*series(records, PROBE_PREFIX + name), "o-", label=name)
    finish_panel(axes[1, 1], "downstream probe: test MCC of a logistic regression", reference=(0.0, "chance"))
    for axis in axes[1]:
        axis.set_xlabel("step")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_figure(axis, train: list[dict], validation: list[dict], key: str) -> None:
    """One figure's training line and, in the same colour, its validation dots (nothing for a figure not logged)."""
    steps, values = series(train, key)
    validation_steps, validation_values = series(validation, f"validation_{key}")
    color = axis.plot(steps, values, label=key)[0].get_color() if steps else None
    if validation_steps:
        axis.plot(validation_steps, validation_values, "o", color=color, label=f"validation_{key}")


def finish_panel(axis, title: str, reference: tuple[float, str] | None = None) -> None:
    """Title, legend, and a dashed line at the value that means "nothing learned"; or a note when the panel is empty."""
    axis.set_title(title, fontsize=10)
    if not axis.lines:
        axis.text(0.5, 0.5, "not logged in this run", ha="center", va="center", transform=axis.transAxes, color="grey")
        return
    if reference is not None:
        axis.axhline(reference[0], color="grey", linestyle="--", linewidth=0.8, label=reference[1])
    axis.legend(fontsize=7)


def format_value(record: dict | None, key: str, template: str) -> str:
    value = None if record is None else record.get(key)
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else template.format(value)


def first_and_last(records: list[dict]) -> list[dict | None]:
    return [records[0], records[-1]] if records else [None, None]


def summary_text(records: list[dict]) -> str:
    """Figures at the start and the end of training and of validation, the probe's first and last MCC, and a verdict
    on whether the discriminator learned more than the replaced rate."""
    train, validation = training_records(records), validation_records(records)
    columns = [(record, "") for record in first_and_last(train)]
    columns += [(record, "validation_") for record in first_and_last(validation)]
    steps = ["-" if record is None else f"step {record['step']}" for record, _ in columns]
    lines = [f"{'':32}{'training':>24}{'validation':>24}", f"{'':32}" + "".join(f"{step:>12}" for step in steps)]
    for key, label, template in SUMMARY_ROWS:
        values = [format_value(record, prefix + key, template) for record, prefix in columns]
        if set(values) != {"-"}:
            lines.append(f"{label:32}" + "".join(f"{value:>12}" for value in values))
    for name in probe_names(records):
        steps, values = series(records, PROBE_PREFIX + name)
        if steps:
            lines.append(
                f"probe test MCC on {name}: {values[0]:.3f} at step {steps[0]}, {values[-1]:.3f} at step {steps[-1]}"
            )
    if validation and "validation_windows" in validation[-1]:
        windows = validation[-1]["validation_windows"]
        lines.append(f"validation: {windows} windows; discriminator figures over bases only")
    if verdict := discriminator_verdict(validation, train[-1] if train else None):
        lines.append(verdict)
    return "\n".join(lines)


def discriminator_verdict(validation: list[dict], last_training: dict | None) -> str | None:
    """A sentence or two on the discriminator from the last validation (else the last training interval), with how
    its figures moved since the first validation; None for MLM."""
    record, prefix = (validation[-1], "validation_") if validation else (last_training, "")
    if record is None or f"{prefix}information_gain_percent" not in record:
        return None
    gain, auroc = record[f"{prefix}information_gain_percent"], record[f"{prefix}auroc"]
    nats = record[f"{prefix}information_gain"]
    where = f"on validation at step {record['step']}" if prefix else "in the last training interval"
    figures = (
        f"information gain {gain:.2f}% of H(p) ({nats:.4f} nats per base) and AUROC {auroc:.3f} {where} (0% and 0.5 "
        "for predicting the rate)"
    )
    if len(validation) > 1:
        first = validation[0]
        figures += (
            f", from {first['validation_information_gain_percent']:.2f}% and {first['validation_auroc']:.3f} at step "
            f"{first['step']}"
        )
    if gain >= LEARNED_GAIN_PERCENT:
        return f"The discriminator learned more than the replaced rate: {figures}."
    return (
        f"The discriminator learned little beyond the replaced rate: {figures}. It can only learn where it knows the "
        "sequence better than its generator: try a weaker generator (generator_preset, sampling_temperature), a "
        "larger discriminator (model_preset) or a longer run."
    )
