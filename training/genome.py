"""Genome FASTA -> overlapping windows -> a cached Arrow dataset -> random crops for pre-training.

The paper's recipe (docs/design.md, "The paper's pre-training recipe"): windows of 1224 bp overlapping by 100 bp, and a
random 1024-bp crop of a window each time it is drawn. Around that:

* Long runs of N (assembly gaps, unsequenced ends) cut a record into pieces that are windowed separately, and
  windows that are still mostly N are dropped; both thresholds are settings and every drop is counted.
* Records whose names match `skip_contigs` (by default alternate haplotypes, unplaced and unlocalised scaffolds,
  patches, decoys, EBV and HLA alleles) are not windowed: they duplicate the primary assembly or are not human.
  The records and bases skipped are counted.
* The validation set is held out by genomic region: the last `validation_fraction` of every record, or with
  `validation_block_length` blocks of that length spread along every record (one in every round(1 / fraction)), is
  windowed on its own, so no training window shares a base with a validation window. Validation draws a fixed, seeded
  sample spread over all of these windows (`validation_sample`), so it represents every record, not the first one.
* Windows are written once to Arrow files (memory-mapped `datasets.Dataset`s) under a folder named by a hash of the
  input files and the settings, and reused by later runs. The folder is built under a temporary name and renamed
  when complete, so a failure (bad FASTA, full disk, Ctrl-C) never leaves a cache that a later run would trust.
* A crop is a pure function of (seed, epoch, window index): a resumed or multi-process run sees exactly the data an
  uninterrupted single-process run would.

Coordinates are 0-based, end-exclusive, on the record as written in the FASTA. Sequences are stored upper-case:
soft-masking (lowercase repeats) carries no meaning for the model, whose tokenizer upper-cases anyway.
"""

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import torch

from nucel.core.files import atomic_folder
from nucel.core.sequences import FastaError, read_fasta
from nucel.tokenization import reverse_complement
from nucel.training.pretraining_config import WindowSettings

# Bumped when the windowing rules change, so that caches built by older code are not reused.
CACHE_FORMAT_VERSION = 2
SPLITS = ("train", "validation")
WINDOW_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("record", pa.string()),
        ("start", pa.int64()),
        ("end", pa.int64()),
        ("sequence", pa.string()),
    ]
)
_ROWS_PER_ARROW_BATCH = 1000
_IS_BASE = np.zeros(256, dtype=bool)
_IS_BASE[np.frombuffer(b"ACGTacgt", dtype=np.uint8)] = True


class GenomeDataError(ValueError):
    """Genome input that yields no usable windows; the message names the files and the reason."""


@dataclass
class WindowCounts:
    """What windowing kept and dropped, reported to the user and stored beside the cache."""

    records: int = 0
    bases: int = 0
    n_bases: int = 0  # non-ACGT characters
    n_runs_split: int = 0
    train_windows: int = 0
    validation_windows: int = 0
    dropped_mostly_n: int = 0
    dropped_short: int = 0
    skipped_records: int = 0  # matched `skip_contigs`; not in `records` and `bases`
    skipped_bases: int = 0

    def describe(self) -> str:
        return (
            f"{self.records} records, {self.bases:,} bp ({self.n_bases:,} N); {self.train_windows:,} training and "
            f"{self.validation_windows:,} validation windows; {self.n_runs_split:,} N runs split at, "
            f"{self.dropped_mostly_n:,} windows dropped as mostly N, {self.dropped_short:,} pieces too short; "
            f"{self.skipped_records:,} records ({self.skipped_bases:,} bp) skipped by skip_contigs"
        )


# ----------------------------------------------------------------------------------------------------------------
# Windowing (pure functions of one record)


def long_n_runs(is_base: np.ndarray, min_run: int) -> list[tuple[int, int]]:
    """(start, end) of every run of non-ACGT characters at least `min_run` long."""
    padded = np.concatenate(([True], is_base, [True]))
    changes = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = changes[0::2], changes[1::2]
    return [(int(s), int(e)) for s, e in zip(starts, ends) if e - s >= min_run]


