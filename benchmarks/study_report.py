"""The pre-training study's analysis and report: the sweep's rows and the chosen recipe, the acceptance bar, summaries
over seeds, `pretraining_study.md` and `pretraining_study.png`.
"""

import json
import math
import os
import statistics
import time
from dataclasses import asdict
from pathlib import Path

from nucel.benchmarks.study_jobs import BASE_CONFIG, training_flops_per_step
from nucel.core.files import display_path

DISCRIMINATOR_PRESET = "tiny"
ARMS = ("rtd", "mlm", "random", "cnn")
PROBED_ARMS = ("rtd", "mlm", "random")
ARM_LABELS = {"rtd": "RTD (chosen recipe)", "mlm": "MLM baseline", "random": "random init", "cnn": "one-hot CNN"}
# The acceptance bar of the study's chosen CPU recipe (validation, at the end of pre-training).
ACCEPT_GAIN_PERCENT = 3.0
ACCEPT_AUROC = 0.62


# ----------------------------------------------------------------------------------------------------------------
# Analysis


def rises(series: list[dict], key: str) -> bool | None:
    """Whether a validation figure rises over training: its last value is above its first and above its value
    halfway through (None with fewer than two validations)."""
    values = [point[key] for point in series if point.get(key) is not None and not math.isnan(point[key])]
    if len(values) < 2:
        return None
    return values[-1] > values[0] and values[-1] >= values[(len(values) - 1) // 2]


def sweep_row(label: str, extra: dict, result: dict, flops: dict) -> dict:
    series = result["validation"]
    end = series[-1] if series else {}
    return {
        "setting": label,
        "overrides": extra,
        "steps": series[-1]["step"] if series else None,
        "wall_seconds": result["wall_seconds"],
        "flops": flops["per_step"] * (series[-1]["step"] if series else 0),
        "gain_percent_first": series[0].get("information_gain_percent") if series else None,
        "gain_percent_end": end.get("information_gain_percent"),
        "auroc_first": series[0].get("auroc") if series else None,
        "auroc_end": end.get("auroc"),
        "replaced_fraction_end": end.get("replaced_fraction"),
        "generator_accuracy_end": end.get("generator_accuracy"),
        "gain_rises": rises(series, "information_gain_percent"),
        "auroc_rises": rises(series, "auroc"),
        "validation": series,
    }


def choose(rows: list[dict]) -> dict | None:
    finished = [row for row in rows if row.get("gain_percent_end") is not None]
    return max(finished, key=lambda row: (row["gain_percent_end"], row["auroc_end"])) if finished else None


def acceptance(row: dict | None) -> dict:
    if not row or row.get("gain_percent_end") is None:
        return {"met": False, "reason": "not run yet"}
    checks = {
        f"validation information gain ≥ {ACCEPT_GAIN_PERCENT} % at the end": row["gain_percent_end"]
        >= ACCEPT_GAIN_PERCENT,
        "validation information gain rises over training": bool(row["gain_rises"]),
        f"validation AUROC ≥ {ACCEPT_AUROC} at the end": row["auroc_end"] >= ACCEPT_AUROC,
    }
    return {"met": all(checks.values()), "checks": checks}


def summarise(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
    }


# ----------------------------------------------------------------------------------------------------------------
# Reports


def fmt(value, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    budget = report["budget"]
    lines = [
        "# Pre-training study: RTD vs MLM at equal compute, random init and the one-hot CNN"
        + (" (QUICK MODE)" if report["quick"] else ""),
        "",
        f"Status: **{report['status']}** (written {report['written']}; {report['elapsed_minutes']:.1f} min in this "
        f"invocation; the finished jobs ran {report['job_minutes']:.0f} min in all, {report['workers']} at a time). "
        f"Command: `{report['command']}`.",
        "",
        f"Pre-training data: {', '.join(report['fasta'])} — real human DNA (GRCh38 chr2:1-2,333,275; the paper's "
        f"human-only setting, at a CPU-sized slice), windows: {report.get('windows') or '–'}. Discriminator "
        f"`{DISCRIMINATOR_PRESET}` (4 × 64), the `{BASE_CONFIG}` recipe (256-bp crops, batch 16, AdamW 2e-3, 50 "
        f"warm-up steps, linear decay).",
        f"Training FLOPs: 6 × non-embedding weights + 12 × layers × length × width per token, for every network "
        f"trained (the generator included); CPU: {os.cpu_count()} cores, {report['workers']} job(s) at a time, "
        f"{report['threads']} torch thread(s) each.",
        "",
        f"## 1. Generator-strength sweep ({budget['sweep_steps']} steps each; validation every "
        f"{budget['sweep_eval_every']} steps, {budget['eval_windows']} held-out windows)",
        "",
        "| setting | overrides | steps | wall (min) | train FLOPs | val info gain % (first → end) | rises | "
        "val AUROC (first → end) | rises | replaced p | generator acc. |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["sweep"]:
        lines.append(
            f"| {row['setting']} | `{json.dumps(row['overrides'])}` | {row['steps']} | "
            f"{row['wall_seconds'] / 60:.1f} | "
            f"{row['flops']:.2e} | {fmt(row['gain_percent_first'], 2)} → **{fmt(row['gain_percent_end'], 2)}** | "
            f"{row['gain_rises']} | {fmt(row['auroc_first'])} → **{fmt(row['auroc_end'])}** | {row['auroc_rises']} | "
            f"{fmt(row['replaced_fraction_end'])} | {fmt(row['generator_accuracy_end'])} |"
        )
    chosen = report.get("chosen")
    lines += ["", f"Chosen recipe (highest validation information gain at the end): **{chosen or '–'}**.", ""]
    lines += [f"## 2. Pre-training at equal compute ({budget['pretrain_steps']} RTD steps)", ""]
    pre = report.get("pretraining", {})
    if pre:
        lines += [
            "| arm | objective | steps | train FLOPs | wall (min) | val info gain % | rises | val AUROC | val loss "
            "| val generator/MLM acc. |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for arm in ("rtd", "mlm"):
            if arm not in pre:
                continue
            entry = pre[arm]
            end = entry["validation"][-1] if entry.get("validation") else {}
            lines.append(
                f"| {ARM_LABELS[arm]} | {entry['objective']} | {entry['steps']} | {entry['flops']:.2e} | "
                f"{fmt(entry.get('wall_seconds', 0) / 60, 1)} | {fmt(end.get('information_gain_percent'), 2)} | "
                f"{entry.get('gain_rises', '–')} | {fmt(end.get('auroc'))} | {fmt(end.get('loss'))} | "
                f"{fmt(end.get('generator_accuracy'))} |"
            )
        verdict = report.get("acceptance", {})
        state = "pending (the RTD run has not finished)" if not verdict else "met" if verdict["met"] else "NOT met"
        lines += ["", f"Acceptance (the chosen recipe's RTD run, validation at the end): **{state}**"]
        lines += [f"- {name}: {'yes' if ok else 'no'}" for name, ok in verdict.get("checks", {}).items()]
        if "rtd" in pre and pre["rtd"].get("validation"):
            lines += [
                "",
                "RTD validation curve: "
                + ", ".join(
                    f"step {p['step']}: gain {fmt(p.get('information_gain_percent'), 2)} %, AUROC {fmt(p.get('auroc'))}"
                    for p in pre["rtd"]["validation"]
                ),
            ]
    else:
        lines.append("Not run yet.")
    recipe = report["finetune_recipe"]
    lines += [
        "",
        "## 3. Downstream (GUE human tasks)",
        "",
        f"Fine-tuning, every arm: AdamW {recipe['learning_rate']}, batch {recipe['batch_size']}, "
        f"{recipe['warmup_steps']} warm-up steps, schedule {recipe.get('lr_scheduler', 'linear')}, "
        f"{recipe['max_steps']} steps, validation every {recipe['eval_steps']} steps, {recipe['pooling']} pooling, "
        f"{recipe.get('head', 'modernbert')} head (NucEL arms), early stopping {recipe['early_stopping_patience']}; "
        f"the benchmark runner's protocol (registry seeds and splits, best checkpoint by validation loss, metrics over "
        f"the whole test split). Training rows capped at {budget['max_train_samples'] or 'none (all)'}, validation "
        f"rows at {budget['max_validation_samples']}. "
        f"Linear probe: logistic regression on frozen mean-pooled embeddings, {budget['probe_train_examples']} train / "
        f"{budget['probe_test_examples']} test examples drawn per seed. MCC, mean ± sd (n seeds).",
        "",
    ]
    columns = [(arm, "finetune") for arm in ARMS] + [(arm, "probe") for arm in PROBED_ARMS]
    lines.append(
        "| task | "
        + " | ".join(f"{ARM_LABELS[arm]} {'fine-tuned' if kind == 'finetune' else 'probe'}" for arm, kind in columns)
        + " |"
    )
    lines.append("|---|" + "---|" * len(columns))
    downstream = report.get("downstream", {})
    for task in budget["tasks"]:
        cells = []
        for arm, kind in columns:
            entry = downstream.get(task, {}).get(kind, {}).get(arm)
            cells.append(
                (
                    "–"
                    if not entry
                    else f"{entry['mean']:.3f} (n = 1)"
                    if entry["sd"] is None
                    else f"{entry['mean']:.3f} ± {entry['sd']:.3f} ({entry['n']})"
                )
            )
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    averages = report.get("downstream_average", {})
    if averages:
        cells = [fmt(averages.get(kind, {}).get(arm)) for arm, kind in columns]
        lines.append(
            f"| **average ({len(report['downstream_average_tasks'])} tasks with every arm)** | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", "Every job's spec and result: `" + report["work_dir"] + "/jobs/`; figure: pretraining_study.png."]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    runs = [(row["setting"], row["validation"]) for row in report["sweep"]]
    if report.get("pretraining", {}).get("rtd", {}).get("validation"):
        runs.append((f"RTD main run ({report.get('chosen')})", report["pretraining"]["rtd"]["validation"]))
    for label, series in runs:
        steps = [p["step"] for p in series]
        axes[0].plot(steps, [p.get("information_gain_percent") for p in series], "o-", label=label)
        axes[1].plot(steps, [p.get("auroc") for p in series], "o-", label=label)
    axes[0].axhline(ACCEPT_GAIN_PERCENT, color="grey", ls="--", lw=0.8)
    axes[1].axhline(ACCEPT_AUROC, color="grey", ls="--", lw=0.8)
    axes[0].set(title="validation information gain (% of H(p))", xlabel="step")
    axes[1].set(title="validation AUROC, replaced vs original", xlabel="step")
    axes[0].legend(fontsize=7)
    downstream = report.get("downstream", {})
    tasks = [task for task in report["budget"]["tasks"] if task in downstream]
    columns = [(arm, "finetune") for arm in ARMS] + [(arm, "probe") for arm in PROBED_ARMS]
    width = 0.8 / len(columns)
    for i, (arm, kind) in enumerate(columns):
        means = [downstream[task].get(kind, {}).get(arm, {}).get("mean", float("nan")) for task in tasks]
        # One run has no sd (None in the report): no error bar, not a zero one.
        sds = [downstream[task].get(kind, {}).get(arm, {}).get("sd") for task in tasks]
        sds = [float("nan") if sd is None else sd for sd in sds]
        axes[2].bar(
            [t + i * width for t in range(len(tasks))],
            means,
            width,
            yerr=sds,
            label=f"{arm} {'ft' if kind == 'finetune' else 'probe'}",
            hatch="" if kind == "finetune" else "//",
        )
    axes[2].set_xticks([t + 0.4 - width / 2 for t in range(len(tasks))], tasks, rotation=30, fontsize=7)
    axes[2].set(title="downstream test MCC (mean ± sd over seeds)")
    axes[2].legend(fontsize=6, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def build_report(study) -> dict:
    """The study's report (what pretraining_study.json holds) from its finished jobs: `study` is a running Study."""
    b = study.budget
    sweep = study.sweep_rows()
    chosen = choose(sweep)
    report = {
        "quick": study.args.quick,
        "status": study.report_state["status"],
        "command": " ".join(["nucel study", *(display_path(a) if Path(a).exists() else a for a in study.args.argv)]),
        "written": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "elapsed_minutes": (time.time() - study.started) / 60,
        "job_minutes": sum(result.get("wall_seconds", 0) for result in study.results.values()) / 60,
        "fasta": [display_path(name) for name in study.fasta],
        "work_dir": display_path(study.work_dir),
        "workers": study.args.workers,
        "threads": study.args.threads,
        "budget": {**{k: v for k, v in asdict(b).items() if k != "sweep"}, "sweep": [list(s) for s in b.sweep]},
        "finetune_recipe": b.finetune,
        "sweep": sweep,
        "chosen": chosen["setting"] if chosen else None,
        "acceptance_bar": {"gain_percent": ACCEPT_GAIN_PERCENT, "auroc": ACCEPT_AUROC},
    }
    windows = next((r.get("windows") for r in study.results.values() if r.get("windows")), None)
    report["windows"] = windows
    pretraining = {}
    if chosen:
        for name, spec in study.pretrain_jobs():
            arm = name.split("_")[1]
            entry = {
                "objective": spec["overrides"].get("objective", "rtd"),
                "steps": spec["overrides"]["max_steps"],
                "flops": training_flops_per_step(spec["overrides"])["per_step"] * spec["overrides"]["max_steps"],
                "overrides": {k: v for k, v in spec["overrides"].items() if k not in ("fasta", "output_dir")},
            }
            if name in study.results:
                result = study.results[name]
                entry.update(
                    wall_seconds=result["wall_seconds"],
                    validation=result["validation"],
                    gain_rises=rises(result["validation"], "information_gain_percent"),
                    auroc_rises=rises(result["validation"], "auroc"),
                )
            pretraining[arm] = entry
    report["pretraining"] = pretraining
    rtd = pretraining.get("rtd", {})
    if rtd.get("validation"):
        end = rtd["validation"][-1]
        report["acceptance"] = acceptance(
            {
                "gain_percent_end": end.get("information_gain_percent"),
                "auroc_end": end.get("auroc"),
                "gain_rises": rtd.get("gain_rises"),
            }
        )
    downstream, runs = {}, []
    for name, result in study.results.items():
        kind = name.split("_")[0]
        if kind not in ("finetune", "probe"):
            continue
        _, arm, *rest = name.split("_")
        spec = json.loads((study.work_dir / "jobs" / f"{name}.json").read_text())["spec"]
        downstream.setdefault(spec["task"], {}).setdefault(kind, {}).setdefault(arm, []).append(result["value"])
        runs.append(
            {
                "job": name,
                "task": spec["task"],
                "arm": arm,
                "kind": kind,
                "seed": spec["seed"],
                "value": result["value"],
                "wall_seconds": result["wall_seconds"],
                **(
                    {
                        "best_step": result.get("best_step"),
                        "steps_trained": result.get("steps_trained"),
                        "train_history": result.get("train_history"),
                        "metrics": result.get("metrics"),
                        "split_sizes": result.get("split_sizes"),
                    }
                    if kind == "finetune"
                    else {}
                ),
            }
        )
    report["downstream"] = {
        task: {kind: {arm: summarise(values) for arm, values in arms.items()} for kind, arms in kinds.items()}
        for task, kinds in downstream.items()
    }
    # Averaged over the tasks every arm has results for, so that no arm's average covers easier tasks.
    columns = [(kind, arm) for kind, arms in (("finetune", ARMS), ("probe", PROBED_ARMS)) for arm in arms]
    complete = [
        t for t, kinds in report["downstream"].items() if all(arm in kinds.get(kind, {}) for kind, arm in columns)
    ]
    averages = {}
    for kind, arm in columns:
        if complete:
            averages.setdefault(kind, {})[arm] = statistics.fmean(
                report["downstream"][t][kind][arm]["mean"] for t in complete
            )
    report["downstream_average"] = averages
    report["downstream_average_tasks"] = complete
    report["downstream_runs"] = sorted(runs, key=lambda r: r["job"])
    return report
