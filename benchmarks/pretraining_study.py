"""The pre-training study: does RTD pre-training help downstream, at CPU scale, on real human DNA, more than MLM?

    nucel study                      # the whole study: about 11 hours of 2-core CPU time; resumable
    nucel study --quick              # a few minutes: tiny budgets, one task, two seeds (what the test suite runs)
    nucel study --report-only        # rewrite the report from the finished jobs; run nothing

Every choice is made on validation or dev data; test rows are only ever scored.

1. **Sweeps of both objectives, the same effort.** Eight RTD recipes (each lever of docs/design.md: embedding
   sharing none/tied/gdes, replacements allowed to equal the original, a Fast-ELECTRA temperature schedule, a
   stronger generator, 15 % masking, a lower learning rate) and eight MLM recipes (BERT's 80/10/10 and ELECTRA's
   85/15, masking 15-40 %, three learning rates), each pre-trained once (seed 42) at the small compute budget. Each
   recipe's encoder is probed (below) on every task's dev split; the recipe of each objective with the highest mean
   dev MCC over the tasks is the one the main runs use. The same rule for both objectives.
2. **The fine-tuning recipe.** Candidate settings (learning rate, warm-up, head, pooling) fine-tune a randomly
   initialised encoder on every task, scored on dev; the candidate that leaves the one-class plateau on the most
   tasks, then with the highest mean dev MCC, is used for every NucEL arm. (Random initialisation is the arm that
   needs it: in the previous version of this study, a random tiny NucEL stayed on tf/0's ln 2 plateau for 1,000
   steps at 1e-3 and 3e-3 with linear decay, where the pre-trained encoders and the CNN left it within 200.) Runs
   are long (up to `max_steps`) and stop when the validation loss has not improved for `early_stopping_steps` steps
   after leaving the plateau (training/finetune.py: PatienceAfterPlateau); the checkpoint with the lowest validation
   loss is kept.
3. **Main pre-training, three seeds per arm, two budgets at equal training FLOPs** (benchmarks/flops.py; the
   generator counted): RTD (the chosen recipe), MLM (the chosen recipe) at the small and the 4× larger budget, and
   the generator-free control (the chosen RTD recipe with uniformly random replacements) at the small one.
   Validation windows come from held-out blocks spread over the genome; the same figures are also computed on
   another species (yeast) as an out-of-distribution check.
4. **Downstream.** Every arm (each pre-training seed's encoder, random initialisation with the same seeds, the one-hot
   CNN with its own tuned settings and room to converge, `cnn_downstream`) fine-tuned once per seed on each task and
   scored on the whole test split; probes of every layer of every encoder (layer and regularisation chosen on dev).
   Paired differences RTD − MLM, RTD − control, RTD − random and MLM − random per task and averaged, with 95 %
   intervals by a hierarchical bootstrap over pre-training seeds, fine-tuning seeds and test rows
   (benchmarks/paired_differences.py).

Each unit of work is a job (a subprocess, `--job SPEC`) whose result is a JSON file in
`benchmarks/results/pretraining_study_jobs/`, committed with the report; a finished job is reused while its spec is
unchanged, pre-training jobs resume from their last checkpoint, and the report is rewritten after every job, so the
study can be stopped at any moment and started again with the same command, on this machine or another. The work
folder (pre-training runs, logs) may be lost with its machine: an encoder that unfinished jobs still need is then
pre-trained again, and its weights must equal the first run's (the checksum in its result).
"""

import argparse
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

from nucel.benchmarks.study_jobs import (
    JobRunner,
    export_folder,
    run_job_in_process,
    training_flops_per_step,
)
from nucel.benchmarks.study_plan import (
    COMPARISONS,
    CONTROL,
    DEFAULT_FASTA,
    DEFAULT_GUE,
    DEFAULT_OOD_FASTA,
    DISCRIMINATOR_PRESET,
    PRETRAINED_ARMS,
    QUICK,
    SHARED_DATA,
    SWEEP_SEED,
    TASKS,
    Budget,
)
from nucel.core.files import REPOSITORY


