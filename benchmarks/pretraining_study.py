"""The pre-training study: does RTD pre-training help downstream, at CPU scale, on real human DNA?

    nucel study                      # the whole study (sized for about 2 hours on a free 2-core CPU)
    nucel study --quick              # a few minutes: tiny budgets, one task, one seed (what the test suite runs)
    nucel study --fasta GENOME.fa.gz --data ../shared/data/GUE --workers 2

Stages, each built from the package's own blocks:

1. **Generator-strength sweep.** RTD pre-training (`training/rtd_loop.py`, the `tiny_cpu` recipe on the given
   FASTA) with several generator settings (size, sampling temperature) at a short budget; for each, the
   validation information gain (% of H(p)) and AUROC of replaced vs original, at every validation and at the end.
   The recipe kept is the one with the highest validation information gain at the end.
2. **Pre-training at equal compute.** RTD with the chosen recipe for `pretrain_steps`, and the MLM baseline
   (`objective: mlm`, a discriminator-sized encoder) for as many steps as give the same training FLOPs, the
   generator's included (estimate: 6 × non-embedding weights + 12 × layers × length × width per token, for every
   network that is trained; stated in the table).
3. **Downstream.** Every arm — RTD discriminator, MLM encoder, random initialisation (`random:tiny`), one-hot CNN
   (`benchmarks/cnn_baseline.py`) — fine-tuned on each GUE task with the benchmark runner's protocol
   (`benchmarks/run.py`: the registry's task, seeds and splits, model selection by lowest validation loss, metrics
   over the whole test split) and the fine-tuning recipe below for every arm; and the NucEL arms probed linearly
   (`training/probe.py`: logistic regression on frozen mean-pooled embeddings; the CNN has no pre-trained
   representation to probe).

The fine-tuning recipe (`FINETUNE_RECIPE`), the same for every arm: AdamW 1e-3, batch 64, 50 warm-up steps, linear
decay, mean pooling, 400 steps, validation every 100 steps, no early stopping (patience would stop a run on the
ln 2 plateau). The registry's GUE settings (3e-5, an effective batch of 32) and the capped CPU run of
`benchmarks/results/gue-cpu-small.md` (1e-3 for 80 steps) stop long before anything is learned. Evidence, tf/0,
seed 42, whole train split, test MCC over the 1,000 test rows (Trainer loop of `training/finetune.py`):

    random:tiny, 3e-3, batch 32, mean, linear, 600 steps     train loss 0.720 -> 0.694, MCC 0.000
    random:tiny, 1e-3, batch 64, mean, linear, 1000 steps    train loss 0.705 (200) -> 0.694 (1000), MCC 0.000
    random:tiny, 1e-3, batch 64, mean, constant, 1000 steps  train loss 0.705 (200) -> 0.694 (1000), MCC 0.000
    RTD tiny (1x16 generator, 1500 steps on chr2), 1e-3, batch 64, mean, linear, 1000 steps
                                                             train loss 0.648 (200), 0.568 (400), 0.527 (1000); MCC 0.570
    one-hot CNN, same settings                               train loss 0.637 (200), 0.525 (400), 0.476 (1000); MCC 0.642

GUE's TF negatives match the positives' base composition (tf/0 train: A/C/G/T within 0.005 of each other; CpG 0.058
vs 0.091 per base), so nothing is learned until local order features are: the pre-trained discriminator and the CNN
have them from the start, a randomly initialised tiny NucEL did not find them within 1,000 steps in these runs. 400
steps is what the 2-hour budget affords for 63 NucEL fine-tuning runs; `--finetune-steps` trades it.

Everything a stage computes is one job (a subprocess running `--job SPEC`) whose result is a JSON file under
`--work-dir`; a finished job is reused when its spec is unchanged, so an interrupted study can simply be started
again. Results (`pretraining_study.{md,json,png}` under `--output`) are rewritten after every job: partial results
survive an interruption.
"""

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from nucel.core.files import REPOSITORY, display_path

DEFAULT_FASTA = REPOSITORY.parent / "shared/data/pretrain/human_hg38_chr2_1-2333275/chr2_1-2333275.fa.gz"
DEFAULT_GUE = REPOSITORY.parent / "shared/data/GUE"
BASE_CONFIG = "tiny_cpu"  # tiny (4 × 64) discriminator, 256-bp crops, batch 16, AdamW 2e-3 with linear decay
DISCRIMINATOR_PRESET = "tiny"
TASKS = ("tf/0", "tf/1", "tf/2", "tf/3", "tf/4", "prom/prom_core_all", "prom/prom_300_tata")
ARMS = ("rtd", "mlm", "random", "cnn")
PROBED_ARMS = ("rtd", "mlm", "random")
ARM_LABELS = {"rtd": "RTD (chosen recipe)", "mlm": "MLM baseline", "random": "random init", "cnn": "one-hot CNN"}

