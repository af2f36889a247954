"""What a benchmarked model is, as a checksum: the key under which finished runs are reused and results are filed.

A folder's name says nothing about its weights (every pre-training run exports `export/discriminator`), so a
checkpoint is identified by the sha256 of its weights files (streamed, each file by name), its config.json and its
tokenizer.json. A randomly initialised NucEL is identified by its preset's full configuration (the CNN baseline by its
architecture: benchmarks/cnn_baseline.py); the seed of each run is recorded beside the identity, in the run's settings.
"""

import hashlib
import json
from pathlib import Path

from nucel.core.files import file_sha256

RANDOM_INIT_PREFIX = "random:"  # `random:tiny`: a randomly initialised NucEL of that preset
# Files whose bytes decide the model's outputs. training_args.bin is a pickle of Trainer arguments, not weights.
WEIGHT_SUFFIXES = (".safetensors", ".bin")
NOT_WEIGHTS = ("training_args.bin",)
DEFINING_FILES = ("config.json", "tokenizer.json")
# Written by transformers into every config; it changes with the library, not the model.
VOLATILE_CONFIG_KEYS = ("transformers_version",)


def combined_sha256(parts: dict[str, str]) -> str:
    """One checksum over named checksums, independent of the order they were computed in."""
    return hashlib.sha256("".join(f"{name}\t{parts[name]}\n" for name in sorted(parts)).encode()).hexdigest()


def json_sha256(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def folder_identity(folder: str | Path, source: str | None = None) -> dict:
    """sha256 of every weights file and of config.json / tokenizer.json of a checkpoint folder."""
    folder = Path(folder)
    names = sorted(
        path.name
        for path in folder.iterdir()
        if path.is_file() and path.name.endswith(WEIGHT_SUFFIXES) and path.name not in NOT_WEIGHTS
    )
    if not names:
        raise FileNotFoundError(f"{folder}: no weights file (*.safetensors or *.bin) to identify the model by")
    files = {name: file_sha256(folder / name) for name in names + [n for n in DEFINING_FILES if (folder / n).is_file()]}
    return {"kind": "checkpoint", "source": source or str(folder), "files": files, "sha256": combined_sha256(files)}


def random_identity(preset: str) -> dict:
    """A randomly initialised NucEL: its preset's configuration (the weights then follow from the run's seed)."""
    from nucel.modeling_nucel import NucELConfig

    config = NucELConfig.from_preset(preset).to_dict()
    for key in VOLATILE_CONFIG_KEYS:
        config.pop(key, None)
    return {"kind": "random", "preset": preset, "sha256": json_sha256(config)}


def hub_identity(model_id: str) -> dict:
    """A Hub model: the files of its local snapshot (downloaded once, as fine-tuning would anyway)."""
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(model_id, allow_patterns=["*.safetensors", *DEFINING_FILES]))
    if not any(folder.glob("*.safetensors")):  # an older repository with PyTorch pickles only
        folder = Path(snapshot_download(model_id, allow_patterns=["*.bin", *DEFINING_FILES]))
    return folder_identity(folder, source=model_id)


def model_identity(name_or_path: str) -> dict:
    """The identity of what fine-tuning or a benchmark starts from: `random:<preset>`, a local folder or a Hub id."""
    if name_or_path.startswith(RANDOM_INIT_PREFIX):
        return random_identity(name_or_path[len(RANDOM_INIT_PREFIX) :])
    if Path(name_or_path).is_dir():
        return folder_identity(name_or_path)
    return hub_identity(name_or_path)
