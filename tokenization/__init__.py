"""The single-nucleotide tokenizer and DNA helpers."""

from nucel.tokenization.dna import InvalidDNAError, reverse_complement, reverse_complement_ids, validate_dna
from nucel.tokenization.tokenizer import (
    MODEL_MAX_LENGTH,
    TOKENS_AFTER_BASES,
    TOKENS_BEFORE_BASES,
    build_tokenizer,
    load_tokenizer,
    save_tokenizer,
    token_length,
    with_special_tokens,
)

__all__ = [
    "InvalidDNAError",
    "MODEL_MAX_LENGTH",
    "TOKENS_AFTER_BASES",
    "TOKENS_BEFORE_BASES",
    "build_tokenizer",
    "load_tokenizer",
    "reverse_complement",
    "reverse_complement_ids",
    "save_tokenizer",
    "token_length",
    "validate_dna",
    "with_special_tokens",
]