# Generator settings of the sweep: from the preset's paired generator (the strongest) to weaker ones (a 1 × 16
# generator, hotter sampling), at the recipe's 15 % masking and at 30 % (more replaced tokens per step: more for the
# discriminator to learn from). Any PretrainingConfig setting may appear. New settings go at the end: a setting's
# work folder is named by its index, so finished runs stay reusable.
MASK_30 = {"mask_probability": 0.3}
SWEEP = (
    ("tiny-generator, T=1", {"generator_preset": "tiny-generator"}),
    ("1x16, T=1", {"generator_preset": "tiny-generator-1x16"}),
    ("1x16, T=2", {"generator_preset": "tiny-generator-1x16", "sampling_temperature": 2.0}),
    ("1x16, T=3", {"generator_preset": "tiny-generator-1x16", "sampling_temperature": 3.0}),
    ("tiny-generator, T=1, mask 30%", {"generator_preset": "tiny-generator", **MASK_30}),
    ("1x16, T=2, mask 30%", {"generator_preset": "tiny-generator-1x16", "sampling_temperature": 2.0, **MASK_30}),
    ("1x16, T=3, mask 30%", {"generator_preset": "tiny-generator-1x16", "sampling_temperature": 3.0, **MASK_30}),
    # With the recipe's peak rate of 2e-3 (linear decay), "1x16, T=1" gained nothing until its rate had decayed
    # below ~1e-3: from step ~600 of 1,000, and from step ~2,000 of 3,000 in an earlier main run (which then
    # ended lower, 1.36 %, than the 1,000-step run); a peak of 6e-4 was slower still (0.18 % at step 600).
    ("1x16, T=1, lr 1e-3", {"generator_preset": "tiny-generator-1x16", "learning_rate": 1e-3}),
)

# Fine-tuning recipe for every arm (see the module docstring and the report for the evidence).
FINETUNE_RECIPE = {
    "learning_rate": 1e-3,
    "batch_size": 64,
    "warmup_steps": 50,
    "lr_scheduler": "linear",  # constant_with_warmup did not help the random arm either (the report's evidence)
    "max_steps": 400,  # fits the 2-hour budget; `--finetune-steps 1000` is the longer run (about 4.5 hours)
    "eval_steps": 100,
    "early_stopping_patience": None,  # the loss plateaus at ln 2 before it falls: patience would stop it there
    "pooling": "mean",
    # ModernBERT's dense -> GELU -> norm before the output layer: the head of the evidence below (the benchmark
    # registry now uses the paper's linear head); the same for every NucEL arm either way.
    "head": "modernbert",
}

# The acceptance bar of the study's chosen CPU recipe (validation, at the end of pre-training).
ACCEPT_GAIN_PERCENT = 3.0
ACCEPT_AUROC = 0.62


@dataclass
class Budget:
    sweep_steps: int = 1000
    sweep_eval_every: int = 200
    pretrain_steps: int = 4000
    pretrain_eval_every: int = 500
    eval_windows: int = 256
    sweep: tuple = SWEEP
    tasks: tuple = TASKS
    seeds: tuple | None = None  # None: the registry's (GUE: 42, 43, 44)
    finetune: dict = field(default_factory=lambda: dict(FINETUNE_RECIPE))
    max_train_samples: int | None = None
    max_validation_samples: int | None = 1000
    probe_train_examples: int = 2000
    probe_test_examples: int = 2000


QUICK = Budget(
    sweep_steps=30, sweep_eval_every=15, pretrain_steps=40, pretrain_eval_every=20, eval_windows=32,
    sweep=SWEEP[:3], tasks=("tf/0",), seeds=(42,),
    finetune={**FINETUNE_RECIPE, "max_steps": 40, "eval_steps": 20, "warmup_steps": 10}, max_train_samples=512,
    max_validation_samples=200, probe_train_examples=300, probe_test_examples=300,
)


# ----------------------------------------------------------------------------------------------------------------
# Compute


def training_flops_per_step(overrides: dict) -> dict:
    """{"per_step": FLOPs, "networks": {...}} for a pre-training config (RTD: generator + discriminator)."""
    from nucel.benchmarks.flops import pretraining_step_flops
    from nucel.training.pretraining_config import load_config

    return pretraining_step_flops(load_config(BASE_CONFIG, overrides={**overrides, "fasta": ["unused"]}))


# ----------------------------------------------------------------------------------------------------------------
# Jobs (each runs in a subprocess: `--job SPEC`)


def pretrain_overrides(fasta: list[str], output_dir: Path, steps: int, eval_every: int, eval_windows: int, extra: dict) -> dict:
    return {
        "fasta": fasta, "output_dir": str(output_dir), "max_steps": steps, "eval_every": eval_every,
        "eval_windows": eval_windows, "log_every": max(1, min(50, eval_every)), "save_every": 10 ** 9,
        "report_to": "none", **extra,
    }


