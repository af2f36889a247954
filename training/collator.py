"""Batching crops for pre-training: tokenise, mask, pad.

Each example's mask is drawn from its own generator seeded by the example's `mask_seed` (itself a function of
(seed, epoch, window index), see `genome.GenomeCrops`), over the example's own tokens before padding, so masking
does not depend on the batch an example lands in (nor on how much padding that batch needs), on the number of
processes, or on where a resumed run starts.
"""

import torch
from torch.nn.utils.rnn import pad_sequence

from nucel.modeling_nucel.configuration_nucel import PAD_ID
from nucel.modeling_nucel.modeling_nucel import IGNORE_INDEX
from nucel.training.masking import mask_tokens


class PretrainingCollator:
    """Examples {"sequence", "window_index", "mask_seed"} -> {"input_ids" (masked), "attention_mask", "labels",
    "window_index"}; labels hold the original ids at the selected positions and -100 elsewhere."""

    def __init__(
        self,
        tokenizer,
        mask_probability: float = 0.15,
        mask_token_fraction: float = 0.85,
        random_token_fraction: float = 0.0,
    ):
        self.tokenizer = tokenizer
        self.mask_probability = mask_probability
        self.mask_token_fraction = mask_token_fraction
        self.random_token_fraction = random_token_fraction

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer([example["sequence"] for example in examples])["input_ids"]
        rows = [
            mask_tokens(
                torch.tensor(ids),
                self.mask_probability,
                self.mask_token_fraction,
                generator=torch.Generator().manual_seed(example["mask_seed"]),
                random_token_fraction=self.random_token_fraction,
            )
            for ids, example in zip(encoded, examples)
        ]
        return {
            "input_ids": pad_sequence([masked for masked, _ in rows], batch_first=True, padding_value=PAD_ID),
            "attention_mask": pad_sequence(
                [torch.ones(len(ids), dtype=torch.long) for ids in encoded], batch_first=True
            ),
            "labels": pad_sequence([labels for _, labels in rows], batch_first=True, padding_value=IGNORE_INDEX),
            "window_index": torch.tensor([example["window_index"] for example in examples]),
        }
