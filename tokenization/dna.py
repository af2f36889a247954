"""DNA string and token-id helpers: validation, reverse complement."""

import re

import torch

from nucel.modeling_nucel.configuration_nucel import BASE_IDS, BOS_ID, CLS_ID, EOS_ID, PAD_ID, SEP_ID

# IUPAC nucleotide codes (upper and lower case), and their complements.
IUPAC_COMPLEMENT = str.maketrans("ACGTRYSWKMBDHVNacgtryswkmbdhvn", "TGCAYRSWMKVHDBNtgcayrswmkvhdbn")
IUPAC_CODES = frozenset("ACGTRYSWKMBDHVN")
# The alphabet as regular expressions (either case), the one spelling every reader checks with.
_LETTERS = "".join(sorted(IUPAC_CODES))
ONLY_IUPAC = re.compile(f"[{_LETTERS}{_LETTERS.lower()}]+")  # fullmatch: plain DNA, the fast path
NOT_IUPAC = re.compile(f"[^{_LETTERS}{_LETTERS.lower()}]")  # search: the first character that is not DNA
_WHITESPACE = re.compile(r"\s+")

_ID_COMPLEMENT = {BASE_IDS[0]: BASE_IDS[3], BASE_IDS[1]: BASE_IDS[2], BASE_IDS[2]: BASE_IDS[1], BASE_IDS[3]: BASE_IDS[0]}


class InvalidDNAError(ValueError):
    """Raised for a sequence that is not DNA; the message names the character, its position and the source."""


def validate_dna(sequence: str, source: str | None = None) -> str:
    """Return `sequence` (whitespace removed, upper-cased) if it is DNA in IUPAC codes, else raise InvalidDNAError.

    Whitespace and newlines inside a pasted sequence are ignored. Positions are 1-based in the input as given.
    `source` (e.g. "train.csv line 12") is put in the message so the user can find the bad record.
    """
    where = f" in {source}" if source else ""
    if not sequence or not _WHITESPACE.sub("", sequence):
        raise InvalidDNAError(f"empty sequence{where}")
    for position, character in enumerate(sequence, start=1):
        if character.isspace() or character.upper() in IUPAC_CODES:
            continue
        if character == ">":
            hint = " (a FASTA header line pasted into the sequence?)"
        elif character.isdigit():
            hint = " (digits are not nucleotides: a coordinate or line number?)"
        elif character.upper() == "U":
            hint = " (U is RNA: convert to T first)"
        elif character.isalpha():
            hint = " (not an IUPAC nucleotide code: a protein sequence?)"
        else:
            hint = ""
        raise InvalidDNAError(f"invalid character {character!r} at position {position}{where}{hint}")
    return _WHITESPACE.sub("", sequence).upper()


def reverse_complement(sequence: str) -> str:
    """Reverse complement of a DNA string (IUPAC aware, case preserved)."""
    return sequence.translate(IUPAC_COMPLEMENT)[::-1]


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
