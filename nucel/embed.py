"""Embeddings from a NucEL encoder: one vector per sequence (pooled) or one vector per base.

    nucel embed MODEL sequences.fa -o embeddings.npy --pooling mean
    nucel embed MODEL genome.fa.gz -o per_base.parquet --per-base --reverse-complement --dtype float16

What the numbers are:
- `layer`: None (default) is the encoder's output (`last_hidden_state`, after the final norm), what
  `AutoModel` users get. An integer indexes `hidden_states` as transformers returns them: 0 is the embedding
  layer, i is the output of encoder layer i (before the final norm); negative integers count from the end.
- Pooling: "cls" is the [CLS] vector; "mean" and "max" run over the sequence's bases only ([CLS] and
  padding excluded), so a sequence's pooled vector does not depend on how it was split into windows.
- Per-base: exactly one vector per base of the input, row i = base i (0-based) of the sequence after
  whitespace is removed. Lowercase (soft-masked) bases and N (the [UNK] token) get their own rows like any base.
- Reverse-complement averaging: the reverse complement is embedded too and averaged in; per-base vectors of
  the reverse strand are flipped first, so row i of both strands describes the same base pair. A sequence and
  its reverse complement then get the same pooled vector, and per-base matrices that are each other's reverse.
- Long sequences: a sequence longer than `window` bases is cut into windows of exactly `window` bases that
  overlap by at least `overlap` bases (`window_plan`): they start at 0, step `window - overlap`, and the last
  one ends at the sequence's end. Each base takes its vector from one window, the one in which it lies farthest
  from a window edge (each overlap is split at its midpoint), so every base is covered exactly once and has at
  least `overlap // 2` bases of context on each side inside its window. "mean"/"max" pool those stitched
  per-base vectors; "cls" is the average of the windows' [CLS] vectors. The reverse strand is cut the same way.

Memory does not grow with the input: records are read one at a time, windows are read a few batches ahead
(per-base: one batch), sorted by length (longest first) and batched so that padding stays small, and results are
written out as soon as they are complete, in input order: per-base rows of a long record while the record is
still being embedded, a pooled vector (a running sum or maximum: no per-base array) when its record ends. The output appears under
its name only when complete (written beside it and renamed).
"""

import argparse
import heapq
import re
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers.utils import logging as transformers_logging

from nucel.folders import atomic_file
from nucel.modeling_nucel import NucELModel
from nucel.sequence_io import SequenceRecord, clean_sequence, iter_sequences, scan_sequences
from nucel.tokenization import TOKENS_BEFORE_BASES, load_tokenizer, reverse_complement, with_special_tokens

