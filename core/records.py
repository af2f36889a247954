"""The records a model folder carries beside its weights (pretraining.json, finetune.json), and what a pre-training
run records (log.jsonl).

A fine-tune writes `finetune.json` (training/finetune.py): its base model and the base's identity, the settings, each
split's file, rows, labels and checksum, the selection history and the test scores; an adapter release carries its
public part, what rebuilding the classifier needs.

A run writes `log.jsonl` (one JSON object per logging step, validation and probe) into its folder. At export, each
model folder (`export/discriminator`, `export/generator`, ...) gets `pretraining.json`: the recipe, the data's
identity (file names and sha256; the built-in genome said to be built in), the steps trained and the figures of the
last validation and probe. A folder so describes itself wherever it is moved or copied; release, the BRCA1 report,
the study and the model card all read it with `read_pretraining_record`. Folders exported before the record existed
are still read, from the run folder they sit in (`<run>/export/<part>`).
"""

import json
from pathlib import Path

from nucel.core.files import file_sha256

RUN_LOG = "log.jsonl"
PRETRAINING_RECORD = "pretraining.json"
FINETUNE_METADATA = "finetune.json"
RECORD_FORMAT = 1  # the layout of both records ("format" in each); raised when a field changes meaning
BUILTIN_GENOME = "builtin"  # PretrainingConfig's name for the genome that ships with the package


def read_record(path: Path) -> dict:
    """A model folder's record; one written by a newer package than this one is refused (its fields may mean
    something else). Records written before formats were numbered count as format 0."""
    record = json.loads(Path(path).read_text())
    if record.get("format", 0) > RECORD_FORMAT:
        raise ValueError(
            f"{path}: record format {record['format']} is newer than this package reads ({RECORD_FORMAT}); "
            "upgrade nucel"
        )
    return record


def read_run_log(run: Path) -> list[dict]:
    """Every record of a run's log.jsonl, in order; [] when the run has logged nothing yet."""
    log = Path(run) / RUN_LOG
    if not log.is_file():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def genome_files(config: dict) -> list[dict]:
    """The run's genome: the built-in one by its length, each FASTA by its name and sha256 (its local folder is
    not part of its identity, and not for a public record)."""
    files = []
    for name in config.get("fasta") or []:
        if name == BUILTIN_GENOME:
            files.append({"builtin": True, "length": config.get("builtin_genome_length")})
            continue
        path = Path(name).expanduser()
        files.append({"builtin": False, "name": path.name, "sha256": file_sha256(path) if path.is_file() else None})
    return files


def probe_scores(records: list[dict]) -> dict:
    """Per probe task, its MCC at the first probe (step 0: the untrained or initial model) and at the last."""
    scores = {}
    for record in records:
        for key, value in record.items():
            if key.startswith("probe_mcc/"):
                task = key.removeprefix("probe_mcc/")
                scores.setdefault(task, {"first_step": record["step"], "first": value})
                scores[task].update(last_step=record["step"], last=value)
    return scores


def validation_series(records: list[dict], prefix: str = "validation_") -> list[dict]:
    """The figures of every validation, `prefix` removed: [{"step": s, "loss": ..., ...}, ...]; "ood_validation_":
    those of the out-of-distribution genome."""
    return [
        {
            "step": record["step"],
            **{key.removeprefix(prefix): value for key, value in record.items() if key.startswith(prefix)},
        }
        for record in records
        if f"{prefix}loss" in record
    ]


def public_recipe(config: dict) -> dict:
    """The run configuration as a recipe others can run: local folders and files reduced to their names."""
    public = {key: value for key, value in config.items() if key not in ("output_dir", "cache_dir")}
    public["fasta"] = [name if name == BUILTIN_GENOME else Path(name).name for name in config.get("fasta") or []]
    public["probe_tasks"] = [Path(folder).name for folder in config.get("probe_tasks") or []]
    for key in ("init_from", "init_generator_from"):
        if config.get(key):
            public[key] = Path(config[key]).name
    return public


def pretraining_record(run: Path, config: dict, part: str) -> dict:
    """The record of `part` (discriminator, generator, encoder, ...) of the run in folder `run`, trained with
    `config` (PretrainingConfig as a dict): what `pretraining.json` holds."""
    records = read_run_log(run)
    training = [record for record in records if "loss" in record]
    series = validation_series(records)
    ood = validation_series(records, "ood_validation_")
    start = next((record for record in records if "windows" in record), {})
    return {
        "format": RECORD_FORMAT,
        "part": part,
        "run": Path(run).name,
        "objective": config.get("objective"),
        "recipe": public_recipe(config),
        "data": genome_files(config),
        "windows": start.get("windows"),
        "num_processes": start.get("num_processes"),
        "max_steps": start.get("max_steps"),
        "steps": training[-1]["step"] if training else 0,
        "validation": series[-1] if series else None,
        "validation_series": series,
        "ood_validation": ood[-1] if ood else None,
        "ood_validation_series": ood,
        "probes": probe_scores(records),
    }


def legacy_run_folder(folder: Path) -> Path | None:
    """The run folder of a model exported before pretraining.json existed: `<run>/export/<part>/` beside
    `<run>/log.jsonl`; None for a folder elsewhere."""
    folder = Path(folder).resolve()
    run = folder.parent.parent
    return run if folder.parent.name == "export" and (run / RUN_LOG).is_file() else None


def legacy_config(run: Path) -> dict | None:
    """The configuration an older run saved with its newest checkpoint."""
    states = sorted((Path(run) / "checkpoints").glob("step-*/trainer_state.json"))
    return json.loads(states[-1].read_text())["config"] if states else None


def read_pretraining_record(folder: str | Path, run: str | Path | None = None) -> dict | None:
    """The pre-training record of a model folder: its own pretraining.json, or for an older export the record
    rebuilt from the run it sits in (or from `run`, when the folder was moved). None for a model that records no
    pre-training (an imported checkpoint, a random initialisation)."""
    folder = Path(folder)
    if run is None and (folder / PRETRAINING_RECORD).is_file():
        return read_record(folder / PRETRAINING_RECORD)
    run = Path(run) if run is not None else legacy_run_folder(folder)
    if run is None:
        return None
    if not (run / RUN_LOG).is_file():
        raise FileNotFoundError(
            f"{run} is not a pre-training run folder: it has no {RUN_LOG} (written by nucel pretrain)"
        )
    config = legacy_config(run)
    return pretraining_record(run, config or {}, folder.name) | ({} if config else {"recipe": None, "data": []})
