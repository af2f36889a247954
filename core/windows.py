"""Windows and batches: how a sequence longer than the model's window is cut, and how windows are batched.

A sequence longer than `window` bases is cut into windows of exactly `window` bases that overlap by at least
`overlap` bases (`window_plan`): they start at 0, step `window - overlap`, and the last one ends at the sequence's
end. Each base takes its vector from one window, the one in which it lies farthest from a window edge (each overlap
is split at its midpoint), so every base is covered exactly once and has at least `overlap // 2` bases of context
on each side inside its window.
"""

from collections.abc import Callable, Iterable, Iterator
from itertools import islice

import numpy as np
import torch

from nucel.core.sequences import clean_sequence

DEFAULT_WINDOW = 1024  # the pre-training crop length
DEFAULT_OVERLAP = 256


def base_token_ids(tokenizer, sequence: str, source: str | None = None) -> list[int]:
    """Token ids of a DNA string without specials: exactly one id per base (whitespace removed)."""
    sequence = clean_sequence(sequence, source)
    # verbose=False: the callers cut long sequences into windows themselves, so transformers' warning about
    # sequences longer than the tokenizer's maximum ("... will result in indexing errors") would mislead.
    ids = tokenizer(sequence, add_special_tokens=False, verbose=False)["input_ids"]
    if len(ids) != len(sequence):
        raise ValueError(
            f"the tokenizer gave {len(ids)} tokens for {len(sequence)} bases; a NucEL tokenizer gives one per base"
        )
    return ids


def check_windows(window: int, overlap: int) -> None:
    if window < 1 or not 0 <= overlap < window:
        raise ValueError(
            f"need window >= 1 and 0 <= overlap < window, got window={window}, overlap={overlap} (--window, --overlap)"
        )


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


def batches_by_length(
    items: Iterable, batch_size: int, length: Callable, read_ahead: int | None = None
) -> Iterator[list]:
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
    outputs = model(
        input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), output_hidden_states=layer is not None
    )
    hidden = outputs.last_hidden_state if layer is None else outputs.hidden_states[layer]
    return hidden.float().cpu().numpy()