POOLINGS = ("cls", "mean", "max")
DEFAULT_WINDOW = 1024  # the pre-training crop length
DEFAULT_OVERLAP = 256
# Windows are read this many batches ahead and sorted by length: enough to batch mixed-length inputs with little
# padding, while what is held stays small.
READ_AHEAD_BATCHES = 8
OUTPUT_DTYPES = {"float32": np.float32, "float16": np.float16}
# A Parquet row group of about this size: large enough to read efficiently, small enough to hold while writing.
ROW_GROUP_BYTES = 16 << 20
# What a model folder needs from a Hub repository (weights, configs, tokenizer, code); never its other files.
MODEL_FILES = ["*.json", "*.safetensors", "*.bin", "*.py", "*.txt", "*.model"]
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_model_folder(name_or_path: str | Path) -> Path:
    """A local model folder as it is; a Hub id as its snapshot folder, downloaded or, with HF_HUB_OFFLINE=1, taken
    from the local Hugging Face cache. Anything else is an error saying "no such model folder or Hub id"."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(f"{path} is a file; a model is a folder (config.json, model.safetensors, ...) or a Hub id")
    name = str(name_or_path)
    reason = ""
    if HUB_ID.fullmatch(name):
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import HFValidationError

        try:
            return Path(snapshot_download(name, allow_patterns=MODEL_FILES))
        except (HFValidationError, OSError) as error:  # not on the Hub, not in the cache, or no connection
            reason = (" (not in the local Hugging Face cache, and HF_HUB_OFFLINE=1 keeps the Hub off)" if constants.HF_HUB_OFFLINE
                      else f" (the Hub has no such repository, or it cannot be reached: {type(error).__name__})")
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
    return model.to(device or default_device()).eval()


def load_encoder(name_or_path: str | Path, device: str | None = None):
    """The encoder (`NucELModel`) and tokenizer of any NucEL folder or Hub id: an encoder, a generator, a
    classifier or a pre-training checkpoint (its discriminator). Returned in eval mode on `device`."""
    return load_checked(NucELModel, name_or_path, device), load_tokenizer(resolve_model_folder(name_or_path))


def base_token_ids(tokenizer, sequence: str, source: str | None = None) -> list[int]:
    """Token ids of a DNA string without specials: exactly one id per base (whitespace removed)."""
    sequence = clean_sequence(sequence, source)
    # verbose=False: the callers cut long sequences into windows themselves, so transformers' warning about
    # sequences longer than the tokenizer's maximum ("... will result in indexing errors") would mislead.
    ids = tokenizer(sequence, add_special_tokens=False, verbose=False)["input_ids"]
    if len(ids) != len(sequence):
        raise ValueError(f"the tokenizer gave {len(ids)} tokens for {len(sequence)} bases; a NucEL tokenizer gives one per base")
    return ids


# ----------------------------------------------------------------------------------------------------------------
# Windows and batches


def check_windows(window: int, overlap: int) -> None:
    if window < 1 or not 0 <= overlap < window:
        raise ValueError(f"need window >= 1 and 0 <= overlap < window, got window={window}, overlap={overlap} (--window, --overlap)")


def window_plan(length: int, window: int, overlap: int, backwards: bool = False) -> Iterator[tuple[int, int, int, int]]:
    """The windows a sequence of `length` bases is cut into (see the module docstring), lazily: (start, end) of
    each window and (keep_start, keep_end), the bases it provides. The kept ranges partition [0, length);
    consecutive windows split their overlap at its midpoint. `backwards`: the same windows, last one first."""
    check_windows(window, overlap)
    if length <= window:
        yield 0, length, 0, length
        return
    step = window - overlap
    count = -(-(length - window) // step) + 1  # starts 0, step, 2 step ... below length - window, then length - window

    def start(i: int) -> int:
        return length - window if i == count - 1 else i * step

    def cut(i: int) -> int:  # between window i - 1 and window i: the midpoint of their overlap
        return (start(i) + start(i - 1) + window + 1) // 2

    for i in reversed(range(count)) if backwards else range(count):
        yield start(i), start(i) + window, 0 if i == 0 else cut(i), length if i == count - 1 else cut(i + 1)


def window_count(length: int, window: int, overlap: int) -> int:
    return 1 if length <= window else -(-(length - window) // (window - overlap)) + 1


def window_spans(length: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) of each window of `window_plan`."""
    return [(start, end) for start, end, _, _ in window_plan(length, window, overlap)]


def pad_batch(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input_ids and attention_mask for lists of token ids."""
    longest = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask


def batches_by_length(items: Iterable, batch_size: int, length: Callable, read_ahead: int | None = None) -> Iterator[list]:
    """Batches of items of similar `length`, from a stream read `read_ahead` items at a time (None: all at once).
    Each read is sorted longest first (an out-of-memory shows up at once); the sort is stable, so items of equal
    length keep their order, and the windows of one long record stay in sequence order."""
    iterator = iter(items)
    while chunk := list(islice(iterator, read_ahead)):
        chunk.sort(key=lambda item: -length(item))
        for start in range(0, len(chunk), batch_size):
            yield chunk[start : start + batch_size]


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first."""
    return list(batches_by_length(range(len(lengths)), batch_size, lengths.__getitem__))


@torch.inference_mode()
def encode_batch(model, token_rows: list[list[int]], layer: int | None) -> np.ndarray:
    """Hidden states (batch, longest row, hidden) as float32 numpy; the batch's tensors are freed on return."""
    device = next(model.parameters()).device
    input_ids, attention_mask = pad_batch(token_rows, model.config.pad_token_id)
    outputs = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), output_hidden_states=layer is not None)
    hidden = outputs.last_hidden_state if layer is None else outputs.hidden_states[layer]
    return hidden.float().cpu().numpy()


# ----------------------------------------------------------------------------------------------------------------
# Embedding a stream of records


