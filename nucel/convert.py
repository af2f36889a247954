"""Moving checkpoints between NucEL and native ModernBERT.

Parameter names are the same on both sides (DESIGN.md section 3.2); what differs is the token layout and the
config. Import turns a ModernBERT-format checkpoint (the published NucEL weights, FreakingPotato/NucEL, or any
ModernBERT trained on our vocabulary) into a NucEL folder; export writes a NucEL checkpoint as a plain ModernBERT
folder (no auto_map, no code files) for tools that never run remote code.

    nucel convert import SOURCE OUT      # ModernBERT (27- or 31-row vocabulary) -> NucEL folder
    nucel convert export SOURCE OUT      # NucEL folder -> native ModernBERT folder
"""

import argparse
import json
from pathlib import Path

import torch
import transformers
from transformers import AutoTokenizer, ModernBertConfig

from .folders import atomic_folder, save_model_folder
from .modeling_nucel import (
    NucELConfig,
    NucELForPreTraining,
    NucELForSequenceClassification,
    NucELForTokenClassification,
    NucELGenerator,
    NucELModel,
)
from .modeling_nucel.configuration_nucel import BASE_IDS, SPECIAL_TOKENS, VOCAB_SIZE
from .tokenization import build_tokenizer, save_tokenizer

NUCEL_CLASSES = {
    cls.__name__: cls
    for cls in (NucELModel, NucELGenerator, NucELForSequenceClassification, NucELForTokenClassification, NucELForPreTraining)
}
NATIVE_FOR_NUCEL = {
    "NucELModel": "ModernBertModel",
    "NucELGenerator": "ModernBertForMaskedLM",
    "NucELForSequenceClassification": "ModernBertForSequenceClassification",
    "NucELForTokenClassification": "ModernBertForTokenClassification",
}
NUCEL_FOR_NATIVE = {native: nucel for nucel, native in NATIVE_FOR_NUCEL.items()}

# The published NucEL checkpoint: the seven specials at 0-6 in our order, four unused rows (7-10), A C G T at
# 11-14 and 16 further rows (15-30): 31 rows. Entry i is the published row that becomes our token i.
PUBLISHED_ROWS = list(range(len(SPECIAL_TOKENS))) + [11, 12, 13, 14] + list(range(15, 31))
PUBLISHED_VOCAB_SIZE = 31
LAYOUTS = {"nucel": list(range(VOCAB_SIZE)), "published": PUBLISHED_ROWS}

# Fields that only NucEL reads; native ModernBERT configs carry none of them.
NUCEL_ONLY_FIELDS = ("auto_map", "restrict_to_bases", "generator_config", "discriminator_weight")

# ModernBERT fields that mean the same in NucELConfig and are copied across as they are.
SHARED_FIELDS = (
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "hidden_activation",
    "max_position_embeddings", "initializer_range", "initializer_cutoff_factor", "norm_eps", "norm_bias",
    "local_attention", "attention_bias", "attention_dropout", "embedding_dropout", "mlp_bias", "mlp_dropout",
    "decoder_bias", "classifier_pooling", "classifier_dropout", "classifier_bias", "classifier_activation",
)


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
        hint = " (a native ModernBERT folder: import it first with `nucel convert import`)" if architecture in NUCEL_FOR_NATIVE else ""
        raise ConversionError(f"{folder} holds a {architecture}, not a NucEL model{hint}")
    return NUCEL_CLASSES[architecture].from_pretrained(folder).eval()


