"""The single-nucleotide tokenizer and DNA helpers.

The names below load on first use: the alphabet (`alphabet.py`) is plain Python, while the tokenizer and the
token-id helpers import transformers and torch, which a table reader or a command's `--help` should not wait for.
"""

import importlib

_EXPORTS = {
    "InvalidDNAError": "alphabet",
    "reverse_complement": "alphabet",
    "validate_dna": "alphabet",
    "reverse_complement_ids": "dna",
    "MODEL_MAX_LENGTH": "tokenizer",
    "TOKENS_AFTER_BASES": "tokenizer",
    "TOKENS_BEFORE_BASES": "tokenizer",
    "build_tokenizer": "tokenizer",
    "load_tokenizer": "tokenizer",
    "save_tokenizer": "tokenizer",
    "token_length": "tokenizer",
    "with_special_tokens": "tokenizer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nucel.tokenization' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"nucel.tokenization.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted({*globals(), *_EXPORTS})
