"""The single-nucleotide tokenizer and DNA helpers."""

from .dna import InvalidDNAError, reverse_complement, reverse_complement_ids, validate_dna
from .tokenizer import MODEL_MAX_LENGTH, VOCAB, build_tokenizer, save_tokenizer

__all__ = [
    "InvalidDNAError",
    "MODEL_MAX_LENGTH",
    "VOCAB",
    "build_tokenizer",
    "reverse_complement",
    "reverse_complement_ids",
    "save_tokenizer",
    "validate_dna",
]