def run_pretrain_job(spec: dict) -> dict:
    from nucel.core.records import read_pretraining_record
    from nucel.training.pretraining_config import load_config
    from nucel.training.rtd_loop import run_pretraining

    output_dir = Path(spec["overrides"]["output_dir"])
    shutil.rmtree(output_dir, ignore_errors=True)  # a fresh run: an old log.jsonl would be appended to
    started = time.perf_counter()
    run_pretraining(load_config(BASE_CONFIG, overrides=spec["overrides"]))
    wall = time.perf_counter() - started
    export = output_dir / "export" / ("discriminator" if spec["overrides"].get("objective", "rtd") == "rtd" else "encoder")
    record = read_pretraining_record(export)
    keys = ("loss", "information_gain_percent", "auroc", "auroc_masked", "average_precision", "replaced_fraction",
            "generator_accuracy", "generator_loss", "discriminator_loss")
    series = [{"step": r["step"], **{k: r[k] for k in keys if k in r}} for r in record["validation_series"]]
    return {"wall_seconds": wall, "validation": series, "windows": record["windows"], "export": str(export)}


def load_split_data(spec: dict):
    from nucel.benchmarks.loaders import load_task
    from nucel.benchmarks.registry import load_suite
    from nucel.benchmarks.run import capped

    suite = load_suite("gue")
    task = suite.task(spec["task"])
    data = load_task(suite, task, spec["data"])
    used = {
        "train": capped(data.splits["train"], spec["max_train_samples"]),
        "validation": capped(data.splits["validation"], spec["max_validation_samples"]),
        "test": data.splits["test"],
    }
    return task, data, used


def train_and_test(model: str, train, validation, test, settings) -> dict:
    """`benchmarks/run.py`'s train_and_test without the test logits (the study keeps metrics and histories)."""
    from nucel.benchmarks.run import train_and_test as run_train_and_test

    result = run_train_and_test(model, train, validation, test, settings)
    result.pop("test_logits")
    return result


def run_finetune_job(spec: dict) -> dict:
    from nucel.benchmarks.registry import OVERRIDABLE
    from nucel.benchmarks.run import split_record, task_settings

    task, data, used = load_split_data(spec)
    # the runner's settings for the task and seed, with the recipe's values (pooling, schedule ... too) on top
    runner_keys = {key: value for key, value in spec["recipe"].items() if key in OVERRIDABLE}
    others = {key: value for key, value in spec["recipe"].items() if key not in OVERRIDABLE}
    settings = replace(task_settings(task, spec["seed"], runner_keys), **runner_keys, **others)
    started = time.perf_counter()
    outcome = train_and_test(spec["model"], used["train"], used["validation"], used["test"], settings)
    return {"value": outcome["metrics"][task.metric], "metric": task.metric, "wall_seconds": time.perf_counter() - started,
            **outcome, "settings": asdict(settings), **split_record(data, used)}


def run_probe_job(spec: dict) -> dict:
    import torch

    from nucel.core.models import load_checked
    from nucel.modeling_nucel import NucELConfig, NucELModel
    from nucel.tokenization import build_tokenizer
    from nucel.training.probe import load_probe_task, probe_task

    folder = Path(spec["data"]) / spec["task"]
    task = load_probe_task(folder, spec["train_examples"], spec["test_examples"], spec["seed"])
    if spec["model"].startswith("random:"):
        torch.manual_seed(spec["seed"])
        encoder = NucELModel(NucELConfig.from_preset(spec["model"].split(":", 1)[1]))
    else:
        encoder = load_checked(NucELModel, spec["model"], device="cpu")
    started = time.perf_counter()
    result = probe_task(encoder, build_tokenizer(), task)
    return {"value": result.mcc, "metric": "mcc", "wall_seconds": time.perf_counter() - started,
            "train_examples": len(task.train.labels), "test_examples": len(task.test.labels)}


JOB_KINDS = {"pretrain": run_pretrain_job, "finetune": run_finetune_job, "probe": run_probe_job}


