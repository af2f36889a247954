"""The fast attention paths against independent references: banded local attention against the masked full
computation, unpadded against padded, packed sequences against each sequence alone, and every path against
transformers' ModernBERT, forward and backward."""

import math

import pytest
import torch
from modernbert_reference import dna_batch, reference_config
from transformers import ModernBertModel

from nucel import NucELConfig, NucELForPreTraining, NucELGenerator, NucELModel
from nucel.modeling_nucel.attention_nucel import UnpaddedLayout
from nucel.modeling_nucel.configuration_nucel import BASE_IDS, CLS_ID
from nucel.tokenization import token_length
from nucel.training.masking import mask_tokens
from nucel.training.packing import PackingCollator, pack_batch

# Lengths around the ±64 window and the 64-token blocks: shorter than the window, one past a block, several blocks.
LENGTHS = [300, 129, 64, 3, 190]


def tiny_model(cls=NucELModel, attn_implementation="sdpa"):
    model = cls(NucELConfig.from_preset("tiny")).eval()
    model.config._attn_implementation = attn_implementation
    return model


def reference_model(model: NucELModel) -> ModernBertModel:
    reference = ModernBertModel(reference_config(model.config, "eager")).eval()
    reference.load_state_dict(model.state_dict(), strict=True)
    return reference


def masked_full_attention(query, key, value, sequence_ids, positions, window):
    """Plain softmax(QKᵀ/√d)V over all tokens, keys masked to the same sequence (and ±window positions)."""
    scores = query @ key.transpose(-1, -2) / math.sqrt(query.shape[-1])
    allowed = sequence_ids[:, None] == sequence_ids[None, :]
    if window is not None:
        allowed &= (positions[:, None] - positions[None, :]).abs() <= window
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
    return (weights @ value).transpose(0, 1)  # (tokens, heads, head_dim)


@pytest.mark.parametrize("window", [64, None], ids=["local", "global"])
def test_unpadded_attention_equals_masked_full_attention_forward_and_backward(window):
    config = NucELConfig.from_preset("tiny")
    _, attention_mask = dna_batch(LENGTHS)
    layout = UnpaddedLayout.build(attention_mask, None, len(LENGTHS), attention_mask.shape[1], "cpu", config)
    heads, tokens, head_dim = 4, layout.tokens, 16
    inputs = [torch.randn(heads, tokens, head_dim, requires_grad=True) for _ in range(3)]
    upstream = torch.randn(tokens, heads, head_dim)

    fast, _ = layout.attend(*inputs, window=window, dropout=0.0, implementation="sdpa")
    fast_grads = torch.autograd.grad((fast * upstream).sum(), inputs)
    full = masked_full_attention(*inputs, layout.sequence_ids, layout.positions, window)
    full_grads = torch.autograd.grad((full * upstream).sum(), inputs)

    assert (fast - full).abs().max() <= 1e-5
    for fast_grad, full_grad in zip(fast_grads, full_grads):
        assert (fast_grad - full_grad).abs().max() <= 1e-5


def test_banded_attention_memory_grows_with_length_times_window():
    config = NucELConfig.from_preset("tiny")
    for length in (1_000, 20_000):
        layout = UnpaddedLayout.build(None, None, 1, length, "cpu", config)
        mask = layout.band_mask(torch.float32)
        assert mask.numel() <= (length + config.sliding_window) * 3 * config.sliding_window


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_every_path_matches_transformers_modernbert_forward_and_backward(attn_implementation):
    ours = tiny_model(attn_implementation=attn_implementation)
    reference = reference_model(ours)
    input_ids, attention_mask = dna_batch(LENGTHS)
    real = attention_mask.bool()
    weights = torch.randn(real.sum(), ours.config.hidden_size)

    outputs = {}
    for name, model in (("ours", ours), ("reference", reference)):
        hidden = model(input_ids, attention_mask=attention_mask).last_hidden_state[real]
        (hidden * weights).sum().backward()
        outputs[name] = (hidden.detach(), {n: p.grad for n, p in model.named_parameters()})
    assert (outputs["ours"][0] - outputs["reference"][0]).abs().max() <= 1e-5
    for name, grad in outputs["ours"][1].items():
        assert (grad - outputs["reference"][1][name]).abs().max() <= 1e-4 * max(1.0, grad.abs().max().item()), name


def test_unpadded_path_equals_padded_path_on_real_tokens():
    model = tiny_model(attn_implementation="sdpa")
    input_ids, attention_mask = dna_batch(LENGTHS)
    real = attention_mask.bool()
    with torch.no_grad():
        unpadded = model(input_ids, attention_mask=attention_mask, output_hidden_states=True)
        padded = model(input_ids, attention_mask=attention_mask, output_hidden_states=True, output_attentions=True)
    for fast, slow in zip(unpadded.hidden_states, padded.hidden_states):
        assert (fast - slow)[real].abs().max() <= 1e-5
    assert (unpadded.last_hidden_state[~real] == 0).all(), "padding positions come back as zeros"


