"""Finding, loading and saving models: a local folder or a Hub id, resolved once; checkpoints loaded whole or refused;
devices; model folders saved whole (code files, complete auto_map, tokenizer, records).
"""

import json
import re
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers.utils import logging as transformers_logging

from nucel.core.files import atomic_folder
from nucel.modeling_nucel import NucELModel
from nucel.tokenization import build_tokenizer, load_tokenizer, save_tokenizer

# What a model folder needs from a Hub repository (weights, configs, tokenizer, code); never its other files.
MODEL_FILES = ["*.json", "*.safetensors", "*.bin", "*.py", "*.txt", "*.model"]
# A Hub repository id as the Hub spells it: "name" (a few canonical models) or "owner/name".
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def is_repository_id(name: str) -> bool:
    """ "owner/name": what a user's repository (a release, a fine-tune's base) is called on the Hub."""
    return bool(HUB_ID.fullmatch(name)) and name.count("/") == 1


DEVICE = re.compile(r"(cpu|cuda|mps)(:\d+)?")


def available_devices() -> list[str]:

    devices = ["cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    return devices + (["mps"] if torch.backends.mps.is_available() else [])


def default_device(device: str | None = None) -> str:
    """`device` checked against what this torch can use (one line naming the devices it has, instead of torch's
    assertion deep in a model's `.to`); None: cuda when available, else cpu."""

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    match = DEVICE.fullmatch(device)
    if match is None:
        raise ValueError(
            f"--device {device}: not a device; give cpu, cuda, cuda:N or mps (this machine has: "
            f"{', '.join(available_devices())})"
        )
    kind, index = match[1], int(match[2][1:]) if match[2] else 0
    usable = {"cpu": True, "cuda": index < torch.cuda.device_count(), "mps": torch.backends.mps.is_available()}[kind]
    if not usable:
        raise ValueError(
            f"--device {device}: this torch cannot use it (built without it, or no such device); this "
            f"machine has: {', '.join(available_devices())}"
        )
    return device


def resolve_model_folder(name_or_path: str | Path) -> Path:
    """A local model folder as it is; a Hub id as its snapshot folder, downloaded or, with HF_HUB_OFFLINE=1, taken
    from the local Hugging Face cache. Anything else is an error saying "no such model folder or Hub id"."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(
            f"{path} is a file; a model is a folder (config.json, model.safetensors, ...) or a Hub id"
        )
    name = str(name_or_path)
    reason = ""
    if HUB_ID.fullmatch(name):
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import HFValidationError

        try:
            return Path(snapshot_download(name, allow_patterns=MODEL_FILES))
        except (HFValidationError, OSError) as error:  # not on the Hub, not in the cache, or no connection
            reason = (
                " (not in the local Hugging Face cache, and HF_HUB_OFFLINE=1 keeps the Hub off)"
                if constants.HF_HUB_OFFLINE
                else f" (the Hub has no such repository, or it cannot be reached: {type(error).__name__})"
            )
    raise FileNotFoundError(f"{name}: no such model folder or Hub id{reason}")


@contextmanager
def quiet_loading():
    """No load report (it lists the unused heads of a checkpoint, which are expected) and no "Loading weights" bar
    while a model loads: a command's own progress bar is the one to read."""
    verbosity, bar = transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if bar:
            transformers_logging.enable_progress_bar()


def load_checked(model_class, name_or_path: str | Path, device: str | None = None):
    """`model_class.from_pretrained` in eval mode on `device`, refusing a checkpoint that lacks some of the
    model's weights (transformers would initialise them at random and go on: garbage scores, no error).
    Weights the class does not use (another task's head) are dropped silently."""
    folder = resolve_model_folder(name_or_path)
    with quiet_loading():
        model, info = model_class.from_pretrained(folder, output_loading_info=True)
    if info["missing_keys"]:
        missing = ", ".join(sorted(info["missing_keys"])[:4])
        raise ValueError(f"{name_or_path} is not a {model_class.__name__} checkpoint: it has no weights for {missing}")
    return model.to(default_device(device)).eval()


def load_encoder(name_or_path: str | Path, device: str | None = None):
    """The encoder (`NucELModel`) and tokenizer of any NucEL folder or Hub id: an encoder, a generator, a
    classifier or a pre-training checkpoint (its discriminator). Returned in eval mode on `device`."""
    return load_checked(NucELModel, name_or_path, device), load_tokenizer(resolve_model_folder(name_or_path))


def save_model_folder(model, folder: str | Path, tokenizer=None, records: dict[str, dict] | None = None) -> Path:
    """Save a NucEL model with its code files, complete auto_map and the tokenizer, atomically; `records`: JSON
    files that describe the model (pretraining.json, finetune.json), written into the folder with it.

    The folder loads through the Auto classes with `trust_remote_code=True`, and as native ModernBERT without it.
    """
    with atomic_folder(folder) as staging:
        model.save_pretrained(staging)
        save_tokenizer(tokenizer if tokenizer is not None else build_tokenizer(), staging)
        for name, record in (records or {}).items():
            (staging / name).write_text(json.dumps(record, indent=2) + "\n")
    return Path(folder)
