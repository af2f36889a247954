"""The 27-token single-nucleotide tokenizer, built with `tokenizers` and served by `PreTrainedTokenizerFast`.

Saved folders hold only `tokenizer.json` + `tokenizer_config.json` + `special_tokens_map.json`: `AutoTokenizer`
loads them with no custom code and no `trust_remote_code`.

Behaviour: whitespace and newlines are dropped, input is upper-cased (soft-masked lowercase becomes
uppercase), one base is exactly one token, N and every other IUPAC ambiguity code become [UNK], the specials
([MASK] ...) are atomic. Decoding joins tokens without spaces, [UNK] decodes as N.

The template is the released NucEL-93M's: its tokenizer (`NucEL_Tokenizer`, k=1) prepends `[CLS]` and appends
nothing, and the model was pre-trained on exactly that, so a sequence is `[CLS] seq` and base i sits at index i + 1.
A pair, which the release never saw, is `[CLS] a [SEP] b`.
"""

import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from nucel.modeling_nucel.configuration_nucel import BASES, CLS_ID, SEP_ID, SPECIAL_TOKENS, VOCAB

# Tokens the template adds before the bases of a single sequence ([CLS]) and after them (none).
TOKENS_BEFORE_BASES = 1
TOKENS_AFTER_BASES = 0


def token_length(bases: int) -> int:
    """How many tokens the template makes of a sequence of `bases` bases."""
    return TOKENS_BEFORE_BASES + bases + TOKENS_AFTER_BASES


# 1024 bp, the pre-training crop, plus [CLS]. Longer input is accepted by the model (RoPE) but the tokenizer warns,
# and truncates only when asked.
MODEL_MAX_LENGTH = token_length(1024)


def with_special_tokens(base_ids: list[int]) -> list[int]:
    """A row of model input from the ids of one sequence's bases, as the tokenizer's template builds it."""
    return [CLS_ID, *base_ids]


def build_backend_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel({token: i for i, token in enumerate(VOCAB)}, unk_token="[UNK]"))
    # tokenizers has no upper-casing normalizer; only a, c, g, t need it (every other letter is [UNK] either way).
    upper_case_bases = [normalizers.Replace(base.lower(), base) for base in BASES]
    tokenizer.normalizer = normalizers.Sequence([normalizers.Replace(Regex(r"\s+"), ""), *upper_case_bases])
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A",
        pair="[CLS] $A [SEP] $B:1",
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


def load_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerFast:
    """The tokenizer saved with a model (a folder or Hub id with `tokenizer.json`), else this package's.

    The released NucEL-93M ships only its slow, remote-code tokenizer (`NucEL_Tokenizer`); ours gives the same ids
    and the same `[CLS] seq` template without running that code, so it stands in for it.
    """
    folder = Path(name_or_path)
    if folder.is_dir():
        return AutoTokenizer.from_pretrained(folder) if (folder / "tokenizer.json").is_file() else build_tokenizer()
    try:
        return AutoTokenizer.from_pretrained(str(name_or_path))
    except (OSError, ValueError):  # a Hub repository with no fast tokenizer of its own
        return build_tokenizer()


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, folder: str | Path) -> None:
    """`save_pretrained`, then make `tokenizer_config.json` readable by transformers 4.x too: 5.x writes the
    class name "TokenizersBackend", which 4.x does not know."""
    tokenizer.save_pretrained(folder)
    config_path = Path(folder) / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
