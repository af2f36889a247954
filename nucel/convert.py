"""Moving checkpoints between NucEL and native ModernBERT, and from NucEL's old token ids to the released ones.

Parameter names and token ids are the same on both sides (docs/design.md, "Decision: ModernBERT-compatible weights"), so
no conversion touches a weight value except `migrate`, which moves embedding rows:

    nucel convert import SOURCE OUT    # a ModernBERT folder on the released vocabulary (FreakingPotato/NucEL, or any
                                       # ModernBERT trained on it) -> dual-mode NucEL folder, bit-identical weights
    nucel convert export SOURCE OUT    # NucEL folder -> native ModernBERT folder (no auto_map, no code files)
    nucel convert migrate SOURCE OUT   # a NucEL folder saved with the old ids (A, C, G, T = 7-10) -> released ids
"""

import argparse
import json
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file
from transformers import ModernBertConfig

from nucel.core.files import atomic_folder
from nucel.core.models import save_model_folder
from nucel.modeling_nucel import (
    NucELConfig,
    NucELForPreTraining,
    NucELForSequenceClassification,
    NucELForTokenClassification,
    NucELGenerator,
    NucELModel,
)
from nucel.modeling_nucel.configuration_nucel import (
    BASE_IDS,
    BASES,
    LEGACY_BASE_IDS,
    NUCEL_ONLY_FIELDS,
    SPECIAL_TOKENS,
    VOCAB,
    VOCAB_SIZE,
)
from nucel.modeling_nucel.modeling_nucel import NON_BASE_LOGIT_BIAS
from nucel.tokenization import build_tokenizer, load_tokenizer, save_tokenizer

NUCEL_CLASSES = {
    cls.__name__: cls
    for cls in (
        NucELModel,
        NucELGenerator,
        NucELForSequenceClassification,
        NucELForTokenClassification,
        NucELForPreTraining,
    )
}
NATIVE_FOR_NUCEL = {
    "NucELModel": "ModernBertModel",
    "NucELGenerator": "ModernBertForMaskedLM",
    "NucELForSequenceClassification": "ModernBertForSequenceClassification",
    "NucELForTokenClassification": "ModernBertForTokenClassification",
}
NUCEL_FOR_NATIVE = {native: nucel for nucel, native in NATIVE_FOR_NUCEL.items()}

# Written by saving, not carried over from the source's config.json.
SAVE_TIME_FIELDS = ("architectures", "auto_map", "model_type", "transformers_version", "_name_or_path")
# Our tokenizer ships with every converted folder, so the config's token ids are its ids. They decide no
# computation (the released config may still hold ModernBERT's English defaults, e.g. sep_token_id 50282).
TOKEN_ID_FIELDS = {
    f"{name}_token_id": VOCAB.index(f"[{name.upper()}]") for name in ("pad", "unk", "cls", "sep", "mask", "bos", "eos")
}

# Embedding (and MLM decoder) rows of a folder saved with the old ids: old row LEGACY_ROW_OF[i] becomes row i.
# The old layout was specials 0-6, A C G T 7-10, reserved 11-26; the bases swap places with four reserved rows.
LEGACY_ROW_OF = (
    list(range(len(SPECIAL_TOKENS))) + [11, 12, 13, 14] + list(LEGACY_BASE_IDS) + list(range(15, VOCAB_SIZE))
)
VOCABULARY_ROWS = ("tok_embeddings.weight", "decoder.weight", "decoder.bias")


class ConversionError(ValueError):
    """A checkpoint that cannot be converted; the message names the folder and what is wrong with it."""


