"""A replica of the released NucEL-93M (Hugging Face FreakingPotato/NucEL), built from its published facts.

The release is a native ModernBERT folder: `config.json` with `model_type: "modernbert"`, a ModernBertModel whose
embedding has 27 rows, and the author's slow tokenizer (`NucEL_Tokenizer`, k=1: `vocab.json` +
`tokenizer_config.json`, remote code). Facts used here, and where they come from:
- vocabulary: specials [PAD] [UNK] [CLS] [SEP] [MASK] [BOS] [EOS] at 0-6; the tokenizer first numbers A, C, G, T
  7-10 and then re-numbers them 11-14 (its k-mer list, for k=1, is the four bases again); 16 reserved tokens follow
  at 15-30, of which the model's 27 rows hold 15-26 (docs/design.md, "The vocabulary: the released model's ids";
  the [27, 512] embedding matrix).
- tokenization: the text is upper-cased and stripped, `[CLS]` is prepended, each character becomes its base or
  [UNK]; no `[SEP]` is added (the slow tokenizer adds its `[CLS]` inside `_tokenize`, and
  `build_inputs_with_special_tokens` adds nothing).
- config values that are not ModernBERT's defaults, from the author's pre-training code (RNAELECTRA train.py,
  "adopted from the NucEL pre-training code"): norm_eps 1e-12, global and local RoPE bases 10000 and 1000, the
  token ids it sets (pad 0, cls 2, mask 4, unknown 1) while sep/bos/eos keep ModernBERT's English defaults; and
  the paper's hybrid attention (window 128, global every 3rd layer). The release's own config.json could not be
  read from here (no Hub access); the replica is only as faithful as these facts, and every value is carried
  over by the package whatever it is.
The replica is smaller than the release (4 layers, hidden 128, heads of the release's width 32) for speed.
"""

import json
from pathlib import Path

import torch
from transformers import ModernBertConfig, ModernBertModel

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[BOS]", "[EOS]"]

RELEASE_CONFIG = {
    "architectures": ["ModernBertModel"],
    "model_type": "modernbert",
    "transformers_version": "4.48.0",
    "vocab_size": 27,
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "hidden_activation": "gelu",
    "max_position_embeddings": 8192,
    "initializer_range": 0.02,
    "initializer_cutoff_factor": 2.0,
    "norm_eps": 1e-12,
    "layer_norm_eps": 1e-12,
    "norm_bias": False,
    "global_rope_theta": 10000.0,
    "local_rope_theta": 1000.0,
    "global_attn_every_n_layers": 3,
    "local_attention": 128,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "embedding_dropout": 0.0,
    "mlp_bias": False,
    "mlp_dropout": 0.0,
    "decoder_bias": True,
    "classifier_pooling": "cls",
    "classifier_dropout": 0.0,
    "classifier_bias": False,
    "classifier_activation": "gelu",
    "deterministic_flash_attn": False,
    "sparse_prediction": False,
    "sparse_pred_ignore_index": -100,
    "reference_compile": None,
    "tie_word_embeddings": False,
    "pad_token_id": 0,
    "unknown_token_id": 1,
    "cls_token_id": 2,
    "mask_token_id": 4,
    "sep_token_id": 50282,
    "bos_token_id": 50281,
    "eos_token_id": 50282,
    "torch_dtype": "float32",
}


def released_vocab() -> dict[str, int]:
    """vocab.json of the released tokenizer: 27 entries, ids up to 30."""
    vocab = {token: i for i, token in enumerate(SPECIALS)}
    vocab.update({base: 11 + i for i, base in enumerate("ACGT")})
    vocab.update({f"[RESERVED_{i}]": 15 + i for i in range(16)})
    return vocab


def released_tokenize(sequence: str, vocab: dict[str, int] | None = None) -> list[int]:
    """The released tokenizer's ids for one DNA string, from its documented behaviour."""
    vocab = vocab or released_vocab()
    characters = sequence.upper().strip()
    return [vocab["[CLS]"]] + [vocab[c] if c in "ACGT" else vocab["[UNK]"] for c in characters]


def released_batch(sequences: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (pad 0) and attention mask, as the released tokenizer pads."""
    rows = [released_tokenize(s) for s in sequences]
    width = max(map(len, rows))
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask


def write_release_replica(folder: Path, seed: int = 0, **config_overrides) -> Path:
    """A folder laid out like the release: native ModernBertModel weights, the release's config.json (transformers
    4.x spelling, as it was saved in 2025) and the slow tokenizer's files. Norm weights are randomised so that a
    dropped norm or epsilon shows, and queries and keys scaled up so that attention (and with it RoPE) is as
    peaked as in a trained model rather than near-uniform."""
    config_values = {**RELEASE_CONFIG, **config_overrides}
    native_fields = {
        k: v for k, v in config_values.items() if k not in ("architectures", "model_type", "transformers_version")
    }
    torch.manual_seed(seed)
    model = ModernBertModel(ModernBertConfig(**native_fields)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.uniform_(0.5, 1.5)
            elif "Wqkv" in name:
                parameter.mul_(4.0)
    model.save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(config_values, indent=2))
    (folder / "vocab.json").write_text(json.dumps(released_vocab(), indent=2))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "k": 1,
                "model_max_length": 1025,
                "padding_side": "right",
                "tokenizer_class": "NucEL_Tokenizer",
                "auto_map": {"AutoTokenizer": ["tokenizer.NucEL_Tokenizer", None]},
                **{f"{name}_token": f"[{name.upper()}]" for name in ("pad", "unk", "sep", "cls", "mask", "bos", "eos")},
            },
            indent=2,
        )
    )
    return folder
