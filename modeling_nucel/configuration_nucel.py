"""Configuration of NucEL models.

This file is copied next to every saved checkpoint and loaded by `trust_remote_code=True`, so it depends on
nothing but transformers' public `PretrainedConfig`.

`model_type` is "modernbert" on purpose ("dual mode"): the same config.json gives the NucEL classes through
its `auto_map` with `trust_remote_code=True`, and transformers' native ModernBERT classes without it (which
is what the Hub's serverless widgets use). Every field native ModernBERT reads therefore keeps its name and
meaning, in the spelling both transformers 4.x and 5.x understand.
"""

import copy

from transformers import PretrainedConfig

# The 27-token single-nucleotide vocabulary of the released NucEL-93M (Hugging Face FreakingPotato/NucEL; arXiv
# 2508.13191): its embedding has 27 rows, the seven specials at 0-6, rows 7-10 unused (the author's tokenizer first
# gives A-T these ids, then re-assigns them to 11-14), A C G T at 11-14 and reserved rows at 15-26. Every id in the
# package (tokenizer, masking, sampling, reverse complement, variant scores, the CNN one-hot) comes from here.
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[BOS]", "[EOS]"]
UNUSED_TOKENS = [f"[UNUSED_{i}]" for i in range(4)]
BASES = ["A", "C", "G", "T"]
RESERVED_TOKENS = [f"[RESERVED_{i}]" for i in range(12)]
VOCAB = SPECIAL_TOKENS + UNUSED_TOKENS + BASES + RESERVED_TOKENS  # token i has id i
VOCAB_SIZE = len(VOCAB)
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID, BOS_ID, EOS_ID = range(len(SPECIAL_TOKENS))
BASE_IDS = tuple(VOCAB.index(base) for base in BASES)  # A=11, C=12, G=13, T=14
# The ids this package used before it adopted the released vocabulary; only `nucel convert migrate` reads them.
LEGACY_BASE_IDS = (7, 8, 9, 10)

PRESETS = {
    # The released discriminator (paper's NucEL-93M): 92.3 M encoder parameters.
    "nucel-93m": dict(num_hidden_layers=22, hidden_size=512, num_attention_heads=16, intermediate_size=2048),
    # The RTD generator paired with it: about 11.5 M parameters.
    "nucel-generator": dict(num_hidden_layers=11, hidden_size=256, num_attention_heads=8, intermediate_size=1024),
    # Tiny models for tests and CPU demos; the window stays 128 so locality is exercised on short inputs.
    "tiny": dict(num_hidden_layers=4, hidden_size=64, num_attention_heads=4, intermediate_size=128),
    "tiny-generator": dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64),
    # A weaker generator than tiny-generator: RTD needs a discriminator well ahead of its generator.
    "tiny-generator-1x16": dict(num_hidden_layers=1, hidden_size=16, num_attention_heads=1, intermediate_size=32),
    # Between tiny and nucel-93m, for CPU studies of the recipe; its generator is half as wide and half as deep.
    "small": dict(num_hidden_layers=6, hidden_size=128, num_attention_heads=4, intermediate_size=256),
    "small-generator": dict(num_hidden_layers=3, hidden_size=64, num_attention_heads=2, intermediate_size=128),
}

# Layouts of the sequence classifier's head (`classifier_head`); see NucELConfig.
CLASSIFIER_HEADS = ("modernbert", "linear")

# Which generator a discriminator preset is pre-trained with.
GENERATOR_FOR = {"nucel-93m": "nucel-generator", "tiny": "tiny-generator", "small": "small-generator"}


# Settings of RTD pre-training (NucELForPreTraining) and their defaults. Only a pre-training configuration (one with
# a `generator_config`) carries them: an encoder's or a generator's config.json describes a network, not how it was
# trained. Folders saved before this rule carry some of them; loading drops them.
PRETRAINING_DEFAULTS = {
    "discriminator_weight": 50.0,
    "sampling_temperature": 1.0,
    "sampling_top_k": None,
    "disallow_correct": False,
    "embedding_sharing": "none",
    "replacement": "generator",
}
EMBEDDING_SHARING = ("none", "tied", "gdes")
REPLACEMENTS = ("generator", "uniform")

