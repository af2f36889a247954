"""NucEL: an ELECTRA-style single-nucleotide DNA language model, Hugging Face Hub native.

    from nucel import NucELConfig, NucELModel, build_tokenizer
"""

import transformers

from .modeling_nucel import (
    NucELConfig,
    NucELForPreTraining,
    NucELForSequenceClassification,
    NucELForTokenClassification,
    NucELGenerator,
    NucELModel,
)
from .tokenization import build_tokenizer, reverse_complement, validate_dna

# In this process a NucELConfig selects the NucEL classes through transformers' Auto classes
# (`AutoModelForSequenceClassification.from_config(NucELConfig(...))`, `AutoModel.from_pretrained(folder, config=...)`).
# Saved folders need no registration: their auto_map names the classes. The config keeps model_type "modernbert"
# (dual mode), so AutoConfig stays native ModernBERT's.
for _auto_class, _model_class in (
    (transformers.AutoModel, NucELModel),
    (transformers.AutoModelForMaskedLM, NucELGenerator),
    (transformers.AutoModelForPreTraining, NucELForPreTraining),
    (transformers.AutoModelForSequenceClassification, NucELForSequenceClassification),
    (transformers.AutoModelForTokenClassification, NucELForTokenClassification),
):
    _auto_class.register(NucELConfig, _model_class, exist_ok=True)

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