@dataclass(frozen=True)
class EmbeddingPiece:
    """Part of a record's embedding, handed on as soon as it is complete. Pooled: the record's vector (hidden,).
    Per-base: rows (bases, hidden) for bases `start` ... `start + len(vectors) - 1` of the record."""

    record: SequenceRecord
    sequence: str  # the record's bases, upper-cased
    start: int
    vectors: np.ndarray
    last: bool  # the record's final piece


@dataclass(frozen=True)
class _Window:
    state: "_RecordEmbedding"
    reverse: bool
    start: int  # the window's first base, on its strand
    keep_start: int  # the bases it provides, on its strand
    keep_end: int
    token_ids: list[int]


class _RecordEmbedding:
    """One record's windows, gathered as they come back from the model (in order along each strand): pooled into
    running sums or maxima, or kept as per-base rows until every strand has covered them."""

    def __init__(self, record: SequenceRecord, sequence: str, strands: list[bool], pooling: str | None, windows: int):
        self.record, self.sequence, self.pooling, self.strands = record, sequence, pooling, strands
        self.windows_left = windows * len(strands)
        self.windows = windows
        self.rows = {reverse: [] for reverse in strands}  # per-base rows not yet handed on, in forward order
        self.covered = dict.fromkeys(strands, 0)  # forward position up to which each strand's rows have arrived
        self.handed_on = 0
        self.pooled = dict.fromkeys(strands)  # per strand: sum of [CLS] or of base vectors (float64), or maximum

    def add(self, window: _Window, hidden: np.ndarray) -> None:
        """`hidden`: the window's hidden states, (tokens, hidden), [CLS] first."""
        first = TOKENS_BEFORE_BASES - window.start
        bases = hidden[first + window.keep_start : first + window.keep_end]
        if window.reverse:  # back to forward order: row i describes base pair i of the forward strand
            bases = bases[::-1]
        if self.pooling is None:
            self.rows[window.reverse].append(bases.copy())  # a copy: the batch's array is not kept alive
            self.covered[window.reverse] += len(bases)
        elif self.pooling == "max":
            previous, value = self.pooled[window.reverse], bases.max(axis=0)
            self.pooled[window.reverse] = value if previous is None else np.maximum(previous, value)
        else:  # sums, divided at the end: of the windows' [CLS] vectors, or of the base vectors
            previous = self.pooled[window.reverse]
            value = hidden[0].astype(np.float64) if self.pooling == "cls" else bases.sum(axis=0, dtype=np.float64)
            self.pooled[window.reverse] = value if previous is None else previous + value
        self.windows_left -= 1

    def take_ready(self) -> EmbeddingPiece | None:
        """What can be handed on now: per-base rows every strand has covered, or the pooled vector at the end."""
        length = len(self.sequence)
        if self.pooling is not None:
            if self.windows_left:
                return None
            scale = {"cls": 1 / self.windows, "mean": 1 / length, "max": 1.0}[self.pooling]
            vector = np.mean([self.pooled[reverse] * scale for reverse in self.strands], axis=0)
            return EmbeddingPiece(self.record, self.sequence, 0, vector.astype(np.float32), True)
        end = min(self.covered.values())
        if end == self.handed_on:
            return None
        parts = []
        for reverse in self.strands:
            rows = np.concatenate(self.rows[reverse]) if len(self.rows[reverse]) > 1 else self.rows[reverse][0]
            parts.append(rows[: end - self.handed_on])
            rest = rows[end - self.handed_on :]
            self.rows[reverse] = [rest] if len(rest) else []
        vectors = parts[0] if len(parts) == 1 else np.mean(parts, axis=0)
        piece = EmbeddingPiece(self.record, self.sequence, self.handed_on, vectors, end == length)
        self.handed_on = end
        return piece


def _record_windows(state: _RecordEmbedding, tokenizer, window: int, overlap: int, both_strands: bool) -> Iterator[_Window]:
    """The model inputs of one record, both strands interleaved in forward-position order (the reverse strand's
    windows last one first), so that per-base rows of both strands arrive together and can be handed on."""
    sequence, length = state.sequence, len(state.sequence)
    forward = ((plan[2], False, plan) for plan in window_plan(length, window, overlap))
    # A reverse-strand window keeps bases keep_start..keep_end of the reverse strand: forward length - keep_end ...
    reverse = ((length - plan[3], True, plan) for plan in window_plan(length, window, overlap, backwards=True))
    plans = heapq.merge(forward, reverse, key=lambda item: item[0]) if both_strands else forward
    for _, is_reverse, (start, end, keep_start, keep_end) in plans:
        text = reverse_complement(sequence[length - end : length - start]) if is_reverse else sequence[start:end]
        ids = with_special_tokens(base_token_ids(tokenizer, text, state.record.source))
        yield _Window(state, is_reverse, start, keep_start, keep_end, ids)


