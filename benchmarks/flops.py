"""One FLOPs model for every figure that needs one: the speed benchmark's MFU and the study's equal-compute budgets.

Matmul FLOPs only (2 per multiply-add): the encoder's projections and MLP, attention scores and mixing over the keys
each query really sees (every key in a global layer, ±window/2 in a local one), the prediction heads' dense layer and
their output projections. A training step is 3 × the forward pass (backward ≈ 2 × forward). Sequences are
`[CLS] bases`: the tokenizer's template adds one token (TOKENS_BEFORE_BASES + TOKENS_AFTER_BASES).
"""

from nucel.modeling_nucel import NucELConfig
from nucel.modeling_nucel.configuration_nucel import GENERATOR_FOR
from nucel.tokenization import TOKENS_AFTER_BASES, TOKENS_BEFORE_BASES

BACKWARD_FACTOR = 3  # forward + backward


def encoder_flops(config: NucELConfig, sequence_lengths: list[int]) -> float:
    """Forward FLOPs of one encoder over sequences of these token lengths."""
    hidden, intermediate, window = config.hidden_size, config.intermediate_size, config.sliding_window
    linear_per_token = 2 * (hidden * 3 * hidden + hidden * hidden + hidden * 2 * intermediate + intermediate * hidden)
    total = 0.0
    for length in sequence_lengths:
        local_keys = sum(min(length - 1, p + window) - max(0, p - window) + 1 for p in range(length))
        for layer in range(config.num_hidden_layers):
            keys = length * length if config.is_global_layer(layer) else local_keys
            total += linear_per_token * length + 4 * hidden * keys  # QKᵀ and weights·V
    return total


def head_flops(config: NucELConfig, tokens: int) -> float:
    """The dense layer of a prediction head."""
    return 2 * config.hidden_size * config.hidden_size * tokens


def masked_lm_flops(config: NucELConfig, lengths: list[int], masked: int) -> float:
    """Forward FLOPs of an encoder with its MLM head, decoded at the masked positions."""
    return (
        encoder_flops(config, lengths)
        + head_flops(config, masked)
        + 2 * config.hidden_size * config.vocab_size * masked
    )


def discriminator_flops(config: NucELConfig, lengths: list[int]) -> float:
    """Forward FLOPs of an encoder with its RTD head (dense layer, then one logit per token)."""
    tokens = sum(lengths)
    return encoder_flops(config, lengths) + head_flops(config, tokens) + 2 * config.hidden_size * tokens


def pretraining_step_flops(config) -> dict:
    """Training FLOPs of one optimizer step of a PretrainingConfig, at full-length crops:
    {"per_step": total, "networks": {name: FLOPs}, "tokens_per_step": tokens}."""
    discriminator = NucELConfig.from_preset(config.model_preset)
    length = config.crop_length + TOKENS_BEFORE_BASES + TOKENS_AFTER_BASES
    masked = round(config.mask_probability * config.crop_length)
    crops = config.global_batch_size
    if config.objective == "rtd" and config.replacement == "uniform":  # the control: replacements need no network
        networks = {"discriminator": discriminator_flops(discriminator, [length])}
    elif config.objective == "rtd":
        generator = NucELConfig.from_preset(config.generator_preset or GENERATOR_FOR[config.model_preset])
        networks = {
            "generator": masked_lm_flops(generator, [length], masked),
            "discriminator": discriminator_flops(discriminator, [length]),
        }
    else:
        networks = {"encoder": masked_lm_flops(discriminator, [length], masked)}
    networks = {name: BACKWARD_FACTOR * flops * crops for name, flops in networks.items()}
    return {"per_step": sum(networks.values()), "networks": networks, "tokens_per_step": crops * length}
