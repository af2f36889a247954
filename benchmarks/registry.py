"""The benchmark task registry: one YAML file per suite under `benchmarks/tasks/`, read into `Task` objects.

The YAML files are the single source of each task's metric, number of labels, maximum length, seeds,
hyper-parameters (the language models' and the one-hot CNN baseline's, which are separate), the suite's
evaluation protocol and how its paper averages the tasks, so a published number can be traced to the exact
settings that produced it.
"""

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

TASKS_FOLDER = Path(__file__).resolve().parent / "tasks"
SUITES = ("gue", "genomic_benchmarks", "nucleotide_transformer")
PROTOCOLS = ("given_validation", "carved_validation", "cross_validation")
AVERAGES_OVER = ("groups", "tasks")
# Every key a task's hyper-parameters may hold: all are FinetuneSettings fields, so a typo in a YAML file is an
# error when the registry is read, not a setting silently ignored.
HYPERPARAMETER_KEYS = frozenset(
    {
        "learning_rate",
        "batch_size",
        "epochs",
        "max_steps",
        "eval_steps",
        "warmup_steps",
        "weight_decay",
        "early_stopping_patience",
        "lr_scheduler",
        "head",
    }
)
# The hyper-parameters `nucel benchmark` can override for every model (`--learning-rate`, ...), and their types.
OVERRIDABLE = (
    "learning_rate",
    "batch_size",
    "epochs",
    "max_steps",
    "eval_steps",
    "warmup_steps",
    "early_stopping_patience",
    "head",
)
OPTION_TYPES = {"learning_rate": float, "epochs": float, "head": str}  # the others are integers


@dataclass(frozen=True)
class Task:
    suite: str
    name: str  # e.g. "tf/0" (GUE, also its folder), "human_nontata_promoters" (GB), "H3K4me3" (NT)
    group: str  # the paper's grouping for averages (GUE: "TF-H", ...)
    metric: str  # "mcc", "accuracy" or "f1_macro"
    num_labels: int
    label_names: tuple[str, ...]  # label id i is named label_names[i]
    max_length_bp: int
    seeds: tuple[int, ...]
    hyperparameters: dict = field(hash=False)  # language models: suite defaults merged with the task's own
    cnn_hyperparameters: dict = field(hash=False, default_factory=dict)  # the one-hot CNN baseline's own, tuned
    # Rows of one split found verbatim in another, per pair ("train/validation": 358), as counted on the published
    # data: selecting on a validation split that repeats training rows rewards memorisation.
    overlapping_splits: dict = field(hash=False, default_factory=dict)


@dataclass(frozen=True)
class Protocol:
    """How the runs of a task are made and summarised, as the suite's publication does it."""

    kind: str  # "given_validation" (GUE dev.csv), "carved_validation" (GB), "cross_validation" (NT)
    description: str  # the protocol in words, with its source
    folds: int | None = None  # cross_validation: number of folds of the training set
    fold_seed: int | None = None  # cross_validation: the numpy seed of the permutation the folds are cut from
    error_bar_sd: int = 1  # the published error bar in standard deviations over runs (NT: mean ± 2 sd)


@dataclass(frozen=True)
class SuiteAverage:
    """How the suite's paper averages its tasks into one number."""

    over: str  # "groups": mean of the listed groups' averages; "tasks": mean over the tasks of the listed groups
    groups: tuple[str, ...]  # groups that enter the average; tasks of other groups are reported but left out
    description: str  # e.g. "mean of the 7 group averages (TF-H, PD, CPD, SSP, TF-M, EMP, CVC)"