# Fields only NucEL's configs carry (native ModernBERT configs, the released NucEL-93M's included, have none).
NUCEL_ONLY_FIELDS = {
    "restrict_to_bases",
    "generator_config",
    "base_token_ids",
    "classifier_head",
    *PRETRAINING_DEFAULTS,
}


def global_attention_period(layer_types: list[str]) -> int:
    """n such that layer i is global exactly when i % n == 0, from transformers 5.x's `layer_types`."""
    global_layers = [i for i, kind in enumerate(layer_types) if kind == "full_attention"]
    period = global_layers[1] if len(global_layers) > 1 else len(layer_types)
    expected = ["full_attention" if i % period == 0 else "sliding_attention" for i in range(len(layer_types))]
    if list(layer_types) != expected:
        raise ValueError(f"layer_types {list(layer_types)} is not 'global attention every n-th layer from layer 0'")
    return period


def rope_bases(rope_parameters: dict) -> tuple[float, float]:
    """(global, local) RoPE base from transformers 5.x's `rope_parameters`; scaled RoPE variants are refused."""
    for kind in ("full_attention", "sliding_attention"):
        if rope_parameters[kind].get("rope_type", "default") != "default":
            raise ValueError(f"RoPE scaling {rope_parameters[kind]} is not supported by NucEL")
    return rope_parameters["full_attention"]["rope_theta"], rope_parameters["sliding_attention"]["rope_theta"]


