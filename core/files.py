"""Files: outputs written atomically (a crash, an error or an interruption never leaves a half-written file or folder
under the final name), with the permissions the user's umask gives (0644 files and 0755 folders under umask 022: a
colleague or a container with another user id can load a saved model), and checksums."""

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent  # the checkout (an installed package has none around it)


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def ordinary_permissions(path: Path) -> None:
    """`path` (and, for a folder, everything in it) readable as the umask allows: staging helpers (mkdtemp, some
    writers' temporary files) create 0700 folders and 0600 files."""
    mask = current_umask()
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        item.chmod((0o777 if item.is_dir() else 0o666) & ~mask)


@contextmanager
def atomic_file(path: str | Path, concurrent: bool = False):
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename. `concurrent`: several
    processes may write the same file at once (each of accelerate's processes building one cache): each stages its
    own copy and the last rename wins."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial" + (f"-{os.getpid()}" if concurrent else ""))
    try:
        yield staging
        ordinary_permissions(staging)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def write_text_atomically(path: str | Path, text: str) -> None:
    with atomic_file(path) as staging:
        staging.write_text(text)


def write_json_atomically(path: str | Path, data) -> None:
    write_text_atomically(path, json.dumps(data, indent=2) + "\n")


@contextmanager
def atomic_folder(folder: str | Path, keep_existing: bool = False):
    """Yield a temporary folder beside `folder`; on success it replaces `folder` in one rename. `keep_existing`:
    a folder that appeared meanwhile (another process building the same cache) is kept and the staged one dropped."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        yield staging
        ordinary_permissions(staging)
        if folder.exists() and keep_existing:
            shutil.rmtree(staging, ignore_errors=True)
        elif folder.exists():
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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def display_path(path: str | Path, follow_links: bool = True) -> str:
    """A path as a reader of a report can follow it: relative to the repository (or to its parent, for
    ../shared/data), absolute only outside both, so that no report names the folders of the machine it ran on.
    `follow_links=False` shows a link inside the repository as itself, not as where it points."""
    path = Path(path).resolve() if follow_links else Path(os.path.abspath(path))
    for root, prefix in ((REPOSITORY, ""), (REPOSITORY.parent, "../")):
        if path.is_relative_to(root):
            return prefix + str(path.relative_to(root))
    return str(path)
