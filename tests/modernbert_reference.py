"""Helpers shared by the parity tests: DNA batches and transformers' native ModernBERT config for a NucEL model."""

import torch
from transformers import ModernBertConfig

from nucel import NucELConfig
from nucel.modeling_nucel.configuration_nucel import BASE_IDS, CLS_ID, PAD_ID, SEP_ID

NUCEL_ONLY_FIELDS = {"model_type", "transformers_version", "auto_map", "architectures", "generator_config"}


def reference_config(config: NucELConfig, attn_implementation: str) -> ModernBertConfig:
    """transformers' native ModernBertConfig read from the same fields, as a dual-mode folder is read."""
    fields = {k: v for k, v in config.to_dict().items() if k not in NUCEL_ONLY_FIELDS}
    return ModernBertConfig(**fields, attn_implementation=attn_implementation)


def dna_batch(lengths, seed=0):
    """Right-padded `[CLS] bases [SEP]` rows with the given numbers of bases."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths) + 2
    input_ids = torch.full((len(lengths), width), PAD_ID)
    attention_mask = torch.zeros_like(input_ids)
    for row, length in enumerate(lengths):
        bases = torch.tensor(BASE_IDS)[torch.randint(0, 4, (length,), generator=generator)]
        input_ids[row, : length + 2] = torch.cat([torch.tensor([CLS_ID]), bases, torch.tensor([SEP_ID])])
        attention_mask[row, : length + 2] = 1
    return input_ids, attention_mask
