"""The benchmark task registry: one YAML file per suite under `benchmarks/tasks/`, read into `Task` objects.

The YAML files are the single source of each task's metric, number of labels, maximum length, seeds and
hyper-parameters, so a published number can be traced to the exact settings that produced it.
"""

from dataclasses import dataclass, field
from pathlib import Path

import yaml

TASKS_FOLDER = Path(__file__).resolve().parent / "tasks"
SUITES = ("gue", "genomic_benchmarks", "nucleotide_transformer")


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
    hyperparameters: dict = field(hash=False)  # suite defaults merged with the task's own


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
    paper: dict = field(hash=False)  # the paper's NucEL numbers: suite_average and, where given, groups
    tasks: tuple[Task, ...] = ()

    def task(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"suite {self.name!r} has no task {name!r}; tasks: {[t.name for t in self.tasks]}")


def load_suite(name: str) -> Suite:
    """The suite's registry file parsed and checked."""
    if name not in SUITES:
        raise ValueError(f"unknown benchmark suite {name!r}; choose one of {list(SUITES)}")
    path = TASKS_FOLDER / f"{name}.yaml"
    spec = yaml.safe_load(path.read_text())
    seeds = tuple(spec["seeds"])
    tasks = []
    for entry in spec["tasks"]:
        label_names = tuple(entry.get("classes") or (str(i) for i in range(entry["num_labels"])))
        if "num_labels" in entry and entry["num_labels"] != len(label_names):
            raise ValueError(f"{path}: task {entry['name']!r} has num_labels {entry['num_labels']} but {len(label_names)} classes")
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
                hyperparameters={**spec["hyperparameters"], **entry.get("hyperparameters", {})},
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
        paper=spec.get("paper", {}),
        tasks=tuple(tasks),
    )