def embedding_stream(
    model,
    tokenizer,
    records: Iterable[SequenceRecord],
    pooling: str | None = "mean",
    layer: int | None = None,
    reverse_complement_average: bool = False,
    window: int = DEFAULT_WINDOW,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = 16,
    progress: bool = True,
    total_bases: int | None = None,
) -> Iterator[EmbeddingPiece]:
    """Embeddings of `records` (read lazily) as a stream of pieces in input order (see the module docstring).
    `total_bases`, when known, gives the progress bar (bases per second) its end."""
    if pooling is not None and pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS} or None (per-base), got {pooling!r}")
    depth = model.config.num_hidden_layers
    if layer is not None and not -(depth + 1) <= layer <= depth:
        raise ValueError(f"layer {layer} does not exist: this model has hidden states 0..{depth} (0 = embeddings)")
    check_windows(window, overlap)
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size} (--batch-size)")
    strands = [False, True] if reverse_complement_average else [False]
    return _stream(model, tokenizer, records, pooling, layer, strands, window, overlap, batch_size, progress, total_bases)


def _stream(model, tokenizer, records, pooling, layer, strands, window, overlap, batch_size, progress, total_bases):
    unfinished = deque()  # records in input order whose embedding is not yet all handed on

    def windows() -> Iterator[_Window]:
        for record in records:
            sequence = clean_sequence(record.sequence, record.source)
            state = _RecordEmbedding(record, sequence, strands, pooling, window_count(len(sequence), window, overlap))
            unfinished.append(state)
            yield from _record_windows(state, tokenizer, window, overlap, len(strands) == 2)

    # Per-base rows of a record wait until every earlier record is handed on: sorted across records, a read-ahead's
    # worth of rows could be held back, so per-base windows are only sorted within their batch.
    read_ahead = batch_size * (READ_AHEAD_BATCHES if pooling is not None else 1)
    with tqdm(total=total_bases, desc="embedding", unit="bp", unit_scale=True, disable=not progress) as bar:
        for batch in batches_by_length(windows(), batch_size, lambda w: len(w.token_ids), read_ahead):
            hidden = encode_batch(model, [w.token_ids for w in batch], layer)
            for row, window_ in enumerate(batch):
                window_.state.add(window_, hidden[row, : len(window_.token_ids)])
                if not window_.reverse:
                    bar.update(window_.keep_end - window_.keep_start)
            del hidden
            while unfinished and (piece := unfinished[0].take_ready()) is not None:
                yield piece
                if piece.last:
                    unfinished.popleft()


def embed_sequences(
    model,
    tokenizer,
    sequences: list[str],
    pooling: str | None = "mean",
    layer: int | None = None,
    reverse_complement_average: bool = False,
    window: int = DEFAULT_WINDOW,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = 16,
    progress: bool = True,
    sources: list[str] | None = None,
):
    """Embeddings of DNA strings, in memory (see the module docstring for what exactly is computed).

    `pooling` "cls" / "mean" / "max" returns an array (number of sequences, hidden size); `pooling=None`
    returns per-base embeddings, a list with one (sequence length, hidden size) array per sequence.
    `sources` (e.g. "file line 3") name the records in error messages.
    """
    records = (SequenceRecord(str(i), sequence, sources[i] if sources else f"sequence {i + 1}") for i, sequence in enumerate(sequences))
    stream = embedding_stream(model, tokenizer, records, pooling, layer, reverse_complement_average, window, overlap, batch_size,
                              progress, sum(len(s) for s in sequences))
    embeddings, parts = [], []
    for piece in stream:
        parts.append(piece.vectors)
        if piece.last:
            embeddings.append(parts[0] if len(parts) == 1 else np.concatenate(parts))
            parts = []
    return embeddings if pooling is None else np.stack(embeddings)


# ----------------------------------------------------------------------------------------------------------------
# Output files


def ids_path(npy_path: str | Path) -> Path:
    """The id table written beside an embeddings .npy: embeddings.npy -> embeddings.ids.tsv."""
    npy_path = Path(npy_path)
    return npy_path.with_name(npy_path.name.removesuffix(".npy") + ".ids.tsv")