@dataclass(frozen=True)
class Suite:
    name: str
    title: str
    metric: str
    seeds: tuple[int, ...]
    validation: str  # where the validation split comes from
    validation_fraction: float | None  # set where validation is carved from train
    validation_seed: int | None
    hub_dataset: str | None
    protocol: Protocol
    average: SuiteAverage  # how the paper averages the tasks into its suite number
    paper: dict = field(hash=False)  # the paper's NucEL numbers: suite_average and, where given, groups
    tasks: tuple[Task, ...] = ()

    def task(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        names = [task.name for task in self.tasks]
        nearest = difflib.get_close_matches(name, names, n=3, cutoff=0.4)
        hint = f"did you mean {' or '.join(nearest)}?" if nearest else f"its tasks are {', '.join(names)}"
        raise ValueError(f"suite {self.name!r} has no task {name!r}: {hint}")

    def averaged_tasks(self) -> list[Task]:
        """The tasks that enter the paper's suite average."""
        return [task for task in self.tasks if task.group in self.average.groups]


def checked_hyperparameters(values: dict, where: str) -> dict:
    unknown = sorted(set(values) - HYPERPARAMETER_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown hyper-parameter(s) {unknown}; known: {sorted(HYPERPARAMETER_KEYS)}")
    return dict(values)


def read_protocol(spec: dict, path: Path, seeds: tuple[int, ...]) -> Protocol:
    protocol = Protocol(**spec)
    if protocol.kind not in PROTOCOLS:
        raise ValueError(f"{path}: protocol kind {protocol.kind!r} is not one of {PROTOCOLS}")
    if protocol.kind == "cross_validation" and (
        protocol.folds is None or protocol.fold_seed is None or protocol.folds != len(seeds)
    ):
        raise ValueError(
            f"{path}: cross_validation needs folds and fold_seed, and one training seed per fold ({len(seeds)} seeds)"
        )
    return protocol


def read_average(spec: dict, path: Path, groups: set[str]) -> SuiteAverage:
    average = SuiteAverage(over=spec["over"], groups=tuple(spec["groups"]), description=spec["description"])
    if average.over not in AVERAGES_OVER:
        raise ValueError(f"{path}: average over {average.over!r} is not one of {AVERAGES_OVER}")
    if not set(average.groups) <= groups:
        raise ValueError(f"{path}: the average names groups {sorted(set(average.groups) - groups)} that no task has")
    return average


def load_suite(name: str) -> Suite:
    """The suite's registry file parsed and checked."""
    if name not in SUITES:
        raise ValueError(f"unknown benchmark suite {name!r}; choose one of {list(SUITES)}")
    path = TASKS_FOLDER / f"{name}.yaml"
    spec = yaml.safe_load(path.read_text())
    seeds = tuple(spec["seeds"])
    suite_hyperparameters = checked_hyperparameters(spec["hyperparameters"], f"{path} hyperparameters")
    suite_cnn = checked_hyperparameters(spec["cnn_hyperparameters"], f"{path} cnn_hyperparameters")
    tasks = []
    for entry in spec["tasks"]:
        label_names = tuple(entry.get("classes") or (str(i) for i in range(entry["num_labels"])))
        if "num_labels" in entry and entry["num_labels"] != len(label_names):
            raise ValueError(
                f"{path}: task {entry['name']!r} has num_labels {entry['num_labels']} but {len(label_names)} classes"
            )
        where = f"{path} task {entry['name']!r}"
        tasks.append(
            Task(
                suite=name,
                name=entry["name"],
                group=entry["group"],
                metric=entry.get("metric", spec["metric"]),
                num_labels=len(label_names),
                label_names=label_names,
                max_length_bp=entry["max_length_bp"],
                seeds=tuple(entry.get("seeds", seeds)),
                hyperparameters={
                    **suite_hyperparameters,
                    **checked_hyperparameters(entry.get("hyperparameters", {}), where),
                },
                cnn_hyperparameters={
                    **suite_cnn,
                    **checked_hyperparameters(entry.get("cnn_hyperparameters", {}), where),
                },
                overlapping_splits=dict(entry.get("overlapping_splits", {})),
            )
        )
    return Suite(
        name=name,
        title=spec["title"],
        metric=spec["metric"],
        seeds=seeds,
        validation=spec["validation"],
        validation_fraction=spec.get("validation_fraction"),
        validation_seed=spec.get("validation_seed"),
        hub_dataset=spec.get("hub_dataset"),
        protocol=read_protocol(spec["protocol"], path, seeds),
        average=read_average(spec["average"], path, {task.group for task in tasks}),
        paper=spec.get("paper", {}),
        tasks=tuple(tasks),
    )
