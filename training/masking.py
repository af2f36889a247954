"""Masking for replaced token detection and MLM (docs/design.md, "Trap: an ELECTRA that fails silently").

`mask_probability` (15%) of the base tokens (A, C, G, T) are selected. Of those, `mask_token_fraction` become
[MASK], `random_token_fraction` become a base drawn uniformly from the four (the original one included, as BERT
draws from its whole vocabulary), and the rest keep their base. ELECTRA's 85/0/15 is the default (the RTD generator
does the replacing); BERT's 80/10/10 is the MLM baseline's classic. Specials, padding and [UNK] (N) are never
selected: predicting an N teaches nothing.
"""

import torch

from nucel.modeling_nucel.configuration_nucel import BASE_IDS, MASK_ID
from nucel.modeling_nucel.modeling_nucel import IGNORE_INDEX
from nucel.training.pretraining_config import check_mask_fractions


def mask_tokens(
    input_ids: torch.Tensor,
    mask_probability: float = 0.15,
    mask_token_fraction: float = 0.85,
    generator: torch.Generator | None = None,
    random_token_fraction: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (masked input_ids, labels): labels hold the original id at selected positions and -100 elsewhere.

    Both decisions of every position come from one draw of shape (2, *input_ids.shape), and the random bases (with
    `random_token_fraction` only, so masking without them is what it always was) from a draw after it: they depend
    only on the shape given. Mask a sequence without its padding (as `PretrainingCollator` does) and its masking does
    not depend on the batch it is padded into.
    """
    check_mask_fractions(mask_probability, mask_token_fraction, random_token_fraction)
    bases = torch.tensor(BASE_IDS, device=input_ids.device)
    is_base = torch.isin(input_ids, bases)
    selection_draws, treatment_draws = torch.rand((2, *input_ids.shape), generator=generator, device=input_ids.device)
    selected = is_base & (selection_draws < mask_probability)
    to_mask_token = selected & (treatment_draws < mask_token_fraction)
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    masked = input_ids.masked_fill(to_mask_token, MASK_ID)
    if random_token_fraction > 0:
        to_random_base = selected & ~to_mask_token & (treatment_draws < mask_token_fraction + random_token_fraction)
        draws = torch.randint(0, len(bases), input_ids.shape, generator=generator, device=input_ids.device)
        random_bases = bases[draws]
        masked = torch.where(to_random_base, random_bases, masked)
    return masked, labels