def packed_row(lengths):
    """The sequences of `dna_batch(lengths)` concatenated in one row, positions restarting at each."""
    input_ids, attention_mask = dna_batch(lengths)
    packed = pack_batch(
        {"input_ids": input_ids, "attention_mask": attention_mask}, max_tokens=sum(map(token_length, lengths))
    )
    return input_ids, attention_mask, packed


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_packed_sequences_do_not_see_each_other(attn_implementation):
    ours = tiny_model(attn_implementation=attn_implementation)
    reference = reference_model(ours)
    input_ids, attention_mask, packed = packed_row(LENGTHS)
    assert packed["input_ids"].shape == (1, sum(map(token_length, LENGTHS)))
    with torch.no_grad():
        together = ours(
            packed["input_ids"], attention_mask=packed["attention_mask"], position_ids=packed["position_ids"]
        )
        start = 0
        for row, length in enumerate(LENGTHS):
            alone = reference(input_ids[row : row + 1, : token_length(length)]).last_hidden_state[0]
            segment = together.last_hidden_state[0, start : start + token_length(length)]
            assert (segment - alone).abs().max() <= 1e-5, f"sequence {row} differs when packed"
            start += token_length(length)

    # Changing one packed sequence leaves the others untouched.
    changed = packed["input_ids"].clone()
    changed[0, 1:10] = BASE_IDS[0]
    with torch.no_grad():
        after = ours(
            changed, attention_mask=packed["attention_mask"], position_ids=packed["position_ids"]
        ).last_hidden_state
    first = token_length(LENGTHS[0])
    assert (after[0, first:] == together.last_hidden_state[0, first:]).all()
    assert not torch.equal(after[0, :first], together.last_hidden_state[0, :first])


def test_packing_collator_fills_rows_and_keeps_labels_aligned():
    input_ids, attention_mask = dna_batch([100, 40, 30, 90, 10])
    masked, labels = mask_tokens(input_ids, generator=torch.Generator().manual_seed(0))
    padded = {"input_ids": masked, "attention_mask": attention_mask, "labels": labels, "window_index": torch.arange(5)}
    collator = PackingCollator(lambda examples: padded, max_tokens=150)
    packed = collator([None] * 5)
    assert set(packed) == {"input_ids", "attention_mask", "labels", "position_ids"}
    assert packed["input_ids"].shape[1] <= 150
    assert packed["attention_mask"].sum() == attention_mask.sum(), "every real token is kept, once"
    assert (packed["labels"] != -100).sum() == (labels != -100).sum()
    real = packed["attention_mask"].bool()
    assert sorted(packed["input_ids"][real].tolist()) == sorted(masked[attention_mask.bool()].tolist())
    starts = (packed["position_ids"] == 0) & real
    assert starts.sum() == 5 and (packed["input_ids"][starts] == CLS_ID).all(), (
        "each sequence starts at position 0 with [CLS]"
    )
    with pytest.raises(ValueError, match="does not fit"):
        pack_batch(padded, max_tokens=50)


def test_packed_pretraining_step_equals_the_padded_one():
    torch.manual_seed(0)
    model = NucELForPreTraining(NucELConfig.for_pretraining("tiny")).eval()
    input_ids, attention_mask = dna_batch([120, 70, 15])
    masked, labels = mask_tokens(input_ids, generator=torch.Generator().manual_seed(1))
    padded = {"input_ids": masked, "attention_mask": attention_mask, "labels": labels}
    packed = pack_batch(padded, max_tokens=512)
    torch.manual_seed(2)
    from_padded = model(**padded)
    torch.manual_seed(2)
    from_packed = model(**packed)
    # The masked positions come in the same order, so the generator draws the same replacements.
    assert torch.equal(
        from_padded.discriminator_input_ids[attention_mask.bool()],
        from_packed.discriminator_input_ids[packed["attention_mask"].bool()],
    )
    assert (from_padded.generator_loss - from_packed.generator_loss).abs() <= 1e-5
    assert (from_padded.discriminator_loss - from_packed.discriminator_loss).abs() <= 1e-5


def test_generator_accepts_packed_rows():
    model = tiny_model(NucELGenerator)
    input_ids, attention_mask, packed = packed_row([50, 20])
    with torch.no_grad():
        logits = model(
            packed["input_ids"], attention_mask=packed["attention_mask"], position_ids=packed["position_ids"]
        ).logits
        alone = model(input_ids[1:, : token_length(20)]).logits[0]
    second = token_length(50)  # where the second sequence starts in the packed row
    assert (logits[0, second : second + token_length(20)] - alone).abs().max() <= 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="flash-attn 2 runs on a CUDA GPU only")
def test_flash_attention_matches_sdpa_on_gpu():
    pytest.importorskip("flash_attn")
    model = tiny_model().cuda().to(torch.bfloat16)
    input_ids, attention_mask = (tensor.cuda() for tensor in dna_batch(LENGTHS))
    real = attention_mask.bool()
    with torch.no_grad():
        sdpa = model(input_ids, attention_mask=attention_mask).last_hidden_state
        model.config._attn_implementation = "flash_attention_2"
        flash = model(input_ids, attention_mask=attention_mask).last_hidden_state
    assert (sdpa - flash)[real].float().abs().max() <= 5e-2  # bf16
