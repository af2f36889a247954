"""The pre-training study's report as markdown (`pretraining_study.md`) and a figure (`pretraining_study.png`), both
from the report dict benchmarks/study_report.py builds."""

import json
import math
from pathlib import Path

from nucel.benchmarks.study_report import ARM_LABELS, COMPUTE_STAGES


def fmt(value, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def cell(entry: dict | None) -> str:
    if not entry:
        return "–"
    if entry["sd"] is None:
        return f"{entry['mean']:.3f} (n = 1)"
    return f"{entry['mean']:.3f} ± {entry['sd']:.3f} ({entry['n']})"


def sweep_table(rows: list[dict], objective: str) -> list[str]:
    rtd = objective == "rtd"
    header = "val info gain % | val AUROC |" if rtd else "val MLM loss |"
    ood = "OOD info gain % |" if rtd else "OOD MLM loss |"
    lines = [
        f"| setting | overrides | steps | wall (min) | {header} {ood} dev probe MCC (mean over tasks) |",
        "|---|---|---|---|" + "---|" * (2 if rtd else 1) + "---|---|",
    ]
    for row in rows:
        end, out = row["validation_end"], row["ood_validation_end"]
        figures = (
            f"{fmt(end.get('information_gain_percent'), 2)} | {fmt(end.get('auroc'))} |"
            if rtd
            else f"{fmt(end.get('loss'))} |"
        )
        ood_figure = fmt(out.get("information_gain_percent"), 2) if rtd else fmt(out.get("loss"))
        wall = fmt(row["wall_seconds"] / 60, 1) if row["wall_seconds"] else "–"
        lines.append(
            f"| {row['setting']} | `{json.dumps(row['overrides'])}` | {row['steps']} | {wall} | {figures} "
            f"{ood_figure} | **{fmt(row['dev_probe_mcc'])}** |"
        )
    return lines


def markdown(report: dict) -> str:
    budget = report["budget"]
    lines = [
        "# Pre-training study: RTD vs MLM at equal compute, the uniform control, random init and the one-hot CNN"
        + (" (QUICK MODE)" if report["quick"] else ""),
        "",
        f"Status: **{report['status']}** (written {report['written']}; {report['jobs_finished']} jobs finished, "
        f"{report['cpu_hours']:.2f} CPU-hours of job time in all (a resumed job counts its last part only), "
        f"{report['workers']} job(s) at a time with "
        f"{report['threads']} torch thread(s) each). Command: `{report['command']}`.",
        "",
        f"Pre-training genome: {', '.join(report['fasta'])} (real human DNA, GRCh38 chr2:1-2,333,275); validation on "
        f"held-out {budget['validation_block_length']:,}-bp blocks spread over it, and out of distribution on "
        f"{', '.join(report['ood_fasta'])} (yeast). Every encoder is `tiny` (4 × 64). Compute budgets (training "
        f"FLOPs, benchmarks/flops.py, generator included): small {report['budgets']['small']['flops']:.2e}, large "
        f"{report['budgets']['large']['flops']:.2e}; every arm gets as many steps as its recipe's FLOPs allow. "
        f"Pre-training seeds {', '.join(map(str, budget['seeds']))}; each encoder is fine-tuned once, with its "
        "seed's number.",
        "",
        "## 1. Sweeps (seed 42, small budget; chosen by the dev probe MCC, the same rule for both objectives)",
        "",
    ]
    for objective, rows in report["sweeps"].items():
        lines += [f"### {ARM_LABELS[objective]}: chosen **{report['chosen'].get(objective) or '–'}**", ""]
        lines += sweep_table(rows, objective) + [""]
    lines += [
        "## 2. Fine-tuning recipe (random initialisation, seed 42, scored on dev)",
        "",
        "| setting | tasks finished | left the one-class plateau | mean dev MCC | steps trained |",
        "|---|---|---|---|---|",
    ]
    for row in report["finetune_search"]:
        steps = ", ".join(str(s) for s in row["steps_by_task"].values())
        lines.append(
            f"| {row['setting']} | {row['finished']} | {row['left_plateau']} | {fmt(row['mean_dev'])} | {steps} |"
        )
    lines += [
        "",
        f"Chosen: **{report['finetune_chosen'] or '–'}**. Every downstream run uses it with the step limit of "
        f"FINETUNE_DOWNSTREAM (benchmarks/study_plan.py says why): `{json.dumps(report['finetune_recipe'])}`.",
    ]
    lines += [
        "",
        "## 3. Pre-training runs (validation at the end, mean over the seeds finished; OOD: the other species)",
        "",
        "An RTD run's loss is the generator's plus λ × the discriminator's; an MLM run's, its masked-token loss. "
        "Where several seeds finished, the lowest and highest of their figures are in brackets. The sweep ran each "
        "setting once, with seed 42, which is not among these seeds: a chosen setting's sweep figure is one draw, "
        "and the best of eight draws at that.",
        "",
    ]
    lines += [
        "| arm | budget | steps | FLOPs | seeds finished | val info gain % | val AUROC | val loss | OOD info gain % "
        "| OOD AUROC | OOD val loss |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, entry in report["arms"].items():
        for budget_name, runs in entry.get("budgets", {}).items():
            finished = runs["runs"]

            def spread(key, part="validation_end", digits=3, finished=finished):
                """The mean over seeds, with the lowest and highest seed's figure beside it when there are several."""
                values = [run[part].get(key) for run in finished if run[part].get(key) is not None]
                if len(values) < 2:
                    return fmt(values[0] if values else None, digits)
                mean = sum(values) / len(values)
                return f"{fmt(mean, digits)} ({fmt(min(values), digits)} to {fmt(max(values), digits)})"

            lines.append(
                f"| {ARM_LABELS[arm]} | {budget_name} | {runs['steps']} | {runs['flops']:.2e} | {len(finished)} | "
                f"{spread('information_gain_percent', digits=2)} | {spread('auroc')} | {spread('loss')} | "
                f"{spread('information_gain_percent', 'ood_validation_end', 2)} | "
                f"{spread('auroc', 'ood_validation_end')} | {spread('loss', 'ood_validation_end')} |"
            )
    counts = report["finetune_counts"]
    lines += [
        "",
        "## 4. Downstream: test MCC, mean ± sd (n seeds)",
        "",
        "Signs that a fine-tuning run had not converged, counted per arm: it selected its last checkpoint, it "
        "trained to its step limit (early stopping did not end it), or its validation loss never left the one-class "
        "plateau.",
        "",
        "| arm | runs | selected their last checkpoint | reached the step limit | stayed on the plateau |",
        "|---|---|---|---|---|",
    ]
    for key, arm_counts in [*counts["by_arm"].items(), ("all", counts)]:
        lines.append(
            f"| {key} | {arm_counts['runs']} | {arm_counts['selected_last_checkpoint']} | "
            f"{arm_counts['reached_step_limit']} | {arm_counts['stayed_on_plateau']} |"
        )
    lines.append("")
    for kind, title in (("finetune", "fine-tuned"), ("probe", "linear probe, every layer (layer and C chosen on dev)")):
        keys = sorted({key for task in report["downstream"].values() for key in task.get(kind, {})})
        if not keys:
            continue
        lines += [f"### {title}", "", "| task | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for task in budget["tasks"]:
            entries = report["downstream"].get(task, {}).get(kind, {})
            lines.append(f"| {task} | " + " | ".join(cell(entries.get(key)) for key in keys) + " |")
        lines.append("")
    lines += [
        "## 5. Paired differences of test MCC (fine-tuned), 95 % intervals",
        "",
        "Hierarchical bootstrap over pre-training seeds, fine-tuning seeds and test rows "
        "(benchmarks/paired_differences.py); an interval that contains 0 is no difference.",
        "",
        "| budget | comparison | task | difference | 95 % interval | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for entry in report["paired_differences"]:
        task = f"mean of {entry['tasks']} tasks" if entry["task"] == "mean" else entry["task"]
        low, high = entry["ci95"]
        lines.append(
            f"| {entry['budget']} | {ARM_LABELS[entry['a']]} − {ARM_LABELS[entry['b']]} | {task} | "
            f"{entry['difference']:+.3f} | [{low:+.3f}, {high:+.3f}] | {entry['verdict']} |"
        )
    stages = [stage for _, stage in COMPUTE_STAGES]
    lines += [
        "",
        "## 6. Compute: CPU-hours of finished jobs by arm and stage",
        "",
        "| arm | " + " | ".join(stages) + " | total |",
        "|---|" + "---|" * (len(stages) + 1),
    ]
    for arm, hours in report["cpu_hours_by_arm"].items():
        label = ARM_LABELS.get(arm, arm)
        cells = " | ".join(fmt(hours.get(stage), 2) for stage in stages)
        lines.append(f"| {label} | {cells} | {fmt(sum(hours.values()), 2)} |")
    lines += [
        "",
        "Every job's spec and result: `pretraining_study_jobs/`, beside this file; figure: pretraining_study.png.",
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(14, 4.5))
    for row in report["sweeps"].get("rtd", []):
        series = row["validation"]
        axes[0].plot(
            [p["step"] for p in series], [p.get("information_gain_percent") for p in series], "o-", label=row["setting"]
        )
    axes[0].set(title="RTD sweep: validation information gain (% of H(p))", xlabel="step")
    if report["sweeps"].get("rtd"):
        axes[0].legend(fontsize=6)
    finetuned = {task: kinds.get("finetune", {}) for task, kinds in report["downstream"].items()}
    keys = sorted({key for entries in finetuned.values() for key in entries})
    tasks = [task for task in report["budget"]["tasks"] if task in finetuned]
    width = 0.8 / max(1, len(keys))
    for i, key in enumerate(keys):
        entries = [finetuned[task].get(key) for task in tasks]
        axes[1].bar(
            [t + i * width for t in range(len(tasks))],
            [e["mean"] if e else float("nan") for e in entries],
            width,
            yerr=[e["sd"] if e and e["sd"] is not None else float("nan") for e in entries],
            label=key,
        )
    axes[1].set_xticks([t + 0.4 - width / 2 for t in range(len(tasks))], tasks, rotation=30, fontsize=7)
    axes[1].set(title="fine-tuned test MCC (mean ± sd over seeds)")
    if keys:
        axes[1].legend(fontsize=6, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
