"""Files: outputs written atomically (a crash never leaves a half-written file or checkpoint under the final name),
model folders saved whole, and checksums."""

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from nucel.tokenization.tokenizer import build_tokenizer, save_tokenizer


@contextmanager
def atomic_file(path: str | Path):
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial")
    try:
        yield staging
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def write_json_atomically(path: str | Path, data) -> None:
    with atomic_file(path) as staging:
        staging.write_text(json.dumps(data, indent=2) + "\n")


@contextmanager
def atomic_folder(folder: str | Path):
    """Yield a temporary folder beside `folder`; on success it replaces `folder` in one rename."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        yield staging
        if folder.exists():
            retired = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(folder, retired)
            os.replace(staging, folder)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def save_model_folder(model, folder: str | Path, tokenizer=None) -> Path:
    """Save a NucEL model with its code files, complete auto_map and the tokenizer, atomically.

    The folder loads through the Auto classes with `trust_remote_code=True`, and as native ModernBERT without it.
    """
    with atomic_folder(folder) as staging:
        model.save_pretrained(staging)
        save_tokenizer(tokenizer if tokenizer is not None else build_tokenizer(), staging)
    return Path(folder)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
