"""NucEL: an ELECTRA-style single-nucleotide DNA language model, Hugging Face Hub native.

    from nucel import NucELConfig, NucELModel, build_tokenizer
"""

from .modeling_nucel import (
    NucELConfig,
    NucELForPreTraining,
    NucELForSequenceClassification,
    NucELForTokenClassification,
    NucELGenerator,
    NucELModel,
)
from .tokenization import build_tokenizer, reverse_complement, validate_dna

__version__ = "0.1.0"

__all__ = [
    "NucELConfig",
    "NucELForPreTraining",
    "NucELForSequenceClassification",
    "NucELForTokenClassification",
    "NucELGenerator",
    "NucELModel",
    "build_tokenizer",
    "reverse_complement",
    "validate_dna",
]
