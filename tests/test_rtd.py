"""Replaced token detection: the loss of docs/design.md ("What NucEL is"), computed by hand, and the masking rules."""

import pytest
import torch

from nucel import NucELConfig, NucELForPreTraining
from nucel.modeling_nucel.configuration_nucel import BASE_IDS, CLS_ID, MASK_ID, PAD_ID, SEP_ID, UNK_ID, VOCAB_SIZE
from nucel.modeling_nucel.modeling_nucel import sample_replacements
from nucel.training.masking import mask_tokens

A, C, G, T = BASE_IDS


def tiny_pretraining_model():
    return NucELForPreTraining(NucELConfig.for_pretraining("tiny")).eval()


def hand_made_batch():
    """Two sequences, the second padded; masked positions chosen by hand (one kept as its original base)."""
    original = torch.tensor(
        [
            [CLS_ID, A, C, G, T, T, G, C, A, SEP_ID],
            [CLS_ID, G, G, A, T, SEP_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID],
        ]
    )
    attention_mask = (original != PAD_ID).long()
    labels = torch.full_like(original, -100)
    selected = [(0, 2), (0, 5), (0, 7), (1, 3)]
    for row, column in selected:
        labels[row, column] = original[row, column]
    input_ids = original.clone()
    for row, column in selected[:3]:
        input_ids[row, column] = MASK_ID  # (1, 3) stays as its base: the 15% "kept" case
    return original, input_ids, labels, attention_mask


def force_generator_towards(model, token_id):
    """Make the generator's MLM head all but certain to predict `token_id`."""
    with torch.no_grad():
        model.generator.decoder.weight.zero_()
        model.generator.decoder.bias.fill_(-30.0)
        model.generator.decoder.bias[token_id] = 30.0


def test_loss_equals_the_hand_computed_loss():
    model = tiny_pretraining_model()
    original, input_ids, labels, attention_mask = hand_made_batch()
    torch.manual_seed(1)
    output = model(input_ids=input_ids, labels=labels, attention_mask=attention_mask)

    # Generator: cross-entropy over the masked positions only, from an independent forward pass.
    masked = labels != -100
    with torch.no_grad():
        generator_logits = model.generator(input_ids, attention_mask=attention_mask).logits[masked]
    log_probabilities = generator_logits.log_softmax(-1)
    generator_loss = -log_probabilities[torch.arange(len(log_probabilities)), labels[masked]].mean()

    # Discriminator: binary cross-entropy over the bases (the tokens that can be replaced), on what it actually saw.
    seen = output.discriminator_input_ids
    assert torch.equal(seen[~masked], original[~masked]), "only masked positions may change"
    replaced = (seen != original).float()
    with torch.no_grad():
        hidden = model.model(seen, attention_mask=attention_mask).last_hidden_state
        logits = model.rtd_classifier(model.rtd_head(hidden)).squeeze(-1)
    probability = torch.sigmoid(logits)
    per_token = -(replaced * probability.log() + (1 - replaced) * (1 - probability).log())
    bases = attention_mask.bool() & torch.isin(original, torch.tensor(BASE_IDS))
    assert bases.sum() == 12  # [CLS], [SEP] and padding left out
    discriminator_loss = per_token[bases].mean()

    assert torch.allclose(output.generator_loss, generator_loss, atol=1e-5)
    assert torch.allclose(output.discriminator_loss, discriminator_loss, atol=1e-5)
    assert torch.allclose(output.loss, generator_loss + 50.0 * discriminator_loss, atol=1e-4)
    assert torch.equal(output.replaced_mask, seen != original)


def test_replacements_are_always_bases_even_when_the_generator_prefers_a_special():
    model = tiny_pretraining_model()
    model.generator.config.restrict_to_bases = False  # let the generator's own distribution favour [PAD]
    force_generator_towards(model, PAD_ID)
    _, input_ids, labels, attention_mask = hand_made_batch()
    for seed in range(20):
        torch.manual_seed(seed)
        output = model(input_ids=input_ids, labels=labels, attention_mask=attention_mask)
        sampled = output.discriminator_input_ids[labels != -100]
        assert torch.isin(sampled, torch.tensor(BASE_IDS)).all()


def test_a_sample_equal_to_the_original_is_labelled_original():
    model = tiny_pretraining_model()
    original, input_ids, labels, attention_mask = hand_made_batch()
    force_generator_towards(model, A)
    output = model(input_ids=input_ids, labels=labels, attention_mask=attention_mask)
    masked = labels != -100
    assert (output.discriminator_input_ids[masked] == A).all()
    assert torch.equal(output.replaced_mask[masked], original[masked] != A)
    assert not output.replaced_mask[~masked].any()


