"""NucEL: an ELECTRA-style single-nucleotide DNA language model, Hugging Face Hub native.

    from nucel import NucELConfig, NucELModel, build_tokenizer

The names below load on first use, so that `import nucel` (and every command's `--help`) does not pay for
importing torch and transformers. Importing the models registers them with transformers' Auto classes
(nucel/modeling_nucel/__init__.py).
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "NucELConfig": "nucel.modeling_nucel",
    "NucELForPreTraining": "nucel.modeling_nucel",
    "NucELForReplacedTokenDetection": "nucel.modeling_nucel",
    "NucELForSequenceClassification": "nucel.modeling_nucel",
    "NucELForTokenClassification": "nucel.modeling_nucel",
    "NucELGenerator": "nucel.modeling_nucel",
    "NucELModel": "nucel.modeling_nucel",
    "build_tokenizer": "nucel.tokenization",
    "reverse_complement": "nucel.tokenization",
    "validate_dna": "nucel.tokenization",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nucel' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted({*globals(), *_EXPORTS})
