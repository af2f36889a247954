"""DNA as token ids: the reverse complement of tokenised sequences."""

import torch

from nucel.modeling_nucel.configuration_nucel import BASE_IDS, BOS_ID, CLS_ID, EOS_ID, PAD_ID, SEP_ID

_ID_COMPLEMENT = {
    BASE_IDS[0]: BASE_IDS[3],
    BASE_IDS[1]: BASE_IDS[2],
    BASE_IDS[2]: BASE_IDS[1],
    BASE_IDS[3]: BASE_IDS[0],
}


def reverse_complement_ids(input_ids: torch.Tensor, special_ids: set[int] | None = None) -> torch.Tensor:
    """Reverse complement of tokenised DNA (batch, length) or (length,): the sequence tokens between the
    specials are reversed and A<->T, C<->G swapped; [CLS], [SEP] and padding stay where they are, so the
    attention mask still applies. Tokens other than bases ([UNK] for N, [MASK]) move but are not complemented."""
    special_ids = special_ids or {PAD_ID, CLS_ID, SEP_ID, BOS_ID, EOS_ID}
    single = input_ids.dim() == 1
    ids = input_ids.unsqueeze(0) if single else input_ids
    result = ids.clone()
    lookup = torch.arange(int(ids.max()) + 1 if ids.numel() else 1, device=ids.device)
    for base, complement in _ID_COMPLEMENT.items():
        if base < len(lookup):
            lookup[base] = complement
    is_sequence = ~torch.isin(ids, torch.tensor(sorted(special_ids), device=ids.device))
    for row in range(ids.shape[0]):
        positions = is_sequence[row].nonzero().squeeze(-1)
        result[row, positions] = lookup[ids[row, positions].flip(0)]
    return result.squeeze(0) if single else result
