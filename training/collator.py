"""Batching crops for pre-training: tokenise, pad, mask.

Each example's mask is drawn from its own generator seeded by the example's `mask_seed` (itself a function of
(seed, epoch, window index), see `genome.GenomeCrops`), so masking does not depend on the batch an example lands
in, on the number of processes, or on where a resumed run starts.
"""

import torch

from .masking import mask_tokens


class PretrainingCollator:
    """Examples {"sequence", "window_index", "mask_seed"} -> {"input_ids" (masked), "attention_mask", "labels",
    "window_index"}; labels hold the original ids at the selected positions and -100 elsewhere."""

    def __init__(self, tokenizer, mask_probability: float = 0.15, mask_token_fraction: float = 0.85):
        self.tokenizer = tokenizer
        self.mask_probability = mask_probability
        self.mask_token_fraction = mask_token_fraction

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(
            [example["sequence"] for example in examples], padding=True, return_tensors="pt", return_attention_mask=True
        )
        rows = [
            mask_tokens(
                ids,
                self.mask_probability,
                self.mask_token_fraction,
                generator=torch.Generator().manual_seed(example["mask_seed"]),
            )
            for ids, example in zip(encoded["input_ids"], examples)
        ]
        return {
            "input_ids": torch.stack([masked for masked, _ in rows]),
            "attention_mask": encoded["attention_mask"],
            "labels": torch.stack([labels for _, labels in rows]),
            "window_index": torch.tensor([example["window_index"] for example in examples]),
        }
