"""Padding-free packing: several sequences per row, told apart by `position_ids` that restart at 0.

NucEL models given `position_ids` attend within each packed sequence only, with rotary positions counted from
its own start, so a packed row gives each sequence exactly its outputs alone. For per-token objectives (RTD and
MLM pre-training, token classification) this turns a padded batch into fewer, fuller rows:

    collator = PackingCollator(PretrainingCollator(tokenizer), max_tokens=4096)
    batch = collator(examples)        # input_ids, attention_mask, labels, position_ids: (rows, <= 4096)
    model(**batch)                    # NucELForPreTraining, NucELGenerator, NucELForTokenClassification

With SDPA or flash-attn the models already skip padding inside a batch (they run on real tokens only), so
packing saves the padded positions of the input tensors and gives steps a steady number of tokens; it does not
change the arithmetic. Sequence classification keeps one sequence per row (one label per row).
"""

import torch

PER_TOKEN_KEYS = ("input_ids", "attention_mask", "labels")
PAD_VALUES = {"input_ids": 0, "attention_mask": 0, "labels": -100, "position_ids": 0}


def pack_batch(batch: dict[str, torch.Tensor], max_tokens: int) -> dict[str, torch.Tensor]:
    """Repack a right-padded batch (input_ids, attention_mask, optional labels) into rows of at most
    `max_tokens` real tokens, first-fit in the batch's order, with `position_ids` restarting per sequence.

    Other keys (per-example metadata) are dropped: a packed row holds several examples. Raises ValueError when
    a sequence alone is longer than `max_tokens`.
    """
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    too_long = [length for length in lengths if length > max_tokens]
    if too_long:
        raise ValueError(f"a sequence of {too_long[0]} tokens does not fit in rows of max_tokens={max_tokens}")
    rows: list[list[int]] = []  # example indices per packed row
    room: list[int] = []
    for example, length in enumerate(lengths):
        row = next((r for r, free in enumerate(room) if free >= length), None)
        if row is None:
            rows.append([])
            room.append(max_tokens)
            row = len(rows) - 1
        rows[row].append(example)
        room[row] -= length

    keys = [key for key in PER_TOKEN_KEYS if key in batch]
    width = max(max_tokens - free for free in room)
    packed = {key: torch.full((len(rows), width), PAD_VALUES[key], dtype=batch[key].dtype) for key in keys}
    packed["position_ids"] = torch.zeros(len(rows), width, dtype=torch.long)
    for row, examples in enumerate(rows):
        start = 0
        for example in examples:
            length = lengths[example]
            real = batch["attention_mask"][example].bool()
            for key in keys:
                packed[key][row, start : start + length] = batch[key][example][real]
            packed["position_ids"][row, start : start + length] = torch.arange(length)
            start += length
    return packed


class PackingCollator:
    """Wraps a collator that returns right-padded batches and packs its output with `pack_batch`."""

    def __init__(self, collator, max_tokens: int):
        self.collator = collator
        self.max_tokens = max_tokens

    def __call__(self, examples: list) -> dict[str, torch.Tensor]:
        return pack_batch(self.collator(examples), self.max_tokens)