def _pieces_between(start: int, end: int, runs: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """The parts of [start, end) outside the given runs."""
    position = start
    for run_start, run_end in runs:
        if run_end <= start or run_start >= end:
            continue
        if run_start > position:
            yield position, run_start
        position = max(position, run_end)
    if position < end:
        yield position, end


def split_regions(length: int, settings: WindowSettings) -> list[tuple[str, int, int]]:
    """(split, start, end) regions of a record of `length` bases, in order: the last `validation_fraction` held out,
    or blocks of `validation_block_length` bases (shorter in a short record) of which every
    round(1 / validation_fraction)-th, from the middle one of the first such group on, is held out: spread over
    the record, never its end alone."""
    if not settings.validation_block_length or not settings.validation_fraction:
        validation_start = length - int(round(length * settings.validation_fraction))
        return [("train", 0, validation_start), ("validation", validation_start, length)]
    every = max(2, round(1 / settings.validation_fraction))
    # A record shorter than `every` blocks gets shorter blocks, so that it too holds out its share, in its middle.
    block = max(1, min(settings.validation_block_length, length // every))
    regions = []
    for index, start in enumerate(range(0, length, block)):
        split = "validation" if index % every == every // 2 else "train"
        end = min(start + block, length)
        if regions and regions[-1][0] == split:
            regions[-1] = (split, regions[-1][1], end)
        else:
            regions.append((split, start, end))
    return regions


def plan_windows(sequence: str, settings: WindowSettings, counts: WindowCounts) -> list[tuple[str, int, int]]:
    """(split, start, end) of the windows of one record, updating `counts`.

    The record is cut into training and validation regions (`validation_regions`), each cut further at long N
    runs; each piece is tiled from its start with `window_length` windows `stride` apart, the last one ending at the
    piece's end (possibly shorter; dropped below `min_window_length`).
    """
    is_base = _IS_BASE[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]
    length = len(sequence)
    counts.records += 1
    counts.bases += length
    counts.n_bases += int(length - is_base.sum())
    runs = long_n_runs(is_base, settings.split_at_n_run)
    counts.n_runs_split += len(runs)

    windows = []
    for split, region_start, region_end in split_regions(length, settings):
        for piece_start, piece_end in _pieces_between(region_start, region_end, runs):
            for start in range(piece_start, piece_end, settings.stride):
                end = min(start + settings.window_length, piece_end)
                if end - start < settings.min_window_length:
                    counts.dropped_short += 1
                elif 1 - is_base[start:end].mean() > settings.max_n_fraction:
                    counts.dropped_mostly_n += 1
                else:
                    windows.append((split, start, end))
                if end == piece_end:
                    break
    counts.train_windows += sum(1 for split, _, _ in windows if split == "train")
    counts.validation_windows += sum(1 for split, _, _ in windows if split == "validation")
    return windows


# ----------------------------------------------------------------------------------------------------------------
# The on-disk cache


@dataclass
class GenomeWindows:
    """The cached windows: `train` and `validation` are memory-mapped `datasets.Dataset`s with columns
    source, record, start, end, sequence."""

    folder: Path
    train: datasets.Dataset
    validation: datasets.Dataset
    counts: WindowCounts
    files: list[str]


def cache_key(files: Sequence[Path], settings: WindowSettings) -> str:
    """A hash of what the windows depend on: each file's absolute path, size and modification time, and the settings."""
    identity = {
        "version": CACHE_FORMAT_VERSION,
        "files": [(str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns) for path in files],
        "settings": asdict(settings),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def prepare_windows(
    fasta_files: Sequence[str | Path], settings: WindowSettings, cache_dir: str | Path
) -> GenomeWindows:
    """Window the FASTA files into `cache_dir`, or reuse the cache built earlier from the same files and settings.

    Raises FastaError for a missing, unreadable, empty or truncated file and GenomeDataError when no training or
    validation window survives (an all-N genome, a genome shorter than a window); no cache is left behind then.
    """
    files = [Path(path) for path in fasta_files]
    if not files:
        raise GenomeDataError("no FASTA files given")
    for path in files:
        if not path.is_file():
            raise FastaError(f"{path}: no such file")
    cache_dir = Path(cache_dir)
    folder = cache_dir / f"windows-{cache_key(files, settings)}"
    if not folder.is_dir():
        _build_cache(files, settings, folder)
    return _load_cache(folder)


def _build_cache(files: list[Path], settings: WindowSettings, folder: Path) -> None:
    # Each of accelerate's processes may build the same cache at once: the first one finished is kept.
    with atomic_folder(folder, keep_existing=True) as staging:
        counts = _write_windows(files, settings, staging)
        names = ", ".join(str(path) for path in files)
        if counts.train_windows == 0:
            raise GenomeDataError(
                f"{names}: no training windows ({counts.describe()}); is the genome all N or shorter than a window?"
            )
        if counts.validation_windows == 0 and settings.validation_fraction > 0:
            raise GenomeDataError(
                f"{names}: no validation windows ({counts.describe()}); the last {settings.validation_fraction:.1%} of "
                f"each record is shorter than min_window_length={settings.min_window_length} or mostly N: raise "
                "validation_fraction"
            )
        summary = {
            "files": [str(path.resolve()) for path in files],
            "settings": asdict(settings),
            "counts": asdict(counts),
        }
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def _write_windows(files: list[Path], settings: WindowSettings, staging: Path) -> WindowCounts:
    counts = WindowCounts()
    with (
        pa.OSFile(str(staging / "train.arrow"), "wb") as train_sink,
        pa.OSFile(str(staging / "validation.arrow"), "wb") as validation_sink,
        pa.ipc.new_stream(train_sink, WINDOW_SCHEMA) as train_writer,
        pa.ipc.new_stream(validation_sink, WINDOW_SCHEMA) as validation_writer,
    ):
        writers = {"train": train_writer, "validation": validation_writer}
        pending = {split: [] for split in SPLITS}
        for path in files:
            for record, sequence in read_fasta(path):
                if settings.skips(record):
                    counts.skipped_records += 1
                    counts.skipped_bases += len(sequence)
                    continue
                upper = sequence.upper()
                for split, start, end in plan_windows(sequence, settings, counts):
                    pending[split].append((path.name, record, start, end, upper[start:end]))
                    if len(pending[split]) >= _ROWS_PER_ARROW_BATCH:
                        _flush(writers[split], pending[split])
        for split in SPLITS:
            _flush(writers[split], pending[split])
    return counts


def _flush(writer, rows: list[tuple]) -> None:
    if rows:
        columns = list(zip(*rows))
        writer.write_batch(pa.record_batch([pa.array(column) for column in columns], schema=WINDOW_SCHEMA))
        rows.clear()


def _load_cache(folder: Path) -> GenomeWindows:
    summary = json.loads((folder / "summary.json").read_text())
    return GenomeWindows(
        folder=folder,
        train=datasets.Dataset.from_file(str(folder / "train.arrow")),
        validation=datasets.Dataset.from_file(str(folder / "validation.arrow")),
        counts=WindowCounts(**summary["counts"]),
        files=summary["files"],
    )


# ----------------------------------------------------------------------------------------------------------------
# Drawing crops


class GenomeCrops(torch.utils.data.Dataset):
    """Random crops of cached windows, indexed by (epoch, window index).

    Every draw is seeded by (seed, epoch, index), so the crop, the strand and the masking seed it returns are the
    same whichever process, worker or resumed run asks for them.
    """

    def __init__(self, windows: datasets.Dataset, crop_length: int, seed: int, random_strand: bool):
        self.windows = windows
        self.crop_length = crop_length
        self.seed = seed
        self.random_strand = random_strand

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        rng = np.random.default_rng((self.seed, epoch, index))
        sequence = self.windows[index]["sequence"]
        start = int(rng.integers(0, max(len(sequence) - self.crop_length, 0) + 1))
        crop = sequence[start : start + self.crop_length]
        if self.random_strand and rng.random() < 0.5:
            crop = reverse_complement(crop)
        return {"sequence": crop, "window_index": index, "mask_seed": int(rng.integers(2**62))}


def validation_sample(num_windows: int, sample_size: int, seed: int) -> list[int]:
    """Indices of `sample_size` of `num_windows` validation windows, the same for a given seed: one drawn at random
    from each of `sample_size` equal, consecutive strata. The windows are stored record by record, so the sample
    spreads over every record in proportion to its share of the windows (all of them when there are fewer)."""
    if sample_size >= num_windows:
        return list(range(num_windows))
    bounds = np.linspace(0, num_windows, sample_size + 1).astype(int)
    rng = np.random.default_rng(seed)
    return [int(rng.integers(low, high)) for low, high in zip(bounds[:-1], bounds[1:])]


class WindowBatchSampler(torch.utils.data.Sampler):
    """An endless stream of batches of (epoch, window index) keys for one process.

    Epoch e visits the windows in a permutation seeded by (seed, e). Global batch b of an epoch is the slice
    [b·G, (b+1)·G) of that permutation (G = batch_size × num_processes; the remainder of an epoch is skipped), and
    process p takes the p-th `batch_size` part of it: processes never share a window within a step. Starting at
    `start_batch` skips exactly the batches an earlier run consumed.
    """

    def __init__(
        self,
        num_windows: int,
        batch_size: int,
        seed: int,
        num_processes: int = 1,
        process_index: int = 0,
        start_batch: int = 0,
    ):
        self.global_batch = batch_size * num_processes
        if num_windows < self.global_batch:
            raise GenomeDataError(
                f"{num_windows} training windows cannot fill one batch of {batch_size} × {num_processes} processes: "
                "use a smaller batch or more DNA"
            )
        self.num_windows = num_windows
        self.batch_size = batch_size
        self.seed = seed
        self.offset = process_index * batch_size
        self.start_batch = start_batch
        self.batches_per_epoch = num_windows // self.global_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        batch, order_epoch, order = self.start_batch, None, None
        while True:
            epoch, batch_in_epoch = divmod(batch, self.batches_per_epoch)
            if epoch != order_epoch:
                order_epoch, order = epoch, self.epoch_order(epoch)
            first = batch_in_epoch * self.global_batch + self.offset
            yield [(epoch, int(index)) for index in order[first : first + self.batch_size]]
            batch += 1

    def epoch_order(self, epoch: int) -> torch.Tensor:
        return torch.randperm(self.num_windows, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))
