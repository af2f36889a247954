"""Every way a run can be ended ends it cleanly, and what a run writes is readable by others.

SIGTERM (kill, timeout, SLURM's scancel, docker stop) and SIGHUP (a closed terminal) end a command as Ctrl-C does: no
partial file left, one line saying so, the shell's exit code for that signal (128 + its number). Outputs get the
permissions the user's umask gives (0644 files, 0755 folders under umask 022), not the 0600/0700 of staging helpers,
so a colleague or a container with another user id can load a saved model."""

import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from nucel.core.files import atomic_file, atomic_folder, write_json_atomically
from nucel.core.models import save_model_folder
from nucel.modeling_nucel import NucELConfig, NucELModel


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    torch.manual_seed(0)
    return save_model_folder(NucELModel(NucELConfig.from_preset("tiny")), tmp_path_factory.mktemp("models") / "encoder")


def long_fasta(path, bases: int = 400_000):
    sequence = "".join(np.random.default_rng(0).choice(list("ACGT"), bases))
    path.write_text(">chrom\n" + "\n".join(sequence[i : i + 80] for i in range(0, bases, 80)) + "\n")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_ends_a_command_cleanly(encoder, tmp_path, signum):
    fasta, output = long_fasta(tmp_path / "genome.fa"), tmp_path / "bases.npy"
    command = [
        sys.executable,
        "-m",
        "nucel.cli",
        "embed",
        "--model",
        str(encoder),
        str(fasta),
        "-o",
        str(output),
        "--per-base",
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    staging = tmp_path / ".bases.npy.partial"
    deadline = time.monotonic() + 120
    while not staging.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert staging.exists(), "the command never started writing"
    process.send_signal(signum)
    _, error = process.communicate(timeout=120)
    assert process.returncode == 128 + signum
    lines = [line for line in error.splitlines() if line.strip() and "%|" not in line and "it/s" not in line]
    assert lines[-1] == (
        f"nucel embed: interrupted ({signal.Signals(signum).name}); {output} was not written and no "
        "partial file is left; run the command again to start over"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["genome.fa"]


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def modes(folder):
    return {
        path.relative_to(folder).as_posix() or ".": stat.S_IMODE(path.stat().st_mode)
        for path in [folder, *folder.rglob("*")]
    }


def test_outputs_get_the_permissions_the_umask_gives(tmp_path, umask_022):
    torch.manual_seed(0)
    folder = save_model_folder(NucELModel(NucELConfig.from_preset("tiny")), tmp_path / "model")
    found = modes(folder)
    assert found["."] == 0o755 and found["model.safetensors"] == 0o644
    assert all(mode == (0o755 if (folder / name).is_dir() else 0o644) for name, mode in found.items()), found
    write_json_atomically(tmp_path / "record.json", {"a": 1})
    with atomic_file(tmp_path / "table.tsv") as staging:
        staging.write_text("x\n")
        staging.chmod(0o600)  # as a staging helper might leave it
    with atomic_folder(tmp_path / "maps") as staging:
        (staging / "inner").mkdir(mode=0o700)
        (staging / "inner" / "a.npy").write_bytes(b"")
    assert stat.S_IMODE((tmp_path / "record.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "table.tsv").stat().st_mode) == 0o644
    assert set(modes(tmp_path / "maps").values()) == {0o755, 0o644}


def test_a_stricter_umask_is_respected(tmp_path):
    previous = os.umask(0o077)
    try:
        write_json_atomically(tmp_path / "private.json", {})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600
