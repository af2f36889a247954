"""Embeddings from a NucEL encoder: one vector per sequence (pooled) or one vector per base.

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
still being embedded, a pooled vector (a running sum or maximum: no per-base array) when its record ends. The output
appears under its name only when complete (written beside it and renamed).
"""

import heapq
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from nucel.core.sequences import SequenceRecord, clean_sequence
from nucel.core.windows import (
    DEFAULT_OVERLAP,
    DEFAULT_WINDOW,
    base_token_ids,
    batches_by_length,
    check_windows,
    encode_batch,
    window_count,
    window_plan,
)
from nucel.tokenization import TOKENS_BEFORE_BASES, reverse_complement, with_special_tokens

POOLINGS = ("cls", "mean", "max")
# Windows are read this many batches ahead and sorted by length: enough to batch mixed-length inputs with little
# padding, while what is held stays small.
READ_AHEAD_BATCHES = 8


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


def _record_windows(
    state: _RecordEmbedding, tokenizer, window: int, overlap: int, both_strands: bool
) -> Iterator[_Window]:
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
    return _stream(
        model, tokenizer, records, pooling, layer, strands, window, overlap, batch_size, progress, total_bases
    )


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
    records = (
        SequenceRecord(str(i), sequence, sources[i] if sources else f"sequence {i + 1}")
        for i, sequence in enumerate(sequences)
    )
    stream = embedding_stream(
        model,
        tokenizer,
        records,
        pooling,
        layer,
        reverse_complement_average,
        window,
        overlap,
        batch_size,
        progress,
        sum(len(s) for s in sequences),
    )
    embeddings, parts = [], []
    for piece in stream:
        parts.append(piece.vectors)
        if piece.last:
            embeddings.append(parts[0] if len(parts) == 1 else np.concatenate(parts))
            parts = []
    return embeddings if pooling is None else np.stack(embeddings)