def run_job_in_process(spec_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    import torch

    torch.set_num_threads(spec.get("threads", 1))
    result = JOB_KINDS[spec["kind"]](spec)
    from nucel.core.files import write_json_atomically

    write_json_atomically(Path(spec["result"]), {"spec": spec, "result": result})


class JobRunner:
    """Runs job specs in subprocesses, `workers` at a time, reusing results whose spec is unchanged."""

    def __init__(self, work_dir: Path, workers: int, threads: int, on_result, run_missing: bool = True):
        self.work_dir, self.workers, self.threads, self.on_result = work_dir, workers, threads, on_result
        self.run_missing = run_missing  # False: only finished jobs are collected (--report-only)
        self.lock = threading.Lock()

    def result_path(self, name: str) -> Path:
        return self.work_dir / "jobs" / f"{name}.json"

    def cached(self, name: str, spec: dict) -> dict | None:
        path = self.result_path(name)
        if path.is_file():
            stored = json.loads(path.read_text())
            if stored["spec"] == {**spec, "result": str(path), "threads": self.threads}:
                return stored["result"]
        return None

    def run(self, name: str, spec: dict) -> dict | None:
        spec = {**spec, "result": str(self.result_path(name)), "threads": self.threads}
        result = self.cached(name, {k: v for k, v in spec.items() if k not in ("result", "threads")})
        if result is None and not self.run_missing:
            return None
        if result is None:
            spec_path = self.work_dir / "jobs" / f"{name}.spec.json"
            spec_path.parent.mkdir(parents=True, exist_ok=True)
            spec_path.write_text(json.dumps(spec, indent=2))
            log_path = self.work_dir / "logs" / f"{name}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            with open(log_path, "w") as log:
                code = subprocess.call([sys.executable, "-m", "nucel.cli", "study", "--job", str(spec_path)],
                                       stdout=log, stderr=subprocess.STDOUT, cwd=str(REPOSITORY))
            if code != 0:
                print(f"[study] job {name} failed (exit {code}); its log: {log_path}", flush=True)
                return None
            result = json.loads(self.result_path(name).read_text())["result"]
            print(f"[study] {name} done in {time.perf_counter() - started:.0f} s", flush=True)
        else:
            print(f"[study] {name}: reusing {self.result_path(name)}", flush=True)
        with self.lock:
            self.on_result(name, result)
        return result

    def run_all(self, jobs: list[tuple[str, dict]]) -> dict:
        with ThreadPoolExecutor(self.workers) as pool:
            results = list(pool.map(lambda job: self.run(*job), jobs))
        return {name: result for (name, _), result in zip(jobs, results)}


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
        "setting": label, "overrides": extra, "steps": series[-1]["step"] if series else None,
        "wall_seconds": result["wall_seconds"], "flops": flops["per_step"] * (series[-1]["step"] if series else 0),
        "gain_percent_first": series[0].get("information_gain_percent") if series else None,
        "gain_percent_end": end.get("information_gain_percent"), "auroc_first": series[0].get("auroc") if series else None,
        "auroc_end": end.get("auroc"), "replaced_fraction_end": end.get("replaced_fraction"),
        "generator_accuracy_end": end.get("generator_accuracy"),
        "gain_rises": rises(series, "information_gain_percent"), "auroc_rises": rises(series, "auroc"),
        "validation": series,
    }


def choose(rows: list[dict]) -> dict | None:
    finished = [row for row in rows if row.get("gain_percent_end") is not None]
    return max(finished, key=lambda row: (row["gain_percent_end"], row["auroc_end"])) if finished else None


def acceptance(row: dict | None) -> dict:
    if not row or row.get("gain_percent_end") is None:
        return {"met": False, "reason": "not run yet"}
    checks = {
        f"validation information gain ≥ {ACCEPT_GAIN_PERCENT} % at the end": row["gain_percent_end"] >= ACCEPT_GAIN_PERCENT,
        "validation information gain rises over training": bool(row["gain_rises"]),
        f"validation AUROC ≥ {ACCEPT_AUROC} at the end": row["auroc_end"] >= ACCEPT_AUROC,
    }
    return {"met": all(checks.values()), "checks": checks}


