"""What a release folder holds and what it may not: the files of each kind of release, benchmark results that belong
to the released model only, tokenizer files without machine-local flags, and no local path in any text.
"""

import json
from pathlib import Path

from nucel import modeling_nucel
from nucel.core.classifiers import ADAPTER_CONFIG, TRAINING_LENGTHS, recorded_lengths
from nucel.core.records import FINETUNE_METADATA, PRETRAINING_RECORD
from nucel.model_cards.card_rows import METRICS
from nucel.model_cards.render import SUITES
from nucel.modeling_nucel import (
    NucELModel,
)

REQUIRED_FILES = frozenset(
    {
        "config.json",
        "model.safetensors",
        "configuration_nucel.py",
        "modeling_nucel.py",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
    }
)
# The Hub-facing code files (save_pretrained copies the model file and the files it imports relatively); transformers
# 4.x also writes special_tokens_map.json. Nothing else belongs in a release.
CODE_FILES = frozenset(
    path.name for path in Path(modeling_nucel.__file__).parent.glob("*.py") if path.name != "__init__.py"
)
RELEASE_FILES = REQUIRED_FILES | CODE_FILES | {"special_tokens_map.json", PRETRAINING_RECORD}
# A LoRA adapter release: PEFT's two files, the classifier's record (public part), the tokenizer and the card.
ADAPTER_REQUIRED_FILES = frozenset(
    {
        ADAPTER_CONFIG,
        "adapter_model.safetensors",
        FINETUNE_METADATA,
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
    }
)
# What an adapter release's finetune.json keeps of the fine-tune's besides the base, labels and lengths: the head's
# layout and the LoRA recipe. Data sources, the local base's path and identity stay on the training machine (the
# card names the data files and their checksums).
PUBLIC_FINETUNE_KEYS = (
    "problem_type",
    "pooling",
    "head",
    "method",
    "lora_rank",
    "lora_alpha",
    "lora_dropout",
    "max_length_bp",
)
ADAPTER_RELEASE_FILES = ADAPTER_REQUIRED_FILES | {"special_tokens_map.json"}

# transformers records how a tokenizer was loaded in its saved config: true only on the machine that saved it.
MACHINE_LOCAL_TOKENIZER_KEYS = ("local_files_only", "is_local", "name_or_path", "_name_or_path", "cache_dir", "token")


class ReleaseError(ValueError):
    """A training output that cannot be released as asked; the message says what to change."""


# ----------------------------------------------------------------------------------------------------------------
# Benchmark results: only those of the model being released


def read_results(path: str | Path) -> dict:
    """A benchmark results.json (written by `nucel benchmark`), checked for what the model card reads."""
    path = Path(path)
    results = json.loads(path.read_text())
    if results.get("suite") not in SUITES:
        raise ReleaseError(f"{path}: suite {results.get('suite')!r} is not one of {sorted(SUITES)}")
    for index, task in enumerate(results.get("tasks", [])):
        missing = [key for key in ("task", "metric", "mean", "sd", "values", "split_sizes") if key not in task]
        if missing:
            raise ReleaseError(f"{path}: tasks[{index}] lacks {missing}")
        if task["metric"] not in METRICS:
            raise ReleaseError(
                f"{path}: tasks[{index}] ({task['task']}) has metric {task['metric']!r}, not one of {sorted(METRICS)}"
            )
    return results


def check_results_belong(
    results: dict, path: Path, released: Path, identities: list[str], base_identity: str | None
) -> None:
    """Refuse results whose recorded model identity is not the released model's (its source folder's, or the
    release folder's: the same weights, config and tokenizer benchmarked from the Hub)."""
    recorded = (results.get("model_identity") or {}).get("sha256")
    if recorded is None:
        raise ReleaseError(
            f"{path} records no model identity, so nothing shows it scores {released}: benchmark this model with the "
            f"current nucel benchmark (`nucel benchmark --model {released} ...`) and pass its results.json"
        )
    if recorded not in identities:
        whose = " (they are its base model's: release them with the base model)" if recorded == base_identity else ""
        raise ReleaseError(
            f"{path} holds results of model {results.get('model')!r} (sha256 {recorded[:16]}…), not of {released} "
            f"(sha256 {identities[0][:16]}…){whose}: benchmark this model (`nucel benchmark --model {released} ...`) "
            "and pass that results.json, or leave out --results"
        )


# ----------------------------------------------------------------------------------------------------------------
# Release folder contents


def clean_tokenizer_config(folder: Path) -> None:
    """Drop the loading flags transformers records (`local_files_only`, `is_local`, the local path it was read from):
    on the Hub they are false, and `local_files_only` would stop a user's tokenizer from downloading."""
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    for key in MACHINE_LOCAL_TOKENIZER_KEYS:
        config.pop(key, None)
    path.write_text(json.dumps(config, indent=2) + "\n")


def write_adapter_config(folder: Path, base_model: str) -> None:
    """PEFT writes the base path the adapter was trained on (a local folder): a Hub user's PEFT loads the base from
    this field, so it must be the base's Hub id."""
    path = folder / ADAPTER_CONFIG
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = base_model
    path.write_text(json.dumps(config, indent=2) + "\n")


def write_adapter_finetune_metadata(folder: Path, finetune: dict, base_model: str, label_names: list[str]) -> None:
    """The public finetune.json of an adapter release: what `load_finetuned` needs to rebuild the classifier on the
    base model's Hub id (label names as released: `--label-names` may have renamed them)."""
    public = {
        "base_model": base_model,
        "base_model_source": "hub",
        "label_names": label_names,
        **{key: finetune[key] for key in PUBLIC_FINETUNE_KEYS if key in finetune},
    }
    public.setdefault("head", "modernbert")  # folders written before the head was a setting had ModernBERT's
    if (lengths := recorded_lengths(finetune)) is not None:
        public[TRAINING_LENGTHS] = lengths
    (folder / FINETUNE_METADATA).write_text(json.dumps(public, indent=2) + "\n")


def check_no_local_paths(text: str, paths: list[Path], where: str = "the model card") -> None:
    """A release is public: it must not reveal where it was built."""
    for path in paths:
        for spelling in {str(path), str(path.resolve())}:
            if len(spelling) > 1 and spelling in text:
                raise ReleaseError(f"{where} would publish the local path {spelling}; remove it from the card facts")


def check_release_texts(folder: Path, paths: list[Path]) -> None:
    for file in sorted(folder.iterdir()):
        if file.suffix in (".json", ".md", ".txt", ".py", ".yaml"):
            check_no_local_paths(file.read_text(encoding="utf-8"), paths, f"{file.name} of the release")


def parameter_counts(model) -> tuple[int, int]:
    if hasattr(model, "peft_config"):
        model = model.get_base_model()
    encoder = model if isinstance(model, NucELModel) else model.model
    return sum(p.numel() for p in model.parameters()), sum(p.numel() for p in encoder.parameters())


def release_files(folder: str | Path) -> list[str]:
    """The files of a release folder, after checking it holds exactly what a release may hold."""
    folder = Path(folder)
    names = sorted(entry.name for entry in folder.iterdir())
    allowed, required = (
        (ADAPTER_RELEASE_FILES, ADAPTER_REQUIRED_FILES) if ADAPTER_CONFIG in names else (RELEASE_FILES, REQUIRED_FILES)
    )
    unexpected = [name for name in names if name not in allowed or not (folder / name).is_file()]
    if unexpected:
        raise ReleaseError(f"{folder} holds {unexpected}, which a release must not contain")
    missing = sorted(required - set(names))
    if missing:
        raise ReleaseError(f"{folder} lacks {missing}")
    return names
