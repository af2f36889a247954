"""NucEL models against transformers' own ModernBERT, and the attention invariants the design demands."""

import pytest
import torch
from modernbert_reference import dna_batch, reference_config
from transformers import ModernBertForMaskedLM, ModernBertModel

from nucel import NucELConfig, NucELForSequenceClassification, NucELForTokenClassification, NucELGenerator, NucELModel
from nucel.modeling_nucel.configuration_nucel import BASE_IDS
from nucel.tokenization import token_length

ATTENTION_BACKENDS = ["sdpa", "eager"]


def tiny(cls=NucELModel, attn_implementation="sdpa", **overrides):
    model = cls(NucELConfig.from_preset("tiny", **overrides)).eval()
    model.config._attn_implementation = attn_implementation
    return model


@pytest.mark.parametrize("attn_implementation", ATTENTION_BACKENDS)
def test_encoder_matches_transformers_modernbert(attn_implementation):
    ours = tiny(attn_implementation=attn_implementation)
    reference = ModernBertModel(reference_config(ours.config, attn_implementation)).eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    input_ids, attention_mask = dna_batch([300, 170, 60])  # longer than the ±64 window
    real = attention_mask.bool()
    with torch.no_grad():
        expected = reference(input_ids, attention_mask=attention_mask).last_hidden_state
        actual = ours(input_ids, attention_mask=attention_mask).last_hidden_state
    assert (actual - expected)[real].abs().max().item() <= 1e-5


@pytest.mark.parametrize("attn_implementation", ATTENTION_BACKENDS)
def test_generator_matches_transformers_modernbert_masked_lm(attn_implementation):
    ours = tiny(NucELGenerator, attn_implementation)
    reference = ModernBertForMaskedLM(reference_config(ours.config, attn_implementation)).eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    input_ids, attention_mask = dna_batch([280, 200])
    real = attention_mask.bool()
    with torch.no_grad():
        expected = reference(input_ids, attention_mask=attention_mask).logits
        actual = ours(input_ids, attention_mask=attention_mask).logits
    assert (actual - expected)[real].abs().max().item() <= 1e-5


def test_attention_backends_agree():
    model = tiny()
    input_ids, attention_mask = dna_batch([250, 120])
    real = attention_mask.bool()
    with torch.no_grad():
        sdpa = model(input_ids, attention_mask=attention_mask).last_hidden_state
        model.config._attn_implementation = "eager"
        eager = model(input_ids, attention_mask=attention_mask).last_hidden_state
    assert (sdpa - eager)[real].abs().max().item() <= 1e-5


def layer_outputs_for_two_inputs(layer_index, position, length=300):
    """One layer's output for random hidden states, and for the same states changed at `position` only."""
    model = tiny()
    layer = model.layers[layer_index]
    hidden = torch.randn(1, length, model.config.hidden_size)
    changed = hidden.clone()
    changed[0, position] += torch.randn(model.config.hidden_size)
    context = model.attention_context(None, 1, length, hidden.device)
    with torch.no_grad():
        return layer(hidden, context)[0][0], layer(changed, context)[0][0]


def test_a_local_layer_sees_only_plus_minus_64_tokens():
    position, window = 150, 64
    assert not NucELConfig.from_preset("tiny").is_global_layer(1)
    before, after = layer_outputs_for_two_inputs(layer_index=1, position=position)
    changed = (before - after).abs().amax(dim=-1) > 1e-6
    inside = torch.zeros_like(changed)
    inside[position - window : position + window + 1] = True
    assert changed[inside].all(), "every position within ±64 must see the change"
    assert not changed[~inside].any(), "no position beyond ±64 may see the change"


def test_a_global_layer_sees_every_token():
    assert NucELConfig.from_preset("tiny").is_global_layer(0) and NucELConfig.from_preset("tiny").is_global_layer(3)
    before, after = layer_outputs_for_two_inputs(layer_index=0, position=150)
    assert ((before - after).abs().amax(dim=-1) > 1e-6).all()


def test_global_layers_are_every_third_from_zero():
    config = NucELConfig.from_preset("nucel-93m")
    assert [i for i in range(22) if config.is_global_layer(i)] == [0, 3, 6, 9, 12, 15, 18, 21]
    assert config.sliding_window == 64


@pytest.mark.parametrize("attn_implementation", ATTENTION_BACKENDS)
def test_padded_batch_gives_each_sequence_its_solo_outputs(attn_implementation):
    model = tiny(attn_implementation=attn_implementation)
    lengths = [310, 140, 20]
    input_ids, attention_mask = dna_batch(lengths)
    with torch.no_grad():
        batched = model(input_ids, attention_mask=attention_mask).last_hidden_state
        for row, length in enumerate(lengths):
            alone = model(input_ids[row : row + 1, : token_length(length)]).last_hidden_state[0]
            assert (batched[row, : token_length(length)] - alone).abs().max().item() <= 1e-5
    assert torch.isfinite(batched).all(), "padding positions must not produce NaN"


