"""The 27-token single-nucleotide tokenizer, built with `tokenizers` and served by `PreTrainedTokenizerFast`.

Saved folders hold only `tokenizer.json` + `tokenizer_config.json` + `special_tokens_map.json`: `AutoTokenizer`
loads them with no custom code and no `trust_remote_code`.

Behaviour: whitespace and newlines are dropped, input is upper-cased (soft-masked lowercase becomes
uppercase), one base is exactly one token, N and every other IUPAC ambiguity code become [UNK], the specials
([MASK] ...) are atomic, and sequences are wrapped as `[CLS] seq [SEP]` (pairs: `[CLS] a [SEP] b [SEP]`).
Decoding joins tokens without spaces, [UNK] decodes as N.
"""

import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from ..modeling_nucel.configuration_nucel import BASES, CLS_ID, NUM_RESERVED_TOKENS, SEP_ID, SPECIAL_TOKENS

# 1024 bp, the pre-training crop, plus [CLS] and [SEP]. Longer input is accepted by the model (RoPE) but the
# tokenizer warns, and truncates only when asked.
MODEL_MAX_LENGTH = 1026

VOCAB = SPECIAL_TOKENS + BASES + [f"[RESERVED_{i}]" for i in range(NUM_RESERVED_TOKENS)]


def build_backend_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel({token: i for i, token in enumerate(VOCAB)}, unk_token="[UNK]"))
    # tokenizers has no upper-casing normalizer; only a, c, g, t need it (every other letter is [UNK] either way).
    upper_case_bases = [normalizers.Replace(base.lower(), base) for base in BASES]
    tokenizer.normalizer = normalizers.Sequence([normalizers.Replace(Regex(r"\s+"), ""), *upper_case_bases])
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", CLS_ID), ("[SEP]", SEP_ID)],
    )
    tokenizer.decoder = decoders.Sequence([decoders.Replace("[UNK]", "N"), decoders.Fuse()])
    return tokenizer


def build_tokenizer(model_max_length: int = MODEL_MAX_LENGTH) -> PreTrainedTokenizerFast:
    """The NucEL tokenizer, ready to use and to `save_pretrained`."""
    return PreTrainedTokenizerFast(
        tokenizer_object=build_backend_tokenizer(),
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        bos_token="[BOS]",
        eos_token="[EOS]",
        model_max_length=model_max_length,
        padding_side="right",
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, folder: str | Path) -> None:
    """`save_pretrained`, then make `tokenizer_config.json` readable by transformers 4.x too: 5.x writes the
    class name "TokenizersBackend", which 4.x does not know."""
    tokenizer.save_pretrained(folder)
    config_path = Path(folder) / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