def check_output_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix not in (".npy", ".parquet"):
        raise ValueError(f"{path}: the output must end in .npy or .parquet (-o/--output)")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; -o/--output names the file to write")
    return path


class NpyRowWriter:
    """Rows appended to an open .npy file. The header is written first with 0 rows and rewritten with the final
    count by `finish`: numpy pads every header so that its first dimension can grow in place."""

    def __init__(self, handle, width: int, dtype):
        self.handle, self.width, self.dtype, self.rows = handle, width, np.dtype(dtype), 0
        self.header_size = self._write_header()

    def _write_header(self) -> int:
        self.handle.seek(0)
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (self.rows, self.width)}
        np.lib.format.write_array_header_1_0(self.handle, header)
        return self.handle.tell()

    def write(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype).reshape(-1, self.width)
        self.handle.write(rows.tobytes())
        self.rows += len(rows)

    def finish(self) -> None:
        self.handle.flush()
        end = self.handle.tell()
        if self._write_header() != self.header_size:
            raise RuntimeError(f"{self.rows} rows do not fit the .npy header written for 0 rows")
        self.handle.seek(end)


def write_embedding_stream(path: str | Path, pieces: Iterable[EmbeddingPiece], width: int, per_base: bool, dtype=np.float32) -> tuple[list[Path], int]:
    """Write embeddings as they come (pieces in input order); returns (files written, records written).

    - `.npy`: pooled -> (sequences, hidden) with `<name>.ids.tsv` (column `id`, one line per row);
      per-base -> all sequences' rows concatenated, (total bases, hidden), with `<name>.ids.tsv` giving each
      sequence's rows `start`..`end` (end exclusive).
    - `.parquet`: pooled -> columns `id`, `embedding`; per-base -> one row per base with `id`, `offset`
      (0-based position in the sequence), `base` and `embedding`; written in row groups of about 16 MiB.
    Values are stored as `dtype` (float32 or float16). Nothing appears under the final names unless every piece
    was written: an error or Ctrl-C leaves no partial file.
    """
    path = check_output_path(path)
    records = 0
    if path.suffix == ".npy":
        with ExitStack() as stack:
            array_file = stack.enter_context(atomic_file(path))
            table_file = stack.enter_context(atomic_file(ids_path(path)))
            with open(array_file, "wb") as array_handle, open(table_file, "w") as table:
                rows = NpyRowWriter(array_handle, width, dtype)
                table.write("id\tstart\tend\n" if per_base else "id\n")
                start = 0
                for piece in pieces:
                    rows.write(piece.vectors)
                    if piece.last:
                        table.write(f"{piece.record.id}\t{start}\t{rows.rows}\n" if per_base else f"{piece.record.id}\n")
                        start, records = rows.rows, records + 1
                rows.finish()
        return [path, ids_path(path)], records

    import pyarrow as pa
    import pyarrow.parquet as pq

    value_type = pa.float16() if np.dtype(dtype) == np.float16 else pa.float32()
    columns = [("id", pa.string())] + ([("offset", pa.int64()), ("base", pa.string())] if per_base else [])
    schema = pa.schema([*columns, ("embedding", pa.list_(value_type, width))])
    group_rows = max(1, ROW_GROUP_BYTES // (width * np.dtype(dtype).itemsize))
    buffered = []  # (id, first offset, bases, vectors already in the stored dtype) until a row group is full
    buffered_rows = 0

    def row_group(parts: list) -> pa.Table:
        data = {"id": pa.array([record_id for record_id, _, _, vectors in parts for _ in range(len(vectors))], pa.string())}
        if per_base:
            data["offset"] = pa.array(np.concatenate([np.arange(start, start + len(vectors)) for _, start, _, vectors in parts]))
            data["base"] = pa.array([base for _, _, bases, _ in parts for base in bases], pa.string())
        values = np.concatenate([vectors for _, _, _, vectors in parts]).ravel()
        data["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(values, value_type), width)
        return pa.table(data, schema=schema)

    # Dictionary encoding suits the repeated ids and the four bases, not the floats.
    with atomic_file(path) as staging, pq.ParquetWriter(staging, schema, use_dictionary=["id", "base"]) as writer:
        for piece in pieces:
            vectors = np.asarray(piece.vectors, dtype=dtype).reshape(-1, width)
            bases = piece.sequence[piece.start : piece.start + len(vectors)] if per_base else ""
            buffered.append((piece.record.id, piece.start, bases, vectors))
            buffered_rows += len(vectors)
            records += piece.last
            if buffered_rows >= group_rows:
                writer.write_table(row_group(buffered))
                buffered, buffered_rows = [], 0
        if buffered:
            writer.write_table(row_group(buffered))
    return [path], records


def write_embeddings(path: str | Path, ids: list[str], embeddings, sequences: list[str] | None = None, dtype=np.float32) -> list[Path]:
    """Write in-memory embeddings (`embed_sequences`' result: an array pooled, a list of arrays per-base) in the
    layout of `write_embedding_stream`; per-base Parquet needs the `sequences` (for the `base` column)."""
    per_base = isinstance(embeddings, list)
    if per_base and Path(path).suffix == ".parquet" and sequences is None:
        raise ValueError("per-base parquet output needs the sequences (for the `base` column)")
    clean = [clean_sequence(s) for s in sequences] if sequences is not None else [""] * len(ids)
    pieces = (EmbeddingPiece(SequenceRecord(i, s, ""), s, 0, np.asarray(e), True) for i, s, e in zip(ids, clean, embeddings))
    width = embeddings[0].shape[-1] if per_base else np.asarray(embeddings).shape[1]
    return write_embedding_stream(path, pieces, width, per_base, dtype)[0]


@contextmanager
def interruption_reported(command: str, output: str | Path):
    """Ctrl-C while a command writes `output`: the partial files are already removed (outputs are written beside
    their names and renamed only when complete), so say that in one line instead of a traceback, and exit with the
    shell's status for an interrupt."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"nucel {command}: interrupted; {output} was not written and no partial file is left. "
              "Run the command again to start over.", file=sys.stderr)
        raise SystemExit(130) from None


# ----------------------------------------------------------------------------------------------------------------
# Command line


def run(args: argparse.Namespace) -> None:
    output = check_output_path(args.output)
    check_windows(args.window, args.overlap)
    check_map_options(args)
    if args.map:  # scikit-learn and matplotlib: only for a map
        from nucel.embedding_map import check_map_output, check_map_size, read_labels, write_embedding_map

        check_map_output(args.map)
    resolve_model_folder(args.model)  # a wrong model name fails before the input is read
    summary = scan_sequences(args.input, args.sequence_column, args.id_column)
    if args.map:
        check_map_size(summary.records)  # before hours of inference, not after
    labels = read_labels(args.input, args.label_column, args.sequence_column, args.id_column) if args.label_column else None
    model, tokenizer = load_encoder(args.model, args.device)
    records = iter_sequences(args.input, args.sequence_column, args.id_column)
    pieces = embedding_stream(
        model,
        tokenizer,
        records,
        pooling=None if args.per_base else args.pooling,
        layer=args.layer,
        reverse_complement_average=args.reverse_complement,
        window=args.window,
        overlap=args.overlap,
        batch_size=args.batch_size,
        total_bases=summary.bases,
    )
    if args.map:
        pooled = []  # the per-sequence vectors, for the map: sequences x hidden, small beside the input
        pieces = kept(pieces, pooled)
    with interruption_reported("embed", output):
        written, count = write_embedding_stream(output, pieces, model.config.hidden_size, args.per_base, OUTPUT_DTYPES[args.dtype])
        if args.map:
            written.append(write_embedding_map(np.stack(pooled), labels, Path(args.map), args.map_method,
                                               title=f"{Path(args.input).name}, {args.pooling} pooling",
                                               label_name=args.label_column or "label"))
    print(f"{count} sequences embedded ({summary.bases:,} bp) -> {', '.join(map(str, written))}")


def check_map_options(args: argparse.Namespace) -> None:
    if args.map and args.per_base:
        raise ValueError("--map draws one point per sequence: leave out --per-base (or draw the map in a second run)")
    if args.label_column and not args.map:
        raise ValueError("--label-column colours the points of --map: give --map PNG too")


def kept(pieces: Iterable[EmbeddingPiece], vectors: list) -> Iterator[EmbeddingPiece]:
    """Pass pooled pieces on unchanged, keeping each one's vector."""
    for piece in pieces:
        vectors.append(piece.vectors)
        yield piece