def read_config_json(folder: Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ConversionError(f"{folder} is not a model folder: {path.name} is missing")
    return json.loads(path.read_text())


def architecture_of(folder: Path) -> str:
    architectures = read_config_json(folder).get("architectures") or []
    if len(architectures) != 1:
        raise ConversionError(f"{folder}/config.json names architectures {architectures}; expected exactly one")
    return architectures[0]


def load_nucel_model(folder: str | Path):
    """A saved NucEL model through our own classes (never remote code), chosen by config.json's architecture."""
    folder = Path(folder)
    architecture = architecture_of(folder)
    if architecture not in NUCEL_CLASSES:
        hint = (
            " (a native ModernBERT folder: import it first with `nucel convert import`)"
            if architecture in NUCEL_FOR_NATIVE
            else ""
        )
        raise ConversionError(f"{folder} holds a {architecture}, not a NucEL model{hint}")
    return NUCEL_CLASSES[architecture].from_pretrained(folder).eval()


def fold_base_restriction(generator: NucELGenerator) -> None:
    """Put `restrict_to_bases` into the decoder bias (NON_BASE_LOGIT_BIAS on every non-base token), in place.

    A generator this package trained has it there already; a checkpoint from elsewhere may not, and native ModernBERT
    (the Hub widget, exported folders) would then offer tokens the generator was never trained to score low. Finite,
    not -inf: an entropy over the vocabulary, -(p * log p).sum(), stays a number in both modes.
    """
    if not generator.config.restrict_to_bases:
        return
    if generator.decoder.bias is None:
        raise ConversionError("restrict_to_bases needs a decoder bias to fold into (config.decoder_bias is False)")
    non_base = torch.ones(generator.config.vocab_size, dtype=torch.bool)
    non_base[list(BASE_IDS)] = False
    with torch.no_grad():
        generator.decoder.bias.masked_fill_(non_base, NON_BASE_LOGIT_BIAS)


# ----------------------------------------------------------------------------------------------------------------
# Import: ModernBERT checkpoint on the released vocabulary -> NucEL


def check_released_vocabulary(source: Path, config: dict) -> None:
    """Refuse a checkpoint whose token ids are not ours: its embedding rows would be read as other tokens."""
    if config.get("vocab_size") != VOCAB_SIZE:
        raise ConversionError(
            f"{source}: a {config.get('vocab_size')}-row vocabulary is not the released NucEL vocabulary ({VOCAB_SIZE} "
            f"rows, {', '.join(f'{b}={i}' for b, i in zip(BASES, BASE_IDS))})"
        )
    vocab_file = source / "vocab.json"  # the released slow tokenizer's vocabulary, where the folder ships it
    if vocab_file.is_file():
        vocab = json.loads(vocab_file.read_text())
        wrong = {token: vocab.get(token) for token in SPECIAL_TOKENS + BASES if vocab.get(token) != VOCAB.index(token)}
        if wrong:
            raise ConversionError(f"{vocab_file}: token ids {wrong} differ from the released NucEL vocabulary's")


def nucel_config_from_native(source: Path) -> NucELConfig:
    """NucEL's config from a native config.json: every field carried over as written (RoPE bases, window, norm eps,
    attention pattern, in transformers 4.x or 5.x spelling), none replaced by a default; token ids set to ours."""
    native = read_config_json(source)
    if NUCEL_ONLY_FIELDS & set(native):
        raise ConversionError(f"{source} is already a NucEL folder; `import` reads native ModernBERT folders")
    check_released_vocabulary(source, native)
    fields = {key: value for key, value in native.items() if key not in SAVE_TIME_FIELDS}
    return NucELConfig(**{**fields, **TOKEN_ID_FIELDS})


def import_modernbert(source: str | Path, out: str | Path) -> Path:
    """Turn a ModernBERT folder on the released vocabulary into a dual-mode NucEL folder: the same weights, bit
    for bit, the complete auto_map, the code files and our tokenizer (the released model's ids and template)."""
    source = Path(source)
    architecture = architecture_of(source)
    if architecture not in NUCEL_FOR_NATIVE:
        raise ConversionError(f"{source} holds a {architecture}; import reads {sorted(NUCEL_FOR_NATIVE)}")
    config = nucel_config_from_native(source)
    state = getattr(transformers, architecture).from_pretrained(source).state_dict()
    model = NUCEL_CLASSES[NUCEL_FOR_NATIVE[architecture]](config)
    model.load_state_dict(state, strict=True)
    return save_model_folder(model.eval(), out, tokenizer=build_tokenizer())


# ----------------------------------------------------------------------------------------------------------------
# Migrate: a NucEL folder with the old ids -> the released ids


def migrate_legacy_folder(source: str | Path, out: str | Path) -> Path:
    """Rewrite a NucEL folder saved with A, C, G, T at 7-10: embedding and MLM-decoder rows move to the released
    ids, every other weight and setting stays; the folder gets the current code files and tokenizer.

    Outputs on the same DNA are unchanged, token for token. One difference remains by design: the old tokenizer
    appended `[SEP]`, the current one (the released model's template) does not.
    """
    source = Path(source)
    config = read_config_json(source)
    if "base_token_ids" in config:
        raise ConversionError(
            f"{source} already uses the released token ids {config['base_token_ids']}: nothing to migrate"
        )
    if not NUCEL_ONLY_FIELDS & set(config):
        raise ConversionError(
            f"{source} is not a NucEL folder (a native ModernBERT folder imports with `nucel convert import`)"
        )
    weights_file = source / "model.safetensors"
    if not weights_file.is_file():
        raise ConversionError(f"{source}: {weights_file.name} is missing")
    architecture = architecture_of(source)
    if architecture not in NUCEL_CLASSES:
        raise ConversionError(f"{source} holds a {architecture}, not a NucEL model")

    rows = torch.tensor(LEGACY_ROW_OF)
    state = {
        name: value[rows].clone() if name.endswith(VOCABULARY_ROWS) else value
        for name, value in load_file(weights_file).items()
    }
    fields = {key: value for key, value in config.items() if key not in SAVE_TIME_FIELDS}
    if fields.get("generator_config"):
        fields["generator_config"] = {**fields["generator_config"], "base_token_ids": list(BASE_IDS)}
    model = NUCEL_CLASSES[architecture](NucELConfig(**fields))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied weights (a generator's decoder, if tied) may be stored once; anything else missing is an error.
    if unexpected or [name for name in missing if not name.endswith("decoder.weight")]:
        raise ConversionError(
            f"{source}: weights do not match a {architecture} (missing {missing}, unexpected {unexpected})"
        )
    return save_model_folder(model.eval(), out, tokenizer=build_tokenizer())


# ----------------------------------------------------------------------------------------------------------------
# Export: NucEL -> native ModernBERT


def native_config_dict(config: NucELConfig, architecture: str) -> dict:
    fields = {key: value for key, value in config.to_dict().items() if key not in NUCEL_ONLY_FIELDS | {"auto_map"}}
    fields["architectures"] = [architecture]
    return fields


def export_modernbert(source: str | Path, out: str | Path) -> Path:
    """Write a NucEL folder as a native ModernBERT folder: same weights, our tokenizer, no auto_map, no code files.

    A generator's base restriction is folded into its decoder bias, so native fill-mask scores only A/C/G/T.
    """
    source = Path(source)
    model = load_nucel_model(source)
    name = type(model).__name__
    if name not in NATIVE_FOR_NUCEL:
        raise ConversionError(
            f"{source} holds a {name}; export one of {sorted(NATIVE_FOR_NUCEL)} "
            "(release the parts of a pre-training model separately)"
        )
    if isinstance(model, NucELGenerator):
        fold_base_restriction(model)
    architecture = NATIVE_FOR_NUCEL[name]
    config_fields = native_config_dict(model.config, architecture)
    native_model = getattr(transformers, architecture)(ModernBertConfig.from_dict(config_fields))
    native_model.load_state_dict(model.state_dict(), strict=True)
    with atomic_folder(out) as staging:
        native_model.save_pretrained(staging)
        # transformers 5.x writes the attention pattern and RoPE as layer_types/rope_parameters, which 4.x cannot
        # read; add the 4.x spelling (5.x reads it too) so the folder means the same under both.
        config_path = staging / "config.json"
        saved = json.loads(config_path.read_text())
        for key in ("global_attn_every_n_layers", "global_rope_theta", "local_rope_theta"):
            saved.setdefault(key, config_fields[key])
        config_path.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
        save_tokenizer(load_tokenizer(source), staging)
    return Path(out)


# ----------------------------------------------------------------------------------------------------------------
# Command line


CONVERSIONS = {"import": import_modernbert, "export": export_modernbert, "migrate": migrate_legacy_folder}


def run(args: argparse.Namespace) -> None:
    print(f"wrote {CONVERSIONS[args.direction](args.source, args.output)}")