class Study:
    """The study's plan (every job's name and spec, from the finished results) and its run."""

    pretrained_arms = PRETRAINED_ARMS
    comparisons = COMPARISONS

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.budget = QUICK if args.quick else Budget()
        if args.tasks:
            self.budget = replace(self.budget, tasks=tuple(args.tasks))
        self.work_dir = Path(args.work_dir).resolve()
        self.output = Path(args.output)
        self.fasta = [str(Path(f).resolve()) for f in args.fasta]
        self.ood_fasta = [str(Path(f).resolve()) for f in args.ood_fasta]
        self.data = str(Path(args.data).resolve())
        self.started = time.time()
        self.runner = JobRunner(
            self.output / "pretraining_study_jobs",
            self.work_dir,
            {
                "{work_dir}": self.work_dir,
                "{shared}": SHARED_DATA.parent.resolve(),
                "{repository}": REPOSITORY.resolve(),
            },
            args.workers,
            args.threads,
            self.record,
            run_missing=not args.report_only,
            reuse_processes=args.quick,
        )
        self.results: dict[str, dict] = {}
        self.status = "running"

    def record(self, name: str, result: dict, ran: bool) -> None:
        """A job's result; the report is rewritten when a job has just run (reused ones wait for the next)."""
        self.results[name] = result
        if ran:
            self.write()

    # -- pre-training ------------------------------------------------------------------------------------------

    def budget_flops(self, budget: str) -> float:
        steps = self.budget.small_steps * (self.budget.large_factor if budget == "large" else 1)
        return training_flops_per_step({})["per_step"] * steps

    def pretraining(self, folder: Path, recipe: dict, budget: str, seed: int) -> dict:
        """The overrides of one pre-training run: `recipe` for as many steps as the budget's FLOPs buy."""
        steps = round(self.budget_flops(budget) / training_flops_per_step(recipe)["per_step"])
        return {
            "fasta": self.fasta,
            "output_dir": str(folder),
            "report_to": "none",
            **recipe,
            "max_steps": steps,
            "eval_every": max(1, steps // self.budget.validations),
            "eval_windows": self.budget.eval_windows,
            "log_every": max(1, min(50, steps // self.budget.validations)),
            "seed": seed,
            "validation_block_length": self.budget.validation_block_length,
            "ood_validation_fasta": self.ood_fasta,
            "save_every": self.budget.save_every,
            "keep_checkpoints": 1,
        }

    def sweep_runs(self) -> list[tuple[str, str, Path]]:
        """(job name, objective, run folder) of every sweep setting."""
        return [
            (f"sweep_{objective}{index}", objective, self.work_dir / "sweep" / f"{objective}{index}")
            for objective, settings in self.budget.sweeps.items()
            for index in range(len(settings))
        ]

    def sweep_jobs(self) -> list[tuple[str, dict]]:
        return [
            (name, {"kind": "pretrain", "overrides": self.pretraining(folder, recipe, "small", SWEEP_SEED)})
            for (name, objective, folder), (_, recipe) in zip(
                self.sweep_runs(), [s for settings in self.budget.sweeps.values() for s in settings]
            )
        ]

    def probe_spec(self, model: str, seed: int, split: str = "test") -> dict:
        return {
            "kind": "probe",
            "model": model,
            "seed": seed,
            "tasks": list(self.budget.tasks),
            "data": self.data,
            "train_examples": self.budget.probe_train_examples,
            "dev_examples": self.budget.probe_dev_examples,
            "score": split,
        }

    def sweep_probe_jobs(self) -> list[tuple[str, dict]]:
        return [
            (f"probe_{name}", self.probe_spec(export_folder(folder, objective), SWEEP_SEED, "dev"))
            for name, objective, folder in self.sweep_runs()
            if name in self.results
        ]

    def chosen_recipe(self, objective: str) -> tuple[str, dict] | None:
        """The recipe with the highest mean dev probe MCC; None until every setting of the sweep is probed."""
        from nucel.benchmarks.study_report import mean_dev_mcc

        settings = self.budget.sweeps[objective]
        scores = [mean_dev_mcc(self.results.get(f"probe_sweep_{objective}{i}")) for i in range(len(settings))]
        if any(score is None for score in scores):
            return None
        return settings[max(range(len(settings)), key=lambda i: scores[i])]

    def arm_recipe(self, arm: str) -> dict | None:
        chosen = self.chosen_recipe("mlm" if arm == "mlm" else "rtd")
        if chosen is None:
            return None
        return {**chosen[1], **CONTROL} if arm == "control" else chosen[1]

    def pretrain_jobs(self, budgets: tuple[str, ...]) -> list[tuple[str, dict]]:
        jobs = []
        for seed in self.budget.seeds:
            for arm, arm_budgets in PRETRAINED_ARMS.items():
                recipe = self.arm_recipe(arm)
                for budget in (b for b in arm_budgets if b in budgets):
                    if recipe is not None:
                        key = f"{arm}-{budget}"
                        folder = self.work_dir / "pretrain" / f"{key}-seed{seed}"
                        spec = {"kind": "pretrain", "overrides": self.pretraining(folder, recipe, budget, seed)}
                        jobs.append((f"pretrain_{key}_seed{seed}", spec))
        return jobs

    # -- fine-tuning -------------------------------------------------------------------------------------------

    def finetune_spec(self, model: str, task: str, seed: int, recipe: dict, split: str = "test") -> dict:
        return {
            "kind": "finetune",
            "model": model,
            "task": task,
            "seed": seed,
            "data": self.data,
            "recipe": recipe,  # overrides of the model's own settings (task_settings; the CNN's are its tuned ones)
            "score": split,
            "max_train_samples": self.budget.max_train_samples,
            "max_validation_samples": self.budget.max_validation_samples,
        }

    def finetune_search_jobs(self) -> list[tuple[str, dict]]:
        b = self.budget
        return [
            (
                f"ftsearch{index}_{slug(task)}",
                self.finetune_spec(f"random:{DISCRIMINATOR_PRESET}", task, SWEEP_SEED, {**b.finetune_base, **c}, "dev"),
            )
            for index, (_, c) in enumerate(b.finetune_candidates)
            for task in b.tasks
        ]

    def chosen_finetuning(self) -> tuple[str, dict] | None:
        """(label, recipe) of the search's best candidate once every search run has finished; the recipe is the one
        the downstream runs use: the candidate with the downstream step limit."""
        from nucel.benchmarks.study_report import finetune_search_rows

        rows = finetune_search_rows(self)
        if not rows or any(row["finished"] < len(self.budget.tasks) for row in rows):
            return None
        best = max(rows, key=lambda row: (row["left_plateau"], row["mean_dev"]))
        b = self.budget
        return best["setting"], {**b.finetune_base, **best["overrides"], **b.finetune_downstream}

    def models(self, seed: int) -> dict[str, str]:
        """Arm key ("rtd-small", ..., "random", "cnn") -> the model its fine-tuning run with this seed starts from."""
        models = {
            f"{arm}-{budget}": export_folder(self.work_dir / "pretrain" / f"{arm}-{budget}-seed{seed}", arm)
            for arm, budgets in PRETRAINED_ARMS.items()
            for budget in budgets
        }
        return {**models, "random": f"random:{DISCRIMINATOR_PRESET}", "cnn": "cnn"}

    def downstream_jobs(self, budget: str, seed: int) -> list[tuple[str, dict]]:
        """One seed's fine-tuning runs and probes of the arms at `budget` (a phase each: a study stopped early has
        every arm and task for its first seeds, and a new machine rebuilds only the encoders of the seed at hand)."""
        chosen = self.chosen_finetuning()
        jobs = []
        for key, model in self.models(seed).items():
            pretrained = key not in ("random", "cnn")
            # random init and the CNN cost no pre-training: they run beside the small budget's arms
            if (key.rsplit("-", 1)[1] if pretrained else "small") != budget:
                continue
            if pretrained and f"pretrain_{key}_seed{seed}" not in self.results:
                continue
            if key != "cnn":
                jobs.append((f"probe_{key}_seed{seed}", self.probe_spec(model, seed)))
            if chosen is None and key != "cnn":
                continue
            recipe = self.budget.cnn_downstream if key == "cnn" else chosen[1]
            for task in self.budget.tasks:
                jobs.append((f"finetune_{key}_{slug(task)}_seed{seed}", self.finetune_spec(model, task, seed, recipe)))
        return jobs

    # -- running -----------------------------------------------------------------------------------------------

    def phases(self) -> list[tuple[str, callable]]:
        """The study's phases in order; each is (what it does, a function giving its jobs from the results so far)."""
        downstream = self.downstream_jobs
        return [
            ("sweeps: pre-training", self.sweep_jobs),
            ("sweeps: dev probes", self.sweep_probe_jobs),
            (
                "small budget: pre-training (3 arms × seeds); fine-tuning search",
                lambda: self.pretrain_jobs(("small",)) + self.finetune_search_jobs(),
            ),
            *(
                (
                    f"small budget, seed {seed}: fine-tuning and probes; random init; CNN",
                    partial(downstream, "small", seed),
                )
                for seed in self.budget.seeds
            ),
            ("large budget: pre-training", lambda: self.pretrain_jobs(("large",))),
            *(
                (f"large budget, seed {seed}: fine-tuning and probes", partial(downstream, "large", seed))
                for seed in self.budget.seeds
            ),
        ]

    def missing_encoders(self, unfinished: list[tuple[str, dict]]) -> dict[str, tuple[str, dict]]:
        """{encoder folder: its pre-training job} of the encoders that `unfinished` jobs need and the work folder
        lacks (a new machine): their pre-training jobs have finished, so they are rebuilt, not run."""
        producers = {}
        for name, spec in self.sweep_jobs() + self.pretrain_jobs(("small", "large")):
            overrides = spec["overrides"]
            producers[export_folder(overrides["output_dir"], overrides.get("objective", "rtd"))] = (name, spec)
        return {
            spec["model"]: producers[spec["model"]]
            for _, spec in unfinished
            if spec["kind"] != "pretrain" and spec["model"] in producers and not Path(spec["model"]).is_dir()
        }

    def planned(self) -> list[str]:
        return [name for _, jobs in self.phases() for name, _ in jobs()]

    def write(self) -> None:
        """pretraining_study.{json,md,png} under --output, each replaced whole."""
        from nucel.benchmarks.study_markdown import markdown, plot
        from nucel.benchmarks.study_report import build_report
        from nucel.core.files import write_json_atomically, write_text_atomically

        report = build_report(self)
        self.output.mkdir(parents=True, exist_ok=True)
        write_json_atomically(self.output / "pretraining_study.json", report)
        write_text_atomically(self.output / "pretraining_study.md", markdown(report))
        try:
            plot(report, self.output / ".pretraining_study.tmp.png")
            (self.output / ".pretraining_study.tmp.png").replace(self.output / "pretraining_study.png")
        except Exception as error:  # a plot failure must not lose the tables
            print(f"[study] plot failed: {error}", flush=True)

    def check_inputs(self) -> None:
        from nucel.benchmarks.registry import load_suite

        for path in self.fasta + self.ood_fasta:
            if not Path(path).is_file():
                raise FileNotFoundError(f"--fasta/--ood-fasta {path}: no such file")
        if not Path(self.data).is_dir():
            raise FileNotFoundError(f"--data {self.data}: no such folder (the GUE data root)")
        suite = load_suite("gue")
        for task in self.budget.tasks:
            suite.task(task)  # an unknown task is one line naming the nearest, before any job runs

    def run(self) -> None:
        self.check_inputs()
        try:
            for label, phase_jobs in self.phases():
                jobs = phase_jobs()
                unfinished = [(name, spec) for name, spec in jobs if self.runner.cached(name, spec) is None]
                print(f"[study] {label}: {len(jobs)} jobs, {len(jobs) - len(unfinished)} finished before", flush=True)
                if self.runner.run_missing:
                    missing = self.missing_encoders(unfinished)
                    rebuilt = self.runner.rebuild_all(list(missing.values()))
                    lost = {model for model, (name, _) in missing.items() if name not in rebuilt}
                    jobs = [(name, spec) for name, spec in jobs if spec.get("model") not in lost]
                self.runner.run_all(jobs)
        finally:
            self.runner.close()
        missing = [name for name in self.planned() if name not in self.results]
        self.status = (
            "finished"
            if not missing
            else f"stopped with {len(missing)} planned jobs unfinished (and the jobs that depend on them); run the "
            "command again to continue (finished jobs are reused)"
        )
        self.write()


def slug(task: str) -> str:
    return task.replace("/", "_")


def add_arguments(parser) -> None:
    parser.description = __doc__
    parser.add_argument("--quick", action="store_true", help="a few minutes: tiny budgets, one task (tf/0), two seeds")
    parser.add_argument("--fasta", nargs="+", default=[str(DEFAULT_FASTA)], help="pre-training genome FASTA(.gz)")
    parser.add_argument(
        "--ood-fasta", nargs="+", default=[str(DEFAULT_OOD_FASTA)], help="another species' genome, validation only"
    )
    parser.add_argument("--data", default=str(DEFAULT_GUE), help="the GUE data root")
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        help="folder for pretraining_study.{md,json,png} and the finished jobs' results, pretraining_study_jobs/ "
        "(default: benchmarks/results; with --quick, the work folder)",
    )
    parser.add_argument(
        "--work-dir",
        default=None,
        help="pre-training runs, job specs and logs: what a new machine may lose (default: "
        "runs/pretraining-study[-quick])",
    )
    parser.add_argument("--workers", type=int, default=2, help="jobs at a time (2 on a 2-core CPU)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--tasks", nargs="+", help=f"GUE tasks (default: {' '.join(TASKS)})")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite the report from the finished jobs' results; run nothing",
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
    if args.output is None:
        args.output = args.work_dir if args.quick else str(REPOSITORY / "benchmarks" / "results")
    study = Study(args)
    study.run()
    print(f"[study] {study.status}; report: {study.output / 'pretraining_study.md'}")