class NucELConfig(PretrainedConfig):
    r"""Configuration of a NucEL encoder (ModernBERT architecture, single-nucleotide vocabulary).

    Args beyond ModernBERT's own:
        restrict_to_bases (`bool`): the masked-LM head scores only A, C, G, T (other logits are -inf).
        generator_config (`dict`, *optional*): for `NucELForPreTraining`, the generator's configuration; this
            configuration then describes the discriminator, and only then takes the pre-training settings:
        discriminator_weight (`float`): λ in `L = L_generator + λ·L_discriminator` (50 in the paper).
        sampling_temperature (`float`): RTD replacements are drawn from softmax(generator logits / temperature)
            over the bases (1.0: the generator's own distribution; the author's code uses 0.9).
        sampling_top_k (`int`, *optional*): draw only from the generator's k most likely bases (None: all four;
            the author's code uses 2).
        disallow_correct (`bool`): never draw the original base (ELECTRA's option), so every masked base is replaced.
        embedding_sharing (`str`): the token embeddings of generator and discriminator: "none" (each its own),
            "tied" (ELECTRA: one table, the discriminator's; a narrower generator reads it through a projection) or
            "gdes" (DeBERTa-v3: the discriminator's table is the generator's, projected when the widths differ and
            without its gradient, plus a zero-initialised table of its own).
        replacement (`str`): "generator" (RTD), or "uniform": a control without a generator, every masked base
            replaced by another base drawn uniformly.
        classifier_head (`str`): the sequence classifier's layout: "modernbert" (ModernBertForSequenceClassification's
            dense -> activation -> norm before the output layer) or "linear" (the paper's: one linear layer on the
            pooled vector; native ModernBERT cannot express it, so such a classifier needs `trust_remote_code`).
        base_token_ids (`list[int]`): the ids of A, C, G, T this model was trained with. Written into every saved
            config so that a checkpoint from another vocabulary is recognised instead of silently misread.

    Local layers attend to keys within ±`local_attention // 2` positions; layer i is global when
    `i % global_attn_every_n_layers == 0`. A ModernBERT config written by transformers 5.x spells these as
    `layer_types` and `rope_parameters`; both spellings are read, so a native folder loads with its own values.
    """

    model_type = "modernbert"

    def __init__(
        self,
        vocab_size=VOCAB_SIZE,
        hidden_size=512,
        intermediate_size=2048,
        num_hidden_layers=22,
        num_attention_heads=16,
        hidden_activation="gelu",
        max_position_embeddings=8192,
        initializer_range=0.02,
        initializer_cutoff_factor=2.0,
        norm_eps=1e-5,
        norm_bias=False,
        pad_token_id=PAD_ID,
        unk_token_id=UNK_ID,
        cls_token_id=CLS_ID,
        sep_token_id=SEP_ID,
        mask_token_id=MASK_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        global_rope_theta=160000.0,
        local_rope_theta=10000.0,
        global_attn_every_n_layers=3,
        local_attention=128,
        attention_bias=False,
        attention_dropout=0.0,
        embedding_dropout=0.0,
        mlp_bias=False,
        mlp_dropout=0.0,
        decoder_bias=True,
        classifier_pooling="cls",
        classifier_dropout=0.0,
        classifier_bias=False,
        classifier_activation="gelu",
        classifier_head="modernbert",
        restrict_to_bases=False,
        generator_config=None,
        base_token_ids=BASE_IDS,
        tie_word_embeddings=False,
        **kwargs,
    ):
        # transformers 5.x's spelling of the attention pattern and the RoPE bases wins where present: it is what
        # native ModernBERT computes with when it reads the same config.json.
        if layer_types := kwargs.pop("layer_types", None):
            global_attn_every_n_layers = global_attention_period(layer_types)
        if rope_parameters := kwargs.pop("rope_parameters", None):
            global_rope_theta, local_rope_theta = rope_bases(rope_parameters)
        if tuple(base_token_ids) != BASE_IDS:
            raise ValueError(
                f"this checkpoint's bases A, C, G, T have ids {list(base_token_ids)}, this NucEL's have "
                f"{list(BASE_IDS)}; convert the checkpoint with `nucel convert migrate` first"
            )
        pretraining = {name: kwargs.pop(name, default) for name, default in PRETRAINING_DEFAULTS.items()}
        if generator_config is not None:
            check_pretraining_settings(pretraining)
            for name, value in pretraining.items():
                setattr(self, name, value)
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}"
            )
        if local_attention % 2:
            raise ValueError(f"local_attention must be even (a window of ±local_attention/2), got {local_attention}")
        if classifier_pooling not in ("cls", "mean"):
            raise ValueError(f"classifier_pooling must be 'cls' or 'mean', got {classifier_pooling!r}")
        if classifier_head not in CLASSIFIER_HEADS:
            raise ValueError(f"classifier_head must be one of {CLASSIFIER_HEADS}, got {classifier_head!r}")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.hidden_activation = hidden_activation
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.initializer_cutoff_factor = initializer_cutoff_factor
        self.norm_eps = norm_eps
        self.norm_bias = norm_bias
        self.unk_token_id = unk_token_id
        self.cls_token_id = cls_token_id
        self.sep_token_id = sep_token_id
        self.mask_token_id = mask_token_id
        self.global_rope_theta = global_rope_theta
        self.local_rope_theta = local_rope_theta
        self.global_attn_every_n_layers = global_attn_every_n_layers
        self.local_attention = local_attention
        self.attention_bias = attention_bias
        self.attention_dropout = attention_dropout
        self.embedding_dropout = embedding_dropout
        self.mlp_bias = mlp_bias
        self.mlp_dropout = mlp_dropout
        self.decoder_bias = decoder_bias
        self.classifier_pooling = classifier_pooling
        self.classifier_dropout = classifier_dropout
        self.classifier_bias = classifier_bias
        self.classifier_activation = classifier_activation
        self.classifier_head = classifier_head
        self.restrict_to_bases = restrict_to_bases
        self.generator_config = (
            generator_config.to_dict() if isinstance(generator_config, PretrainedConfig) else generator_config
        )
        self.base_token_ids = list(base_token_ids)
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs) -> "NucELConfig":
        """Every load goes through here: refuse a NucEL checkpoint saved before the vocabulary became the released
        one (it has NucEL's own fields but no `base_token_ids`), whose embedding rows would be read as other tokens."""
        if "base_token_ids" not in config_dict and NUCEL_ONLY_FIELDS & set(config_dict):
            raise ValueError(
                f"this NucEL checkpoint was saved with the old token ids (A, C, G, T = {list(LEGACY_BASE_IDS)}); NucEL "
                f"now uses the released NucEL-93M's ({list(BASE_IDS)}). Migrate the folder once: "
                "`nucel convert migrate OLD_FOLDER NEW_FOLDER`"
            )
        return super().from_dict(config_dict, **kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "NucELConfig":
        """A named configuration: "nucel-93m", "nucel-generator", "tiny" or "tiny-generator"."""
        if name not in PRESETS:
            raise ValueError(f"unknown NucEL preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @classmethod
    def for_pretraining(
        cls, preset: str, generator_preset: str | None = None, generator_overrides: dict | None = None, **overrides
    ) -> "NucELConfig":
        """The discriminator preset (with `overrides`) and its generator (with `generator_overrides`) attached, for
        `NucELForPreTraining`."""
        generator_preset = generator_preset or GENERATOR_FOR.get(preset)
        if generator_preset is None:
            raise ValueError(f"preset {preset!r} has no default generator; name one")
        generator = cls.from_preset(generator_preset, restrict_to_bases=True, **(generator_overrides or {}))
        return cls.from_preset(preset, generator_config=generator.to_dict(), **overrides)

    @property
    def sliding_window(self) -> int:
        """Half-width of the local window: a local layer's query at i sees keys j with |i - j| <= sliding_window."""
        return self.local_attention // 2

    @sliding_window.setter
    def sliding_window(self, half_width: int) -> None:
        self.local_attention = 2 * half_width

    def is_global_layer(self, layer_idx: int) -> bool:
        return layer_idx % self.global_attn_every_n_layers == 0

    # Not named `generator`: transformers 4.x takes an attribute of that name for a sub-config
    # (`get_text_config`), and then ties and re-initialises the MLM decoder on load.
    def generator_configuration(self) -> "NucELConfig":
        """The generator's configuration (pre-training configurations only)."""
        if self.generator_config is None:
            raise ValueError("this configuration has no generator_config; build it with NucELConfig.for_pretraining")
        return network_configuration(self.generator_config)

    def encoder_configuration(self) -> "NucELConfig":
        """This configuration as an encoder's: without the generator and the pre-training settings (what the
        exported discriminator carries)."""
        values = self.to_dict()
        for key in ("generator_config", *PRETRAINING_DEFAULTS):
            values.pop(key, None)
        return network_configuration(values)


def network_configuration(values: dict) -> NucELConfig:
    """A fresh NucELConfig from another's `to_dict()`, without what describes a saved file rather than a network."""
    values = copy.deepcopy(values)
    for key in ("model_type", "transformers_version", "architectures", "auto_map"):
        values.pop(key, None)
    return NucELConfig(**values)


def check_pretraining_settings(settings: dict) -> None:
    """One-line errors for pre-training settings (PRETRAINING_DEFAULTS' names) no NucELForPreTraining trains with."""
    discriminator_weight, sampling_temperature, sampling_top_k = (
        settings["discriminator_weight"],
        settings["sampling_temperature"],
        settings["sampling_top_k"],
    )
    embedding_sharing, replacement = settings["embedding_sharing"], settings["replacement"]
    if discriminator_weight < 0:
        raise ValueError(f"discriminator_weight must be at least 0, got {discriminator_weight}")
    if sampling_temperature <= 0:
        raise ValueError(f"sampling_temperature must be positive, got {sampling_temperature}")
    if sampling_top_k is not None and not 1 <= sampling_top_k <= len(BASES):
        raise ValueError(
            f"sampling_top_k must be between 1 and {len(BASES)} (or None for all bases), got {sampling_top_k}"
        )
    if embedding_sharing not in EMBEDDING_SHARING:
        raise ValueError(f"embedding_sharing must be one of {EMBEDDING_SHARING}, got {embedding_sharing!r}")
    if replacement not in REPLACEMENTS:
        raise ValueError(f"replacement must be one of {REPLACEMENTS}, got {replacement!r}")
    if replacement == "uniform" and embedding_sharing != "none":
        raise ValueError(
            "replacement 'uniform' runs no generator, whose embedding could be shared: embedding_sharing none"
        )
