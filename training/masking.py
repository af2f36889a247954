"""Masking for replaced token detection and MLM (DESIGN.md section 4).

15% of the base tokens (A, C, G, T) are selected; 85% of those become [MASK] and 15% keep their base; there is no
random replacement (the RTD generator does the replacing). Specials, padding and [UNK] (N) are never selected:
predicting an N teaches nothing.
"""

import torch

from nucel.modeling_nucel.configuration_nucel import BASE_IDS, MASK_ID
from nucel.modeling_nucel.modeling_nucel import IGNORE_INDEX


def mask_tokens(
    input_ids: torch.Tensor,
    mask_probability: float = 0.15,
    mask_token_fraction: float = 0.85,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (masked input_ids, labels): labels hold the original id at selected positions and -100 elsewhere.

    Both decisions of every position come from one draw of shape (2, *input_ids.shape), so they depend only on
    the shape given: mask a sequence without its padding (as `PretrainingCollator` does) and its masking does not
    depend on the batch it is padded into.
    """
    is_base = torch.isin(input_ids, torch.tensor(BASE_IDS, device=input_ids.device))
    selection_draws, mask_token_draws = torch.rand((2, *input_ids.shape), generator=generator, device=input_ids.device)
    selected = is_base & (selection_draws < mask_probability)
    to_mask_token = selected & (mask_token_draws < mask_token_fraction)
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    masked = input_ids.masked_fill(to_mask_token, MASK_ID)
    return masked, labels