def test_the_discriminator_loss_sends_no_gradient_into_the_generator():
    model = tiny_pretraining_model().train()
    _, input_ids, labels, attention_mask = hand_made_batch()
    output = model(input_ids=input_ids, labels=labels, attention_mask=attention_mask)
    output.discriminator_loss.backward()
    generator_gradients = [p.grad for p in model.generator.parameters() if p.grad is not None]
    assert all(g.abs().max() == 0 for g in generator_gradients)
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in model.model.parameters())


def test_the_generator_loss_trains_only_the_generator():
    model = tiny_pretraining_model().train()
    _, input_ids, labels, attention_mask = hand_made_batch()
    model(input_ids=input_ids, labels=labels, attention_mask=attention_mask).generator_loss.backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in model.model.parameters())
    assert model.generator.decoder.weight.grad.abs().max() > 0


def test_masking_selects_15_percent_of_bases_masks_85_percent_and_never_touches_specials():
    generator = torch.Generator().manual_seed(0)
    bases = torch.tensor(BASE_IDS)[torch.randint(0, 4, (64, 1000), generator=generator)]
    bases[:, 100:110] = UNK_ID  # an N run
    input_ids = torch.cat(
        [torch.full((64, 1), CLS_ID), bases, torch.full((64, 1), SEP_ID), torch.full((64, 5), PAD_ID)], 1
    )
    masked, labels = mask_tokens(input_ids, generator=generator)

    selected = labels != -100
    is_base = torch.isin(input_ids, torch.tensor(BASE_IDS))
    assert not selected[~is_base].any(), "specials, padding and N are never selected"
    assert torch.equal(labels[selected], input_ids[selected])
    assert abs(selected.sum().item() / is_base.sum().item() - 0.15) < 0.005
    became_mask = masked == MASK_ID
    assert not became_mask[~selected].any()
    assert abs(became_mask.sum().item() / selected.sum().item() - 0.85) < 0.01
    kept = selected & ~became_mask
    assert torch.equal(masked[kept], input_ids[kept]), "no random replacement: the rest keep their base"
    assert torch.equal(masked[~selected], input_ids[~selected])


def test_sampling_temperature_and_top_k_shape_the_replacement_distribution():
    # Fixed logits over the four bases: probabilities 0.5, 0.3, 0.15, 0.05 for A, C, G, T.
    probabilities = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = torch.full((200_000, VOCAB_SIZE), -30.0)
    logits[:, list(BASE_IDS)] = probabilities.log()
    logits[:, PAD_ID] = 5.0  # a special the generator prefers is never drawn

    def frequencies(**settings):
        torch.manual_seed(0)
        drawn = sample_replacements(logits, **settings)
        return torch.stack([(drawn == base).float().mean() for base in BASE_IDS])

    assert torch.allclose(frequencies(), probabilities, atol=0.005)  # default: the generator's own distribution
    sharpened = probabilities ** (1 / 0.5) / (probabilities ** (1 / 0.5)).sum()
    assert torch.allclose(frequencies(temperature=0.5), sharpened, atol=0.005)
    top_two = torch.tensor([0.5, 0.3, 0.0, 0.0]) / 0.8
    assert torch.allclose(frequencies(top_k=2), top_two, atol=0.005)
    assert torch.equal(frequencies(top_k=1), torch.tensor([1.0, 0.0, 0.0, 0.0]))


def test_the_model_samples_with_its_configured_temperature_and_top_k():
    model = NucELForPreTraining(NucELConfig.for_pretraining("tiny", sampling_top_k=1)).eval()
    _, input_ids, labels, attention_mask = hand_made_batch()
    masked = labels != -100
    with torch.no_grad():
        output = model(input_ids=input_ids, labels=labels, attention_mask=attention_mask)
    most_likely = BASE_IDS[0] + output.generator_logits[:, list(BASE_IDS)].argmax(-1)
    assert torch.equal(output.discriminator_input_ids[masked], most_likely)  # top-1: the generator's argmax
    with pytest.raises(ValueError, match="sampling_top_k"):
        NucELConfig.for_pretraining("tiny", sampling_top_k=5)
    with pytest.raises(ValueError, match="sampling_temperature"):
        NucELConfig.for_pretraining("tiny", sampling_temperature=0.0)


def test_masking_every_chosen_position_as_the_author_does():
    input_ids = torch.cat([torch.full((8, 1), CLS_ID), torch.tensor(BASE_IDS).repeat(8, 100)], 1)
    masked, labels = mask_tokens(input_ids, mask_token_fraction=1.0, generator=torch.Generator().manual_seed(0))
    selected = labels != -100
    assert (
        selected.any() and (masked[selected] == MASK_ID).all() and torch.equal(masked[~selected], input_ids[~selected])
    )