def summarise(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


# ----------------------------------------------------------------------------------------------------------------
# Reports


def fmt(value, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    budget = report["budget"]
    lines = [
        "# Pre-training study: RTD vs MLM at equal compute, random init and the one-hot CNN" + (" (QUICK MODE)" if report["quick"] else ""),
        "",
        f"Status: **{report['status']}** (written {report['written']}; {report['elapsed_minutes']:.1f} min in this invocation; "
        f"the finished jobs ran {report['job_minutes']:.0f} min in all, {report['workers']} at a time). "
        f"Command: `{report['command']}`.",
        "",
        f"Pre-training data: {', '.join(report['fasta'])} — real human DNA (GRCh38 chr2:1-2,333,275; the paper's "
        f"human-only setting, at a CPU-sized slice), windows: {report.get('windows') or '–'}. Discriminator `{DISCRIMINATOR_PRESET}` "
        f"(4 × 64), the `{BASE_CONFIG}` recipe (256-bp crops, batch 16, AdamW 2e-3, 50 warm-up steps, linear decay).",
        f"Training FLOPs: 6 × non-embedding weights + 12 × layers × length × width per token, for every network trained "
        f"(the generator included); CPU: {os.cpu_count()} cores, {report['workers']} job(s) at a time, "
        f"{report['threads']} torch thread(s) each.",
        "",
        f"## 1. Generator-strength sweep ({budget['sweep_steps']} steps each; validation every {budget['sweep_eval_every']} steps, "
        f"{budget['eval_windows']} held-out windows)",
        "",
        "| setting | overrides | steps | wall (min) | train FLOPs | val info gain % (first → end) | rises | "
        "val AUROC (first → end) | rises | replaced p | generator acc. |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["sweep"]:
        lines.append(
            f"| {row['setting']} | `{json.dumps(row['overrides'])}` | {row['steps']} | {row['wall_seconds'] / 60:.1f} | "
            f"{row['flops']:.2e} | {fmt(row['gain_percent_first'], 2)} → **{fmt(row['gain_percent_end'], 2)}** | "
            f"{row['gain_rises']} | {fmt(row['auroc_first'])} → **{fmt(row['auroc_end'])}** | {row['auroc_rises']} | "
            f"{fmt(row['replaced_fraction_end'])} | {fmt(row['generator_accuracy_end'])} |"
        )
    chosen = report.get("chosen")
    lines += ["", f"Chosen recipe (highest validation information gain at the end): **{chosen or '–'}**.", ""]
    lines += [f"## 2. Pre-training at equal compute ({budget['pretrain_steps']} RTD steps)", ""]
    pre = report.get("pretraining", {})
    if pre:
        lines += ["| arm | objective | steps | train FLOPs | wall (min) | val info gain % | rises | val AUROC | val loss | val generator/MLM acc. |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for arm in ("rtd", "mlm"):
            if arm not in pre:
                continue
            entry = pre[arm]
            end = entry["validation"][-1] if entry.get("validation") else {}
            lines.append(
                f"| {ARM_LABELS[arm]} | {entry['objective']} | {entry['steps']} | {entry['flops']:.2e} | "
                f"{fmt(entry.get('wall_seconds', 0) / 60, 1)} | {fmt(end.get('information_gain_percent'), 2)} | "
                f"{entry.get('gain_rises', '–')} | {fmt(end.get('auroc'))} | {fmt(end.get('loss'))} | {fmt(end.get('generator_accuracy'))} |"
            )
        verdict = report.get("acceptance", {})
        state = "pending (the RTD run has not finished)" if not verdict else "met" if verdict["met"] else "NOT met"
        lines += ["", f"Acceptance (the chosen recipe's RTD run, validation at the end): **{state}**"]
        lines += [f"- {name}: {'yes' if ok else 'no'}" for name, ok in verdict.get("checks", {}).items()]
        if "rtd" in pre and pre["rtd"].get("validation"):
            lines += ["", "RTD validation curve: " + ", ".join(
                f"step {p['step']}: gain {fmt(p.get('information_gain_percent'), 2)} %, AUROC {fmt(p.get('auroc'))}"
                for p in pre["rtd"]["validation"])]
    else:
        lines.append("Not run yet.")
    recipe = report["finetune_recipe"]
    lines += [
        "", "## 3. Downstream (GUE human tasks)", "",
        f"Fine-tuning, every arm: AdamW {recipe['learning_rate']}, batch {recipe['batch_size']}, {recipe['warmup_steps']} "
        f"warm-up steps, schedule {recipe.get('lr_scheduler', 'linear')}, {recipe['max_steps']} steps, validation every {recipe['eval_steps']} steps, "
        f"{recipe['pooling']} pooling, {recipe.get('head', 'modernbert')} head (NucEL arms), early stopping {recipe['early_stopping_patience']}; the benchmark runner's protocol "
        f"(registry seeds and splits, best checkpoint by validation loss, metrics over the whole test split). Training rows "
        f"capped at {budget['max_train_samples'] or 'none (all)'}, validation rows at {budget['max_validation_samples']}. "
        f"Linear probe: logistic regression on frozen mean-pooled embeddings, {budget['probe_train_examples']} train / "
        f"{budget['probe_test_examples']} test examples drawn per seed. MCC, mean ± sd (n seeds).",
        "",
    ]
    columns = [(arm, "finetune") for arm in ARMS] + [(arm, "probe") for arm in PROBED_ARMS]
    lines.append("| task | " + " | ".join(f"{ARM_LABELS[arm]} {'fine-tuned' if kind == 'finetune' else 'probe'}" for arm, kind in columns) + " |")
    lines.append("|---|" + "---|" * len(columns))
    downstream = report.get("downstream", {})
    for task in budget["tasks"]:
        cells = []
        for arm, kind in columns:
            entry = downstream.get(task, {}).get(kind, {}).get(arm)
            cells.append(f"{entry['mean']:.3f} ± {entry['sd']:.3f} ({entry['n']})" if entry else "–")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    averages = report.get("downstream_average", {})
    if averages:
        cells = [fmt(averages.get(kind, {}).get(arm)) for arm, kind in columns]
        lines.append(f"| **average ({len(report['downstream_average_tasks'])} tasks with every arm)** | " + " | ".join(cells) + " |")
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
        sds = [downstream[task].get(kind, {}).get(arm, {}).get("sd", 0.0) for task in tasks]
        axes[2].bar([t + i * width for t in range(len(tasks))], means, width, yerr=sds,
                    label=f"{arm} {'ft' if kind == 'finetune' else 'probe'}", hatch="" if kind == "finetune" else "//")
    axes[2].set_xticks([t + 0.4 - width / 2 for t in range(len(tasks))], tasks, rotation=30, fontsize=7)
    axes[2].set(title="downstream test MCC (mean ± sd over seeds)")
    axes[2].legend(fontsize=6, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ----------------------------------------------------------------------------------------------------------------
# The study


class Study:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.budget = QUICK if args.quick else Budget()
        if args.tasks:
            self.budget = replace(self.budget, tasks=tuple(args.tasks))
        if args.seeds:
            self.budget = replace(self.budget, seeds=tuple(args.seeds))
        for name in ("sweep_steps", "pretrain_steps"):
            if getattr(args, name):
                self.budget = replace(self.budget, **{name: getattr(args, name)})
        if args.finetune_steps:
            self.budget = replace(self.budget, finetune={**self.budget.finetune, "max_steps": args.finetune_steps})
        self.work_dir = Path(args.work_dir).resolve()
        self.output = Path(args.output)
        self.fasta = [str(Path(f).resolve()) for f in args.fasta]
        self.started = time.time()
        self.runner = JobRunner(self.work_dir, args.workers, args.threads, self.record, run_missing=not args.report_only)
        self.results: dict[str, dict] = {}
        self.report_state = {"status": "running"}

    def record(self, name: str, result: dict) -> None:
        self.results[name] = result
        self.write()

    def sweep_jobs(self) -> list[tuple[str, dict, str, dict]]:
        b = self.budget
        jobs = []
        for index, (label, extra) in enumerate(b.sweep):
            overrides = pretrain_overrides(self.fasta, self.work_dir / "sweep" / f"setting{index}", b.sweep_steps,
                                           b.sweep_eval_every, b.eval_windows, extra)
            jobs.append((f"sweep{index}", {"kind": "pretrain", "overrides": overrides}, label, extra))
        return jobs

    def chosen_extra(self) -> tuple[str, dict] | None:
        rows = self.sweep_rows()
        best = choose(rows)
        return (best["setting"], best["overrides"]) if best else None

    def sweep_rows(self) -> list[dict]:
        rows = []
        for name, spec, label, extra in self.sweep_jobs():
            if name in self.results:
                rows.append(sweep_row(label, extra, self.results[name], training_flops_per_step(spec["overrides"])))
        return rows

    def pretrain_jobs(self) -> list[tuple[str, dict]]:
        b = self.budget
        _, extra = self.chosen_extra()
        rtd = pretrain_overrides(self.fasta, self.work_dir / "pretrain" / "rtd", b.pretrain_steps, b.pretrain_eval_every, b.eval_windows, extra)
        rtd_flops = training_flops_per_step(rtd)["per_step"] * b.pretrain_steps
        mlm_base = {k: v for k, v in extra.items() if k in ("mask_probability", "mask_token_fraction")}
        mlm = pretrain_overrides(self.fasta, self.work_dir / "pretrain" / "mlm", 1, b.pretrain_eval_every, b.eval_windows,
                                 {"objective": "mlm", **mlm_base})
        mlm_steps = round(rtd_flops / training_flops_per_step(mlm)["per_step"])
        mlm.update(max_steps=mlm_steps, eval_every=max(1, round(b.pretrain_eval_every * mlm_steps / b.pretrain_steps)))
        return [("pretrain_rtd", {"kind": "pretrain", "overrides": rtd}), ("pretrain_mlm", {"kind": "pretrain", "overrides": mlm})]

    def models(self) -> dict[str, str]:
        return {
            "rtd": str(self.work_dir / "pretrain" / "rtd" / "export" / "discriminator"),
            "mlm": str(self.work_dir / "pretrain" / "mlm" / "export" / "encoder"),
            "random": f"random:{DISCRIMINATOR_PRESET}",
            "cnn": "cnn",
        }

    def downstream_jobs(self) -> list[tuple[str, dict]]:
        from nucel.benchmarks.registry import load_suite

        b, models, suite = self.budget, self.models(), load_suite("gue")
        jobs = []
        # Seed-major: a study stopped early has every task and arm for its first seed(s), not three seeds of a few tasks.
        seeds = {task: tuple(b.seeds or suite.task(task).seeds) for task in b.tasks}
        for task, seed in [(task, seeds[task][i]) for i in range(max(map(len, seeds.values()))) for task in b.tasks if i < len(seeds[task])]:
            slug = f"{task.replace('/', '_')}_seed{seed}"
            for arm in ARMS:
                jobs.append((f"finetune_{arm}_{slug}", {
                    "kind": "finetune", "arm": arm, "model": models[arm], "task": task, "seed": seed,
                    "data": str(Path(self.args.data).resolve()), "recipe": b.finetune,
                    "max_train_samples": b.max_train_samples, "max_validation_samples": b.max_validation_samples}))
            for arm in PROBED_ARMS:
                jobs.append((f"probe_{arm}_{slug}", {
                    "kind": "probe", "arm": arm, "model": models[arm], "task": task, "seed": seed,
                    "data": str(Path(self.args.data).resolve()), "train_examples": b.probe_train_examples,
                    "test_examples": b.probe_test_examples}))
        return jobs

    def report(self) -> dict:
        b = self.budget
        sweep = self.sweep_rows()
        chosen = choose(sweep)
        report = {
            "quick": self.args.quick, "status": self.report_state["status"], "command": " ".join(["nucel study", *(display_path(a) if Path(a).exists() else a for a in self.args.argv)]),
            "written": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "elapsed_minutes": (time.time() - self.started) / 60,
            "job_minutes": sum(result.get("wall_seconds", 0) for result in self.results.values()) / 60, "workers": self.args.workers,
            "fasta": [display_path(name) for name in self.fasta], "work_dir": display_path(self.work_dir), "workers": self.args.workers, "threads": self.args.threads,
            "budget": {**{k: v for k, v in asdict(b).items() if k != "sweep"}, "sweep": [list(s) for s in b.sweep]},
            "finetune_recipe": b.finetune, "sweep": sweep, "chosen": chosen["setting"] if chosen else None,
            "acceptance_bar": {"gain_percent": ACCEPT_GAIN_PERCENT, "auroc": ACCEPT_AUROC},
        }
        windows = next((r.get("windows") for r in self.results.values() if r.get("windows")), None)
        report["windows"] = windows
        pretraining = {}
        if chosen:
            for name, spec in self.pretrain_jobs():
                arm = name.split("_")[1]
                entry = {"objective": spec["overrides"].get("objective", "rtd"), "steps": spec["overrides"]["max_steps"],
                         "flops": training_flops_per_step(spec["overrides"])["per_step"] * spec["overrides"]["max_steps"],
                         "overrides": {k: v for k, v in spec["overrides"].items() if k not in ("fasta", "output_dir")}}
                if name in self.results:
                    result = self.results[name]
                    entry.update(wall_seconds=result["wall_seconds"], validation=result["validation"],
                                 gain_rises=rises(result["validation"], "information_gain_percent"),
                                 auroc_rises=rises(result["validation"], "auroc"))
                pretraining[arm] = entry
        report["pretraining"] = pretraining
        rtd = pretraining.get("rtd", {})
        if rtd.get("validation"):
            end = rtd["validation"][-1]
            report["acceptance"] = acceptance({"gain_percent_end": end.get("information_gain_percent"), "auroc_end": end.get("auroc"),
                                               "gain_rises": rtd.get("gain_rises")})
        downstream, runs = {}, []
        for name, result in self.results.items():
            kind = name.split("_")[0]
            if kind not in ("finetune", "probe"):
                continue
            _, arm, *rest = name.split("_")
            spec = json.loads((self.work_dir / "jobs" / f"{name}.json").read_text())["spec"]
            downstream.setdefault(spec["task"], {}).setdefault(kind, {}).setdefault(arm, []).append(result["value"])
            runs.append({"job": name, "task": spec["task"], "arm": arm, "kind": kind, "seed": spec["seed"], "value": result["value"],
                         "wall_seconds": result["wall_seconds"],
                         **({"best_step": result.get("best_step"), "steps_trained": result.get("steps_trained"),
                             "train_history": result.get("train_history"), "metrics": result.get("metrics"),
                             "split_sizes": result.get("split_sizes")} if kind == "finetune" else {})})
        report["downstream"] = {task: {kind: {arm: summarise(values) for arm, values in arms.items()} for kind, arms in kinds.items()}
                                for task, kinds in downstream.items()}
        # Averaged over the tasks every arm has results for, so that no arm's average covers easier tasks.
        columns = [(kind, arm) for kind, arms in (("finetune", ARMS), ("probe", PROBED_ARMS)) for arm in arms]
        complete = [t for t, kinds in report["downstream"].items() if all(arm in kinds.get(kind, {}) for kind, arm in columns)]
        averages = {}
        for kind, arm in columns:
            if complete:
                averages.setdefault(kind, {})[arm] = statistics.fmean(report["downstream"][t][kind][arm]["mean"] for t in complete)
        report["downstream_average"] = averages
        report["downstream_average_tasks"] = complete
        report["downstream_runs"] = sorted(runs, key=lambda r: r["job"])
        return report

    def write(self) -> None:
        from nucel.core.files import write_json_atomically

        report = self.report()
        self.output.mkdir(parents=True, exist_ok=True)
        write_json_atomically(self.output / "pretraining_study.json", report)
        staging = self.output / ".pretraining_study.md.tmp"
        staging.write_text(markdown(report))
        staging.replace(self.output / "pretraining_study.md")
        try:
            plot(report, self.output / ".pretraining_study.tmp.png")
            (self.output / ".pretraining_study.tmp.png").replace(self.output / "pretraining_study.png")
        except Exception as error:  # a plot failure must not lose the tables
            print(f"[study] plot failed: {error}", flush=True)

    def run(self) -> dict:
        for path in self.fasta:
            if not Path(path).is_file():
                raise FileNotFoundError(f"--fasta {path}: no such file")
        if not Path(self.args.data).is_dir():
            raise FileNotFoundError(f"--data {self.args.data}: no such folder (the GUE data root)")
        print(f"[study] stage 1: sweep of {len(self.budget.sweep)} generator settings", flush=True)
        self.runner.run_all([(name, spec) for name, spec, _, _ in self.sweep_jobs()])
        if self.chosen_extra() is None:
            self.report_state["status"] = "failed: no sweep run finished"
            self.write()
            raise RuntimeError("no sweep run finished; see the logs under " + str(self.work_dir / "logs"))
        print(f"[study] chosen: {self.chosen_extra()[0]}; stage 2: RTD and MLM at equal FLOPs", flush=True)
        self.runner.run_all(self.pretrain_jobs())
        print("[study] stage 3: fine-tuning and probes", flush=True)
        jobs = self.downstream_jobs()
        missing = [arm for arm, model in self.models().items() if "/" in model and not Path(model).is_dir()]
        if missing:
            print(f"[study] no exported model for {missing}: their downstream jobs are skipped", flush=True)
            jobs = [(name, spec) for name, spec in jobs if spec["arm"] not in missing]
        self.runner.run_all(jobs)
        planned = [name for name, _, _, _ in self.sweep_jobs()] + [name for name, _ in self.pretrain_jobs() + jobs]
        finished = sum(name in self.results for name in planned)
        self.report_state["status"] = "finished" if finished == len(planned) else (
            f"stopped with {finished} of {len(planned)} jobs finished; run the command again to continue (finished jobs are reused)")
        self.write()
        return self.report()


def add_arguments(parser) -> None:
    parser.description = __doc__
    parser.add_argument("--quick", action="store_true", help="a few minutes: tiny budgets, one task (tf/0), one seed")
    parser.add_argument("--fasta", nargs="+", default=[str(DEFAULT_FASTA)], help="pre-training genome FASTA(.gz)")
    parser.add_argument("--data", default=str(DEFAULT_GUE), help="the GUE data root")
    parser.add_argument("-o", "--output", default=str(REPOSITORY / "benchmarks" / "results"),
                        help="folder for pretraining_study.{md,json,png}")
    parser.add_argument("--work-dir", default=None, help="pre-training runs, job specs, results and logs (default: runs/pretraining-study[-quick])")
    parser.add_argument("--workers", type=int, default=2, help="jobs at a time (2 on a 2-core CPU)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--tasks", nargs="+", help=f"GUE tasks (default: {' '.join(TASKS)})")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the registry's seeds (quick: 42)")
    parser.add_argument("--sweep-steps", type=int, help="pre-training steps of each sweep setting")
    parser.add_argument("--pretrain-steps", type=int, help="RTD steps of the main run (MLM: the same FLOPs)")
    parser.add_argument("--finetune-steps", type=int, help="fine-tuning steps of every arm")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the finished jobs under --work-dir; run nothing")
    parser.add_argument("--job", type=Path, help=argparse.SUPPRESS)  # internal: run one job spec
    parser.set_defaults(run="nucel.benchmarks.pretraining_study:run_study")


def run_study(args: argparse.Namespace) -> None:
    if args.job:
        run_job_in_process(args.job)
        return
    args.argv = [arg for arg in sys.argv[2:] if arg != "--report-only"]
    if args.work_dir is None:
        args.work_dir = str(REPOSITORY / "runs" / ("pretraining-study-quick" if args.quick else "pretraining-study"))
    study = Study(args)
    report = study.run()
    print(f"[study] done in {report['elapsed_minutes']:.1f} min: {study.output / 'pretraining_study.md'}")
