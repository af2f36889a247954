"""The pre-training study's jobs: each stage's unit of work runs in a subprocess (`nucel study --job SPEC`) and leaves
a JSON result in the study's job store (JobRunner); a finished job is reused while its spec is unchanged, so a
stopped study resumes where it stopped, on the same machine or another. Also the training compute of a pre-training
recipe (benchmarks/flops.py), for equal-FLOPs arms.
"""

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

from nucel.core.files import REPOSITORY

BASE_CONFIG = "tiny_cpu"  # tiny (4 × 64) discriminator, 256-bp crops, batch 16, AdamW 2e-3 with linear decay


# ----------------------------------------------------------------------------------------------------------------
# Compute


def training_flops_per_step(overrides: dict) -> dict:
    """{"per_step": FLOPs, "networks": {...}} for a pre-training config (RTD: generator + discriminator)."""
    return _training_flops_per_step(json.dumps(overrides, sort_keys=True))


@functools.lru_cache(maxsize=None)
def _training_flops_per_step(overrides: str) -> dict:
    # Cached: the study's plan asks for the same few recipes' FLOPs every time it rewrites its report.
    from nucel.benchmarks.flops import pretraining_step_flops
    from nucel.training.pretraining_config import load_config

    return pretraining_step_flops(load_config(BASE_CONFIG, overrides={**json.loads(overrides), "fasta": ["unused"]}))


def export_folder(run_folder: Path, objective: str) -> str:
    """Where a pre-training run exports the encoder the study uses: an MLM run's encoder, an RTD run's (or the
    control's) discriminator. `objective` may be an arm's name: only "mlm" exports an encoder."""
    return str(Path(run_folder) / "export" / ("encoder" if objective == "mlm" else "discriminator"))


# ----------------------------------------------------------------------------------------------------------------
# Jobs (each runs in a subprocess: `--job SPEC`)


def run_pretrain_job(spec: dict) -> dict:
    """One pre-training run; a run stopped part-way resumes from its last checkpoint."""
    from nucel.core.records import read_pretraining_record
    from nucel.training.pretraining_config import load_config
    from nucel.training.rtd_loop import run_pretraining

    output_dir = Path(spec["overrides"]["output_dir"])
    resume = "latest" if any((output_dir / "checkpoints").glob("*")) else None
    if resume is None:
        shutil.rmtree(output_dir, ignore_errors=True)  # a fresh run: an old log.jsonl would be appended to
    started = time.perf_counter()
    run_pretraining(load_config(BASE_CONFIG, overrides=spec["overrides"]), resume=resume)
    wall = time.perf_counter() - started
    exported = Path(export_folder(output_dir, spec["overrides"].get("objective", "rtd")))
    record = read_pretraining_record(exported)
    shutil.rmtree(output_dir / "checkpoints", ignore_errors=True)  # the export is what the study uses
    return {
        "wall_seconds": wall,  # of this invocation (a resumed run's earlier part is not counted)
        "resumed": resume is not None,
        "validation": [figures(point) for point in record["validation_series"]],
        "ood_validation": [figures(point) for point in record.get("ood_validation_series") or []],
        "windows": record["windows"],
        "steps": record.get("steps"),
        # what a rebuild on another machine must reproduce (JobRunner.rebuild)
        "weights_sha256": hashlib.sha256((exported / "model.safetensors").read_bytes()).hexdigest(),
    }


def figures(point: dict) -> dict:
    """A validation's figures, without the per-window detail a record may carry."""
    return {key: value for key, value in point.items() if isinstance(value, (int, float))}


def digits(classes) -> str | list[int]:
    """Class indices as a string of digits, a third of a JSON list's size (the study's results are committed);
    `classes_of` reads either form."""
    classes = [int(c) for c in classes]
    return "".join(map(str, classes)) if all(0 <= c <= 9 for c in classes) else classes


def classes_of(stored: str | list[int]):
    import numpy as np  # here, not at the top: `nucel --help` imports this module and must stay quick

    return np.array([int(c) for c in stored])


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
        # what the run is scored on: the whole test split, or (for choices) the whole dev split
        "scored": data.splits["test" if spec["score"] == "test" else "validation"],
    }
    return task, data, used


