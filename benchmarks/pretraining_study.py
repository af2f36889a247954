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
    one-hot CNN, same settings                    train loss 0.637 (200), 0.525 (400), 0.476 (1000); MCC 0.642

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
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from nucel.benchmarks.registry import load_suite
from nucel.benchmarks.study_jobs import (
    JobRunner,
    pretrain_overrides,
    run_job_in_process,
    training_flops_per_step,
)
from nucel.benchmarks.study_report import (
    ARMS,
    DISCRIMINATOR_PRESET,
    PROBED_ARMS,
    build_report,
    choose,
    markdown,
    plot,
    sweep_row,
)
from nucel.core.files import REPOSITORY

DEFAULT_FASTA = REPOSITORY.parent / "shared/data/pretrain/human_hg38_chr2_1-2333275/chr2_1-2333275.fa.gz"
DEFAULT_GUE = REPOSITORY.parent / "shared/data/GUE"
TASKS = ("tf/0", "tf/1", "tf/2", "tf/3", "tf/4", "prom/prom_core_all", "prom/prom_300_tata")

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
    sweep_steps=20,
    sweep_eval_every=10,
    pretrain_steps=40,  # enough steps for the MLM arm's step count to match RTD's FLOPs within 1 %
    pretrain_eval_every=20,
    eval_windows=32,
    sweep=SWEEP[:3],
    tasks=("tf/0",),
    seeds=(42,),
    finetune={**FINETUNE_RECIPE, "max_steps": 24, "eval_steps": 12, "warmup_steps": 6},
    max_train_samples=256,
    max_validation_samples=128,
    probe_train_examples=200,
    probe_test_examples=200,
)


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
        self.runner = JobRunner(
            self.work_dir, args.workers, args.threads, self.record, run_missing=not args.report_only
        )
        self.results: dict[str, dict] = {}
        self.report_state = {"status": "running"}

    def record(self, name: str, result: dict) -> None:
        self.results[name] = result
        self.write()

    def sweep_jobs(self) -> list[tuple[str, dict, str, dict]]:
        b = self.budget
        jobs = []
        for index, (label, extra) in enumerate(b.sweep):
            overrides = pretrain_overrides(
                self.fasta,
                self.work_dir / "sweep" / f"setting{index}",
                b.sweep_steps,
                b.sweep_eval_every,
                b.eval_windows,
                extra,
            )
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
        rtd = pretrain_overrides(
            self.fasta,
            self.work_dir / "pretrain" / "rtd",
            b.pretrain_steps,
            b.pretrain_eval_every,
            b.eval_windows,
            extra,
        )
        rtd_flops = training_flops_per_step(rtd)["per_step"] * b.pretrain_steps
        mlm_base = {k: v for k, v in extra.items() if k in ("mask_probability", "mask_token_fraction")}
        mlm = pretrain_overrides(
            self.fasta,
            self.work_dir / "pretrain" / "mlm",
            1,
            b.pretrain_eval_every,
            b.eval_windows,
            {"objective": "mlm", **mlm_base},
        )
        mlm_steps = round(rtd_flops / training_flops_per_step(mlm)["per_step"])
        mlm.update(max_steps=mlm_steps, eval_every=max(1, round(b.pretrain_eval_every * mlm_steps / b.pretrain_steps)))
        return [
            ("pretrain_rtd", {"kind": "pretrain", "overrides": rtd}),
            ("pretrain_mlm", {"kind": "pretrain", "overrides": mlm}),
        ]

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
        # Seed-major: a study stopped early has every task and arm for its first seed(s), not 3 seeds of a few tasks.
        seeds = {task: tuple(b.seeds or suite.task(task).seeds) for task in b.tasks}
        for task, seed in [
            (task, seeds[task][i])
            for i in range(max(map(len, seeds.values())))
            for task in b.tasks
            if i < len(seeds[task])
        ]:
            slug = f"{task.replace('/', '_')}_seed{seed}"
            for arm in ARMS:
                jobs.append(
                    (
                        f"finetune_{arm}_{slug}",
                        {
                            "kind": "finetune",
                            "arm": arm,
                            "model": models[arm],
                            "task": task,
                            "seed": seed,
                            "data": str(Path(self.args.data).resolve()),
                            "recipe": b.finetune,
                            "max_train_samples": b.max_train_samples,
                            "max_validation_samples": b.max_validation_samples,
                        },
                    )
                )
            for arm in PROBED_ARMS:
                jobs.append(
                    (
                        f"probe_{arm}_{slug}",
                        {
                            "kind": "probe",
                            "arm": arm,
                            "model": models[arm],
                            "task": task,
                            "seed": seed,
                            "data": str(Path(self.args.data).resolve()),
                            "train_examples": b.probe_train_examples,
                            "test_examples": b.probe_test_examples,
                        },
                    )
                )
        return jobs

    def report(self) -> dict:
        return build_report(self)

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
        suite = load_suite("gue")
        for task in self.budget.tasks:
            suite.task(task)  # an unknown task is one line naming the nearest, before any job runs
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
        self.report_state["status"] = (
            "finished"
            if finished == len(planned)
            else (
                f"stopped with {finished} of {len(planned)} jobs finished; run the command again to continue "
                "(finished jobs are reused)"
            )
        )
        self.write()
        return self.report()


def add_arguments(parser) -> None:
    parser.description = __doc__
    parser.add_argument("--quick", action="store_true", help="a few minutes: tiny budgets, one task (tf/0), one seed")
    parser.add_argument("--fasta", nargs="+", default=[str(DEFAULT_FASTA)], help="pre-training genome FASTA(.gz)")
    parser.add_argument("--data", default=str(DEFAULT_GUE), help="the GUE data root")
    parser.add_argument(
        "-o",
        "--output",
        default=str(REPOSITORY / "benchmarks" / "results"),
        help="folder for pretraining_study.{md,json,png}",
    )
    parser.add_argument(
        "--work-dir",
        default=None,
        help="pre-training runs, job specs, results and logs (default: runs/pretraining-study[-quick])",
    )
    parser.add_argument("--workers", type=int, default=2, help="jobs at a time (2 on a 2-core CPU)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--tasks", nargs="+", help=f"GUE tasks (default: {' '.join(TASKS)})")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the registry's seeds (quick: 42)")
    parser.add_argument("--sweep-steps", type=int, help="pre-training steps of each sweep setting")
    parser.add_argument("--pretrain-steps", type=int, help="RTD steps of the main run (MLM: the same FLOPs)")
    parser.add_argument("--finetune-steps", type=int, help="fine-tuning steps of every arm")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite the report from the finished jobs under --work-dir; run nothing",
    )
    parser.add_argument("--job", type=Path, help=argparse.SUPPRESS)  # internal: run one job spec
    parser.set_defaults(run="nucel.benchmarks.pretraining_study:run_study")


def run_study(args: argparse.Namespace) -> None:
    if args.job:
        run_job_in_process(args.job)
        return
    args.argv = [arg for arg in args.arguments if arg != "--report-only"]
    if args.work_dir is None:
        args.work_dir = str(REPOSITORY / "runs" / ("pretraining-study-quick" if args.quick else "pretraining-study"))
    study = Study(args)
    report = study.run()
    print(f"[study] done in {report['elapsed_minutes']:.1f} min: {study.output / 'pretraining_study.md'}")