def test_output_attentions_uses_eager_and_rows_sum_to_one_over_real_tokens():
    model = tiny()  # sdpa configured: the call must still return weights
    input_ids, attention_mask = dna_batch([200, 90])
    with torch.no_grad():
        outputs = model(input_ids, attention_mask=attention_mask, output_attentions=True, output_hidden_states=True)
    assert len(outputs.attentions) == model.config.num_hidden_layers
    assert len(outputs.hidden_states) == model.config.num_hidden_layers + 1
    weights = outputs.attentions[1]  # a local layer
    real = attention_mask.bool()
    row_sums = weights.sum(-1).transpose(1, 2)[real]
    assert torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-5)
    assert weights[1, :, : token_length(90), token_length(90) :].abs().max() == 0, "padding is never attended"
    assert weights[0, :, 10, 10 + 65 :].abs().max() == 0, "local layers attend within ±64 only"


def test_generator_can_be_restricted_to_bases():
    model = tiny(NucELGenerator, restrict_to_bases=True)
    input_ids, attention_mask = dna_batch([50])
    with torch.no_grad():
        logits = model(input_ids, attention_mask=attention_mask).logits
    probabilities = logits.softmax(-1)
    assert torch.allclose(probabilities[..., list(BASE_IDS)].sum(-1), torch.ones(logits.shape[:2]))


def test_sequence_classification_problem_types_and_pooling():
    input_ids, attention_mask = dna_batch([80, 40])
    single = tiny(NucELForSequenceClassification, num_labels=3, classifier_pooling="mean")
    output = single(input_ids, attention_mask=attention_mask, labels=torch.tensor([0, 2]))
    expected = torch.nn.functional.cross_entropy(output.logits, torch.tensor([0, 2]))
    assert single.config.problem_type == "single_label_classification" and torch.allclose(output.loss, expected)

    multi = tiny(NucELForSequenceClassification, num_labels=2, problem_type="multi_label_classification")
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    output = multi(input_ids, attention_mask=attention_mask, labels=labels)
    assert torch.allclose(output.loss, torch.nn.functional.binary_cross_entropy_with_logits(output.logits, labels))

    regression = tiny(NucELForSequenceClassification, num_labels=1)
    targets = torch.tensor([0.5, -1.0])
    output = regression(input_ids, attention_mask=attention_mask, labels=targets)
    assert regression.config.problem_type == "regression"
    assert torch.allclose(output.loss, ((output.logits.squeeze(-1) - targets) ** 2).mean())


def test_mean_pooling_ignores_padding():
    model = tiny(NucELForSequenceClassification, num_labels=2, classifier_pooling="mean")
    input_ids, attention_mask = dna_batch([150, 30])
    with torch.no_grad():
        batched = model(input_ids, attention_mask=attention_mask).logits[1]
        alone = model(input_ids[1:, : token_length(30)]).logits[0]
    assert torch.allclose(batched, alone, atol=1e-5)


def test_token_classification_gives_a_label_per_base():
    model = tiny(NucELForTokenClassification, num_labels=3)
    input_ids, attention_mask = dna_batch([70])
    labels = torch.randint(0, 3, input_ids.shape)
    labels[:, 0] = -100  # [CLS]
    output = model(input_ids, attention_mask=attention_mask, labels=labels)
    assert output.logits.shape == (1, token_length(70), 3)
    kept = labels != -100
    assert torch.allclose(output.loss, torch.nn.functional.cross_entropy(output.logits[kept], labels[kept]))


def test_presets_have_the_papers_parameter_counts():
    encoder = NucELModel(NucELConfig.from_preset("nucel-93m"))
    assert abs(sum(p.numel() for p in encoder.parameters()) - 92.3e6) <= 0.1e6
    generator = NucELGenerator(NucELConfig.from_preset("nucel-generator"))
    generator_encoder = sum(p.numel() for p in generator.model.parameters())
    assert abs(generator_encoder - 11.5e6) <= 0.1e6
    assert abs(sum(p.numel() for p in generator.parameters()) - 11.5e6) <= 0.2e6  # with its MLM head


@pytest.mark.slow
def test_the_93m_preset_runs_a_1024_bp_sequence(tokenizer):
    model = NucELModel(NucELConfig.from_preset("nucel-93m")).eval()
    batch = tokenizer("ACGT" * 256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    assert hidden.shape == (1, 1025, 512) and torch.isfinite(hidden).all()


def test_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="multiple of num_attention_heads"):
        NucELConfig(hidden_size=100, num_attention_heads=3)
    with pytest.raises(ValueError, match="unknown NucEL preset"):
        NucELConfig.from_preset("nucel-7b")
    with pytest.raises(ValueError, match="classifier_pooling"):
        NucELConfig(classifier_pooling="max")