def run_finetune_job(spec: dict) -> dict:
    """One fine-tuning run, scored on the whole test (or dev) split; its predictions are kept for the paired
    bootstrap, and the one-class loss of its validation rows for the plateau count."""
    from nucel.benchmarks.run import split_record, task_settings
    from nucel.benchmarks.run import train_and_test as run_train_and_test
    from nucel.training.finetune import one_class_loss

    task, data, used = load_split_data(spec)
    settings = task_settings(task, spec["seed"], {}, model=spec["model"])
    settings = replace(settings, **spec["recipe"])
    started = time.perf_counter()
    outcome = run_train_and_test(spec["model"], used["train"], used["validation"], used["scored"], settings)
    predictions = outcome.pop("test_logits").argmax(axis=-1)
    return {
        "value": outcome["metrics"][task.metric],
        "metric": task.metric,
        "wall_seconds": time.perf_counter() - started,
        **outcome,
        "one_class_loss": one_class_loss(used["train"], used["validation"]),
        "predictions": digits(predictions),
        "labels": digits(used["scored"].labels),
        "settings": asdict(settings),
        **split_record(data, {"train": used["train"], "validation": used["validation"]}),
    }


def run_probe_job(spec: dict) -> dict:
    """Probes of every layer of one encoder on every task (training/probe.py: probe_every_layer), the layer and C
    chosen on dev. The same train and dev rows for every encoder (drawn with seed 0); scored on the whole test split
    (or, for choices, on dev)."""
    import torch

    from nucel.core.models import load_checked
    from nucel.modeling_nucel import NucELConfig, NucELModel
    from nucel.tokenization import build_tokenizer
    from nucel.training.probe import probe_every_layer, read_split, subsample

    if spec["model"].startswith("random:"):
        torch.manual_seed(spec["seed"])
        encoder = NucELModel(NucELConfig.from_preset(spec["model"].split(":", 1)[1]))
    else:
        encoder = load_checked(NucELModel, spec["model"], device="cpu")
    tokenizer, started, results = build_tokenizer(), time.perf_counter(), {}
    for task in spec["tasks"]:
        folder = Path(spec["data"]) / task
        train = subsample(read_split(folder / "train.csv"), spec["train_examples"], 0)
        dev = subsample(read_split(folder / "dev.csv"), spec["dev_examples"], 0)
        scored = read_split(folder / ("test.csv" if spec["score"] == "test" else "dev.csv"))
        results[task] = probe_every_layer(encoder, tokenizer, train, dev, scored)
        results[task]["test_predictions"] = digits(results[task]["test_predictions"])
        results[task]["labels"] = digits(scored.labels)
    return {"wall_seconds": time.perf_counter() - started, "tasks": results}


JOB_KINDS = {"pretrain": run_pretrain_job, "finetune": run_finetune_job, "probe": run_probe_job}