def load_tokenizer_or_default(folder: Path):
    """The folder's own tokenizer when it ships one (it may carry a different model_max_length), else ours."""
    if (Path(folder) / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(folder)
    return build_tokenizer()


def fold_base_restriction(generator: NucELGenerator) -> None:
    """Put `restrict_to_bases` into the decoder bias (-inf on every non-base token), in place.

    NucEL applies the restriction in code; native ModernBERT (the Hub widget, exported folders) does not, and its
    fill-mask would offer tokens the generator was never trained to score low. With the bias folded in, both give
    identical logits: NucEL's mask then changes nothing.
    """
    if not generator.config.restrict_to_bases:
        return
    if generator.decoder.bias is None:
        raise ConversionError("restrict_to_bases needs a decoder bias to fold into (config.decoder_bias is False)")
    non_base = torch.ones(generator.config.vocab_size, dtype=torch.bool)
    non_base[list(BASE_IDS)] = False
    with torch.no_grad():
        generator.decoder.bias.masked_fill_(non_base, float("-inf"))


# ----------------------------------------------------------------------------------------------------------------
# Import: ModernBERT checkpoint -> NucEL


def global_every_n_layers(native: ModernBertConfig, source: Path) -> int:
    """transformers 5.x stores the attention pattern as `layer_types`; NucEL needs the period of global layers."""
    layer_types = getattr(native, "layer_types", None)
    if not layer_types:
        return native.global_attn_every_n_layers
    global_layers = [i for i, kind in enumerate(layer_types) if kind == "full_attention"]
    period = global_layers[1] if len(global_layers) > 1 else len(layer_types)
    expected = ["full_attention" if i % period == 0 else "sliding_attention" for i in range(len(layer_types))]
    if layer_types != expected:
        raise ConversionError(f"{source}: layer_types {layer_types} is not 'global every n-th layer from layer 0'")
    return period


def rope_thetas(native: ModernBertConfig, source: Path) -> tuple[float, float]:
    parameters = getattr(native, "rope_parameters", None)
    if not parameters:
        return native.global_rope_theta, native.local_rope_theta
    for kind in ("full_attention", "sliding_attention"):
        if parameters[kind].get("rope_type", "default") != "default":
            raise ConversionError(f"{source}: rope scaling {parameters[kind]} is not supported by NucEL")
    return parameters["full_attention"]["rope_theta"], parameters["sliding_attention"]["rope_theta"]


def nucel_config_from_native(native: ModernBertConfig, architecture: str, source: Path) -> NucELConfig:
    global_theta, local_theta = rope_thetas(native, source)
    labels = {}
    if architecture in ("ModernBertForSequenceClassification", "ModernBertForTokenClassification"):
        labels = dict(id2label=native.id2label, label2id=native.label2id, problem_type=native.problem_type)
    return NucELConfig(
        **{name: getattr(native, name) for name in SHARED_FIELDS},
        global_attn_every_n_layers=global_every_n_layers(native, source),
        global_rope_theta=global_theta,
        local_rope_theta=local_theta,
        **labels,
    )


def import_modernbert(source: str | Path, out: str | Path, layout: str = "auto") -> Path:
    """Convert a ModernBERT-format checkpoint into a NucEL folder (weights, code, complete auto_map, our tokenizer).

    `layout`: "nucel" (our 27 rows), "published" (the published NucEL's 31 rows, bases at 11-14) or "auto" (by the
    embedding's row count). Embedding rows, and for a masked-LM checkpoint the decoder rows and bias, are reordered
    to our ids; everything else is copied unchanged.
    """
    source = Path(source)
    architecture = architecture_of(source)
    if architecture not in NUCEL_FOR_NATIVE:
        raise ConversionError(f"{source} holds a {architecture}; import reads {sorted(NUCEL_FOR_NATIVE)}")
    native_model = getattr(transformers, architecture).from_pretrained(source)
    native_config = native_model.config
    if layout == "auto":
        layout = {VOCAB_SIZE: "nucel", PUBLISHED_VOCAB_SIZE: "published"}.get(native_config.vocab_size)
        if layout is None:
            raise ConversionError(
                f"{source}: a {native_config.vocab_size}-row vocabulary is neither NucEL's ({VOCAB_SIZE}) nor the "
                f"published NucEL's ({PUBLISHED_VOCAB_SIZE})"
            )
    rows = torch.tensor(LAYOUTS[layout])
    if native_config.vocab_size <= int(rows.max()):
        raise ConversionError(f"{source}: layout {layout!r} needs {int(rows.max()) + 1} rows, the checkpoint has {native_config.vocab_size}")

    state = native_model.state_dict()
    for name in list(state):
        if name.endswith("tok_embeddings.weight") or name in ("decoder.weight", "decoder.bias"):
            state[name] = state[name][rows].clone()
    model = NUCEL_CLASSES[NUCEL_FOR_NATIVE[architecture]](nucel_config_from_native(native_config, architecture, source))
    model.load_state_dict(state, strict=True)
    return save_model_folder(model.eval(), out, tokenizer=build_tokenizer())


# ----------------------------------------------------------------------------------------------------------------
# Export: NucEL -> native ModernBERT


def native_config_dict(config: NucELConfig, architecture: str) -> dict:
    fields = {key: value for key, value in config.to_dict().items() if key not in NUCEL_ONLY_FIELDS}
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
        raise ConversionError(f"{source} holds a {name}; export one of {sorted(NATIVE_FOR_NUCEL)} (release the parts of a pre-training model separately)")
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
        save_tokenizer(load_tokenizer_or_default(source), staging)
    return Path(out)


# ----------------------------------------------------------------------------------------------------------------
# Command line


def add_parser(subparsers) -> None:
    """Register `nucel convert import|export`."""
    parser = subparsers.add_parser("convert", help="import a ModernBERT checkpoint into NucEL, or export NucEL as native ModernBERT")
    directions = parser.add_subparsers(dest="direction", required=True)
    importer = directions.add_parser("import", help="ModernBERT-format checkpoint (e.g. the published NucEL) -> NucEL folder")
    importer.add_argument("source", type=Path, help="folder with config.json and the ModernBERT weights")
    importer.add_argument("out", type=Path, help="NucEL folder to write")
    importer.add_argument("--layout", choices=["auto", *LAYOUTS], default="auto",
                          help="token layout of the source: nucel (27 rows), published (31 rows, bases at 11-14); auto by row count")
    exporter = directions.add_parser("export", help="NucEL folder -> native ModernBERT folder (no remote code)")
    exporter.add_argument("source", type=Path, help="NucEL model folder")
    exporter.add_argument("out", type=Path, help="native ModernBERT folder to write")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    if args.direction == "import":
        folder = import_modernbert(args.source, args.out, layout=args.layout)
    else:
        folder = export_modernbert(args.source, args.out)
    print(f"wrote {folder}")
