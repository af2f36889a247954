"""Helpers shared by the parity tests: DNA batches and transformers' native ModernBERT config for a NucEL model."""

import torch
from transformers import ModernBertConfig

from nucel import NucELConfig
from nucel.modeling_nucel.configuration_nucel import BASE_IDS, PAD_ID
from nucel.tokenization import token_length, with_special_tokens

NUCEL_ONLY_FIELDS = {"model_type", "transformers_version", "auto_map", "architectures", "generator_config"}


def reference_config(config: NucELConfig, attn_implementation: str) -> ModernBertConfig:
    """transformers' native ModernBertConfig read from the same fields, as a dual-mode folder is read."""
    fields = {k: v for k, v in config.to_dict().items() if k not in NUCEL_ONLY_FIELDS}
    return ModernBertConfig(**fields, attn_implementation=attn_implementation)


def dna_batch(lengths, seed=0):
    """Right-padded `[CLS] bases` rows with the given numbers of bases."""
    generator = torch.Generator().manual_seed(seed)
    width = token_length(max(lengths))
    input_ids = torch.full((len(lengths), width), PAD_ID)
    attention_mask = torch.zeros_like(input_ids)
    for row, length in enumerate(lengths):
        bases = torch.tensor(BASE_IDS)[torch.randint(0, 4, (length,), generator=generator)]
        row_ids = with_special_tokens(bases.tolist())
        input_ids[row, : len(row_ids)] = torch.tensor(row_ids)
        attention_mask[row, : len(row_ids)] = 1
    return input_ids, attention_mask
