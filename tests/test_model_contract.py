"""transformers' model contract, which tools built on transformers rely on: a settable `sliding_window`, a working
`set_attn_implementation`, gradient checkpointing through transformers' API, the padding warning, `torch.export`,
`torch.compile`, and mixed precision."""

from unittest import mock

import pytest
import torch
from modernbert_reference import dna_batch
from transformers import ModernBertConfig
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging

from nucel import NucELConfig, NucELForPreTraining, NucELModel
from nucel.modeling_nucel.attention_nucel import PaddedLayout, UnpaddedLayout
from nucel.training.masking import mask_tokens


def tiny_model(**overrides):
    torch.manual_seed(0)
    return NucELModel(NucELConfig.from_preset("tiny", **overrides))


def test_sliding_window_is_settable_and_means_what_native_modernbert_means():
    config = NucELConfig.from_preset("tiny")
    config.sliding_window = 32
    native = ModernBertConfig(local_attention=config.local_attention)
    assert config.local_attention == 64 and native.sliding_window == config.sliding_window == 32
    model = NucELModel(config).eval()
    input_ids, _ = dna_batch([200])
    with torch.no_grad():
        weights = model(input_ids, output_attentions=True).attentions[1]  # a local layer
    assert weights[0, :, 100, 133:].abs().max() == 0 and weights[0, :, 100, 132].abs().min() > 0


def test_set_attn_implementation_switches_the_computation():
    model = tiny_model().eval()
    input_ids, attention_mask = dna_batch([150, 60])
    with torch.no_grad():
        expected = model(input_ids, attention_mask=attention_mask).last_hidden_state
    for implementation, layout in (("eager", PaddedLayout), ("sdpa", UnpaddedLayout)):
        model.set_attn_implementation(implementation)
        assert model.config._attn_implementation == implementation
        with mock.patch.object(layout, "attend", autospec=True, side_effect=layout.attend) as attend, torch.no_grad():
            got = model(input_ids, attention_mask=attention_mask).last_hidden_state
        assert attend.call_count == model.config.num_hidden_layers
        assert all(call.args[-1] == implementation for call in attend.call_args_list)
        real = attention_mask.bool()
        torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=0)


def test_gradient_checkpointing_through_transformers_api_recomputes_and_keeps_gradients():
    input_ids, attention_mask = dna_batch([120, 50])

    def gradients(model):
        model.train()
        model.zero_grad()
        model(input_ids, attention_mask=attention_mask).last_hidden_state[
            attention_mask.bool()
        ].square().sum().backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    plain = gradients(tiny_model())
    for options in ({"use_reentrant": False}, {"use_reentrant": True}):
        model = tiny_model()
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
        assert model.is_gradient_checkpointing and all(layer.gradient_checkpointing for layer in model.layers)
        calls = []
        model.layers[1].mlp.register_forward_pre_hook(lambda *_: calls.append(1))
        checkpointed = gradients(model)
        assert len(calls) == 2, "the layer ran again in the backward pass"
        for name in plain:
            torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5)
    model.gradient_checkpointing_disable()
    assert not any(layer.gradient_checkpointing for layer in model.layers)


def test_a_padded_batch_without_attention_mask_warns():
    model = tiny_model().eval()
    input_ids, _ = dna_batch([80, 20])
    logger = logging.get_logger("transformers.modeling_utils")
    with CaptureLogger(logger) as captured, torch.no_grad():
        model(input_ids)
    assert "attention_mask" in captured.out


def test_torch_export_with_attention_mask_and_dynamic_batch_and_length():
    model = tiny_model().eval()
    input_ids, attention_mask = dna_batch([150, 60, 90])
    batch, length = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("length", min=2, max=4096)
    exported = torch.export.export(
        model,
        (),
        {"input_ids": input_ids, "attention_mask": attention_mask},
        dynamic_shapes={"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}},
    )
    for lengths in ([150, 60, 90], [300, 10], [40]):  # other batch sizes and lengths, padded and not
        input_ids, attention_mask = dna_batch(lengths)
        with torch.no_grad():
            expected = model(input_ids, attention_mask=attention_mask).last_hidden_state
        got = exported.module()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        real = attention_mask.bool()
        torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=0)


@pytest.mark.slow
def test_compiled_layers_equal_the_eager_model_in_inference_and_training():
    eager = tiny_model()
    compiled = tiny_model()
    compiled.compile_layers()  # fullgraph: any graph break inside a layer raises
    for lengths in ([300, 140, 20], [90, 500]):  # a second shape reuses the dynamic-shape graphs
        input_ids, attention_mask = dna_batch(lengths)
        real = attention_mask.bool()
        outputs, gradients = [], []
        for model in (eager, compiled):
            model.train()
            model.zero_grad()
            hidden = model(input_ids, attention_mask=attention_mask).last_hidden_state
            hidden[real].square().sum().backward()
            outputs.append(hidden[real].detach())
            gradients.append({name: p.grad for name, p in model.named_parameters()})
        torch.testing.assert_close(outputs[1], outputs[0], atol=1e-5, rtol=0)
        for name in gradients[0]:
            torch.testing.assert_close(gradients[1][name], gradients[0][name], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "attn_implementation",
    ["sdpa", "eager", pytest.param("flex_attention", marks=pytest.mark.slow)],  # flex compiles
)
def test_bf16_autocast_keeps_outputs_and_rtd_losses_near_fp32(attn_implementation):
    torch.manual_seed(0)
    model = NucELForPreTraining(NucELConfig.for_pretraining("tiny")).eval()  # fp32 weights
    model.set_attn_implementation(attn_implementation)
    input_ids, attention_mask = dna_batch([200, 120])
    masked, labels = mask_tokens(input_ids, generator=torch.Generator().manual_seed(1))
    results = []
    for autocast in (False, True):
        torch.manual_seed(3)  # the same replacements
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=masked, labels=labels, attention_mask=attention_mask)
            hidden = model.model(input_ids, attention_mask=attention_mask).last_hidden_state
        results.append((loss, hidden.float()))
    (fp32_loss, fp32_hidden), (bf16_loss, bf16_hidden) = results
    real = attention_mask.bool()
    assert (bf16_hidden[real] - fp32_hidden[real]).abs().max() < 0.1  # bf16 keeps 8 bits of mantissa
    for part in ("generator_loss", "discriminator_loss"):
        assert (
            abs(getattr(bf16_loss, part).item() - getattr(fp32_loss, part).item())
            < 0.02 * getattr(fp32_loss, part).item()
        )