def run_job_in_process(spec_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    import torch

    torch.set_num_threads(spec.get("threads", 1))
    result = JOB_KINDS[spec["kind"]](spec)
    from nucel.core.files import write_json_atomically

    write_json_atomically(Path(spec["result"]), {"spec": spec, "result": result})


def run_job_logged(spec_path: Path, log_path: Path) -> int:
    """A job in a long-lived worker process, its output (Python's and C's) sent to its log; the exit code a
    subprocess would give."""
    import traceback

    with open(log_path, "w") as log:
        sys.stdout.flush(), sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        try:
            run_job_in_process(spec_path)
            return 0
        except BaseException:  # the job failed, not the worker: log it and let the next job run
            traceback.print_exc()
            return 1
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


class JobRunner:
    """Runs job specs `workers` at a time, reusing results whose spec is unchanged. Each job runs in a fresh
    subprocess (a crash or a leak ends with its job); `reuse_processes` runs them in `workers` long-lived processes
    instead, which saves importing torch for every job (the quick study's many short jobs).

    Finished results live in `store` (the full study's is committed beside its report: a machine that ends with its
    session loses the work folder, never a finished job), written with the folders in `roots` replaced by their
    placeholders, so that no result names a path of one machine and a checkout elsewhere reuses them. The work folder
    holds what may be lost: pre-training runs, specs, logs."""

    def __init__(
        self,
        store: Path,
        work_dir: Path,
        roots: dict[str, Path],
        workers: int,
        threads: int,
        on_result,
        run_missing: bool = True,
        reuse_processes=False,
    ):
        self.store, self.work_dir, self.workers, self.threads = store, work_dir, workers, threads
        # longest first: a work folder inside the repository is named as the work folder
        self.roots = sorted(((placeholder, str(root)) for placeholder, root in roots.items()), key=lambda r: -len(r[1]))
        self.on_result = on_result
        self.run_missing = run_missing  # False: only finished jobs are collected (--report-only)
        self.lock = threading.Lock()
        self.pool = None
        if reuse_processes and run_missing:
            import multiprocessing

            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()

    def portable(self, text: str) -> str:
        for placeholder, root in self.roots:
            text = text.replace(root, placeholder)
        return text

    def local(self, text: str) -> str:
        for placeholder, root in self.roots:
            text = text.replace(placeholder, root)
        return text

    def stored(self, name: str) -> dict | None:
        path = self.store / f"{name}.json"
        return json.loads(self.local(path.read_text())) if path.is_file() else None

    def cached(self, name: str, spec: dict) -> dict | None:
        stored = self.stored(name)
        return stored["result"] if stored is not None and stored["spec"] == self.full_spec(spec) else None

    def full_spec(self, spec: dict) -> dict:
        return {**spec, "threads": self.threads}

    def execute(self, name: str, spec: dict) -> dict | None:
        """Runs one job in the work folder; its result, or None if it failed."""
        spec_path = self.work_dir / "jobs" / f"{name}.spec.json"
        result_path = self.work_dir / "jobs" / f"{name}.json"
        spec_path.parent.mkdir(parents=True, exist_ok=True)
        spec_path.write_text(json.dumps({**self.full_spec(spec), "result": str(result_path)}, indent=2))
        log_path = self.work_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        if self.pool is not None:
            code = self.pool.submit(run_job_logged, spec_path, log_path).result()
        else:
            with open(log_path, "w") as log:
                code = subprocess.call(
                    [sys.executable, "-m", "nucel.cli", "study", "--job", str(spec_path)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=str(REPOSITORY),
                )
        if code != 0:
            print(f"[study] job {name} failed (exit {code}); its log: {log_path}", flush=True)
            return None
        print(f"[study] {name} done in {time.perf_counter() - started:.0f} s", flush=True)
        return json.loads(result_path.read_text())["result"]

    def run(self, name: str, spec: dict) -> dict | None:
        result = self.cached(name, spec)
        ran = result is None
        if ran and not self.run_missing:
            return None
        if ran:
            result = self.execute(name, spec)
            if result is None:
                return None
            from nucel.core.files import write_text_atomically

            self.store.mkdir(parents=True, exist_ok=True)
            text = json.dumps({"spec": self.full_spec(spec), "result": result})
            write_text_atomically(self.store / f"{name}.json", self.portable(text))
        with self.lock:
            self.on_result(name, result, ran)
        return result

    def rebuild(self, name: str, spec: dict) -> bool:
        """Runs a finished pre-training job again because its encoder is gone (a new machine): the same seed on the
        same code gives the same weights, which is checked, so the jobs that used the first copy stay valid."""
        expected = self.stored(name)["result"]["weights_sha256"]
        print(f"[study] {name}: rebuilding its encoder (the work folder no longer has it)", flush=True)
        result = self.execute(name, spec)
        if result is None:
            return False
        if result["weights_sha256"] != expected:
            print(
                f"[study] {name}: the rebuilt weights differ from the stored run's (sha256 {result['weights_sha256']}"
                f" vs {expected}); the jobs that need this encoder are not run",
                flush=True,
            )
            shutil.rmtree(spec["overrides"]["output_dir"], ignore_errors=True)  # no later phase may take it
            return False
        return True

    def rebuild_all(self, jobs: list[tuple[str, dict]]) -> set[str]:
        """The names of the jobs rebuilt with identical weights."""
        with ThreadPoolExecutor(self.workers) as pool:
            rebuilt = list(pool.map(lambda job: self.rebuild(*job), jobs))
        return {name for (name, _), ok in zip(jobs, rebuilt) if ok}

    def run_all(self, jobs: list[tuple[str, dict]]) -> dict:
        with ThreadPoolExecutor(self.workers) as pool:
            results = list(pool.map(lambda job: self.run(*job), jobs))
        return {name: result for (name, _), result in zip(jobs, results)}
