"""The recipe levers of replaced token detection (docs/design.md, "What makes RTD learn"), each a pre-training
setting: embedding sharing between generator and discriminator and its export, ELECTRA's disallow_correct, the
generator-free control, BERT's 80/10/10 masking, the sampling-temperature schedule; and the discriminator exported
with its RTD head."""

import json
import math

import pytest
import torch
from accelerate import Accelerator
from transformers import AutoModel, AutoModelForMaskedLM, AutoModelForPreTraining, ModernBertModel

from nucel.modeling_nucel import NucELConfig, NucELForPreTraining, NucELForReplacedTokenDetection, NucELModel
from nucel.modeling_nucel.configuration_nucel import BASE_IDS, CLS_ID, MASK_ID, PAD_ID, PRETRAINING_DEFAULTS, SEP_ID
from nucel.training.masking import mask_tokens
from nucel.training.pretraining_config import load_config
from nucel.training.rtd_loop import build_model
from nucel.training.rtd_metrics import MetricTally
from nucel.training.run_outputs import export_models

SHARING_MODES = ("none", "tied", "gdes")


def pretraining_model(generator_preset: str = "tiny-generator", **settings) -> NucELForPreTraining:
    """The tiny discriminator (64 wide) with a generator half as wide (or, with "tiny", as wide)."""
    return NucELForPreTraining(NucELConfig.for_pretraining("tiny", generator_preset, **settings))


def masked_batch(rows: int = 4, length: int = 60, seed: int = 0) -> dict:
    """Random DNA with [CLS], [SEP] and padding, 15% of the bases selected (85% of those [MASK]ed)."""
    generator = torch.Generator().manual_seed(seed)
    bases = torch.tensor(BASE_IDS)[torch.randint(0, 4, (rows, length), generator=generator)]
    original = torch.cat([torch.full((rows, 1), CLS_ID), bases, torch.full((rows, 1), SEP_ID)], 1)
    original[1, -6:] = PAD_ID  # one padded row
    attention_mask = (original != PAD_ID).long()
    input_ids, labels = mask_tokens(original, generator=generator)
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def randomise(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Weights no initialisation gives, a gdes delta included: stands for a trained model."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


# ----------------------------------------------------------------------------------------------------------------
# Embedding sharing


def test_sharing_modes_wire_the_token_tables_as_electra_and_deberta_v3_do():
    tied = pretraining_model(embedding_sharing="tied")
    assert tied.generator.model.embeddings.tok_embeddings is None  # one table: the discriminator's
    assert tuple(tied.embedding_projection.weight.shape) == (32, 64)  # discriminator width -> generator width
    assert pretraining_model("tiny", embedding_sharing="tied").embedding_projection is None  # same width: no projection

    gdes = pretraining_model(embedding_sharing="gdes")
    assert tuple(gdes.embedding_projection.weight.shape) == (64, 32)  # generator width -> discriminator width
    assert gdes.model.embeddings.tok_embeddings.weight.abs().max() == 0  # the delta starts at zero
    _, table = gdes.shared_embedding_tables()
    torch.testing.assert_close(table, gdes.embedding_projection(gdes.generator.model.embeddings.tok_embeddings.weight))

    # gdes: the discriminator's loss reaches its delta and the projection, never the generator's table.
    output = gdes.train()(**masked_batch())
    output.discriminator_loss.backward()
    assert gdes.generator.model.embeddings.tok_embeddings.weight.grad is None
    assert gdes.model.embeddings.tok_embeddings.weight.grad.abs().max() > 0
    assert gdes.embedding_projection.weight.grad.abs().max() > 0
    # tied: both losses reach the one table.
    tied.train()
    for loss_name in ("generator_loss", "discriminator_loss"):
        tied.zero_grad()
        getattr(tied(**masked_batch()), loss_name).backward()
        assert tied.model.embeddings.tok_embeddings.weight.grad.abs().max() > 0, loss_name


def generator_after_training(sharing: str, discriminator_weight: float, steps: int = 3) -> dict[str, torch.Tensor]:
    """The generator (as exported: shared table folded in) after `steps` AdamW updates without clipping."""
    torch.manual_seed(0)
    model = pretraining_model(embedding_sharing=sharing, discriminator_weight=discriminator_weight).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for step in range(steps):
        torch.manual_seed(100 + step)  # the same replacements for every λ
        model(**masked_batch(seed=step)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return {name: value.detach().clone() for name, value in model.generator_for_export().state_dict().items()}


@pytest.mark.parametrize("sharing", SHARING_MODES)
def test_the_discriminator_weight_reaches_the_generator_only_through_a_tied_table(sharing):
    """Adam is invariant to a loss's scale, so without clipping λ can only change the generator's updates through a
    parameter both losses train. With no sharing there is none: the generator ends bit-identical for any λ (the
    issue's measurement). ELECTRA's tied table is one: λ weighs the two gradients on it. DeBERTa-v3's gdes stops the
    discriminator's gradient at the generator's table by design, so there too λ leaves the generator unchanged."""
    weak, strong = generator_after_training(sharing, 1.0), generator_after_training(sharing, 50.0)
    changed = [name for name in weak if not torch.equal(weak[name], strong[name])]
    if sharing == "tied":
        assert "model.embeddings.tok_embeddings.weight" in changed and len(changed) > 1  # the table and what it feeds
    else:
        assert changed == []


@pytest.mark.parametrize("sharing", SHARING_MODES)
def test_each_sharing_mode_exports_plain_encoders_with_the_embeddings_used_in_training(tmp_path, sharing):
    config = load_config("tiny_cpu", {"embedding_sharing": sharing, "generator_preset": "tiny-generator-1x16"})
    model = randomise(build_model(config))
    export_models(Accelerator(cpu=True), model, config, tmp_path)
    batch = masked_batch()
    torch.manual_seed(5)
    with torch.no_grad():
        output = model(**batch)
    generator_table, discriminator_table = model.shared_embedding_tables()
    if discriminator_table is None:  # the discriminator reads its own table
        discriminator_table = model.model.embeddings.tok_embeddings.weight
    seen, attention_mask = output.discriminator_input_ids, batch["attention_mask"]
    real = attention_mask.bool()

    remote = AutoModel.from_pretrained(tmp_path / "discriminator", trust_remote_code=True)
    native = AutoModel.from_pretrained(tmp_path / "discriminator")
    assert type(remote).__name__ == "NucELModel" and type(native) is ModernBertModel
    for encoder in (remote, native):
        assert torch.equal(encoder.embeddings.tok_embeddings.weight, discriminator_table)
    with torch.no_grad():
        trained_hidden = model.model(
            inputs_embeds=torch.nn.functional.embedding(seen, discriminator_table), attention_mask=attention_mask
        ).last_hidden_state
        for encoder in (remote, native.eval()):
            hidden = encoder(seen, attention_mask=attention_mask).last_hidden_state
            torch.testing.assert_close(hidden[real], trained_hidden[real], atol=1e-5, rtol=0)

    generator = AutoModelForMaskedLM.from_pretrained(tmp_path / "generator", trust_remote_code=True).eval()
    if generator_table is not None:
        assert torch.equal(generator.model.embeddings.tok_embeddings.weight, generator_table)
    with torch.no_grad():
        logits = generator(batch["input_ids"], attention_mask=attention_mask).logits[output.masked_positions]
    torch.testing.assert_close(logits, output.generator_logits, atol=1e-5, rtol=0)

    for folder in ("discriminator", "discriminator_rtd", "generator"):
        saved = json.loads((tmp_path / folder / "config.json").read_text())
        assert not set(PRETRAINING_DEFAULTS) & set(saved), folder  # training settings stay out of the networks
        assert saved["generator_config"] is None


def test_the_rtd_head_exports_reloads_and_gives_the_training_discriminators_logits(tmp_path):
    config = load_config("tiny_cpu", {"embedding_sharing": "gdes"})
    model = randomise(build_model(config))
    export_models(Accelerator(cpu=True), model, config, tmp_path)
    batch = masked_batch()
    with torch.no_grad():
        output = model(**batch)
    real = batch["attention_mask"].bool()

    detector = NucELForReplacedTokenDetection.from_pretrained(tmp_path / "discriminator_rtd")
    remote = AutoModelForPreTraining.from_pretrained(tmp_path / "discriminator_rtd", trust_remote_code=True)
    assert type(remote).__name__ == "NucELForReplacedTokenDetection"  # as ELECTRA's discriminator folders load
    for loaded in (detector, remote.eval()):
        with torch.no_grad():
            logits = loaded(output.discriminator_input_ids, attention_mask=batch["attention_mask"]).logits
        torch.testing.assert_close(logits[real], output.discriminator_logits[real], atol=1e-5, rtol=0)
    # The same folder is the encoder alone for AutoModel, with or without remote code.
    encoder = AutoModel.from_pretrained(tmp_path / "discriminator_rtd", trust_remote_code=True)
    assert type(encoder).__name__ == "NucELModel"
    assert torch.equal(encoder.embeddings.tok_embeddings.weight, detector.model.embeddings.tok_embeddings.weight)
    assert type(AutoModel.from_pretrained(tmp_path / "discriminator_rtd")) is ModernBertModel


def test_folders_saved_with_training_settings_in_their_config_still_load(tmp_path):
    NucELModel(NucELConfig.from_preset("tiny")).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved.update(discriminator_weight=50.0, sampling_temperature=0.9, sampling_top_k=2)  # as exports were written
    (tmp_path / "config.json").write_text(json.dumps(saved))
    encoder = AutoModel.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(encoder).__name__ == "NucELModel" and not hasattr(encoder.config, "sampling_top_k")
    assert type(AutoModel.from_pretrained(tmp_path)) is ModernBertModel


# ----------------------------------------------------------------------------------------------------------------
# What replaces the masked bases


def force_generator_towards(model, token_id):
    with torch.no_grad():
        model.generator.decoder.weight.zero_()
        model.generator.decoder.bias.fill_(-30.0)
        model.generator.decoder.bias[token_id] = 30.0


def test_disallow_correct_replaces_every_masked_base_so_p_is_the_masked_fraction():
    model = pretraining_model(disallow_correct=True).eval()
    force_generator_towards(model, BASE_IDS[0])  # a generator sure of A: at original A's it must still differ
    batch = masked_batch(rows=8, length=200)
    with torch.no_grad():
        output = model(**batch)
    assert torch.equal(output.replaced_mask, output.masked_positions)
    masked = output.masked_positions
    assert torch.isin(output.discriminator_input_ids[masked], torch.tensor(BASE_IDS)).all()

    tally = MetricTally("rtd", "cpu")
    tally.add(output, batch)
    figures = tally.summary(Accelerator(cpu=True))
    bases = torch.isin(torch.where(masked, batch["labels"], batch["input_ids"]), torch.tensor(BASE_IDS))
    assert figures["replaced_fraction"] == masked.sum().item() / bases.sum().item()
    assert figures["masked_replaced_fraction"] == 1.0

    plain = pretraining_model().eval()  # without it, a sample equal to the original counts as not replaced
    force_generator_towards(plain, BASE_IDS[0])
    with torch.no_grad():
        plain_output = plain(**batch)
    assert not plain_output.replaced_mask[masked & (batch["labels"] == BASE_IDS[0])].any()


def test_the_uniform_control_never_runs_a_generator():
    model = pretraining_model(replacement="uniform").train()
    assert model.generator is None and not any("generator" in name for name, _ in model.named_parameters())
    batch = masked_batch(rows=32, length=300)
    output = model(**batch)
    assert output.generator_loss is None and output.generator_logits is None
    assert torch.equal(output.loss, model.config.discriminator_weight * output.discriminator_loss)
    masked = output.masked_positions
    assert torch.equal(output.replaced_mask, masked)  # always another base
    original, drawn = batch["labels"][masked], output.discriminator_input_ids[masked]
    assert torch.isin(drawn, torch.tensor(BASE_IDS)).all()
    for base in BASE_IDS:  # each of the other three bases about a third of the time
        others = drawn[original == base]
        for other in set(BASE_IDS) - {base}:
            assert abs((others == other).float().mean().item() - 1 / 3) < 0.08
    output.loss.backward()  # trains the discriminator

    tally = MetricTally("rtd", "cpu")
    tally.add(output, batch)
    figures = tally.summary(Accelerator(cpu=True))
    assert "generator_loss" not in figures and "generator_accuracy" not in figures
    with pytest.raises(ValueError, match="runs no generator"):
        load_config("tiny_cpu", {"replacement": "uniform", "embedding_sharing": "tied"})
    with pytest.raises(ValueError, match="no generator"):
        model.generator_for_export()


# ----------------------------------------------------------------------------------------------------------------
# Masking and sampling settings


@pytest.mark.parametrize("mask_fraction, random_fraction", [(0.8, 0.1), (0.85, 0.0)])
def test_masking_fractions_bert_80_10_10_and_electra_85_15(mask_fraction, random_fraction):
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.tensor(BASE_IDS)[torch.randint(0, 4, (200, 1000), generator=generator)]
    masked, labels = mask_tokens(input_ids, 0.15, mask_fraction, generator, random_token_fraction=random_fraction)
    selected = labels != -100
    n = selected.sum().item()  # about 30,000: a fraction's standard error is under 0.003
    became_mask = (masked == MASK_ID) & selected
    changed_base = (masked != input_ids) & (masked != MASK_ID)
    unchanged = selected & (masked == input_ids)
    assert abs(became_mask.sum().item() / n - mask_fraction) < 0.01
    # A random base is the original one a quarter of the time (BERT draws from the whole vocabulary too).
    assert abs(changed_base.sum().item() / n - 0.75 * random_fraction) < 0.01
    assert abs(unchanged.sum().item() / n - (1 - mask_fraction - 0.75 * random_fraction)) < 0.01
    assert not (changed_base & ~selected).any() and torch.isin(masked[changed_base], torch.tensor(BASE_IDS)).all()
    with pytest.raises(ValueError, match="add up to at most 1"):
        load_config("tiny_cpu", {"mask_token_fraction": 0.8, "random_token_fraction": 0.3})


def test_sampling_temperature_schedule():
    fixed = load_config("tiny_cpu", {"sampling_temperature": 0.9})
    assert [fixed.sampling_temperature_at(step) for step in (0, 50, 10_000)] == [0.9, 0.9, 0.9]
    linear = load_config("tiny_cpu", {"sampling_temperature_start": 3.0, "sampling_temperature_anneal_steps": 100})
    assert [linear.sampling_temperature_at(step) for step in (0, 25, 50, 100, 500)] == [3.0, 2.5, 2.0, 1.0, 1.0]
    cosine = load_config(
        "tiny_cpu",
        {
            "sampling_temperature_start": 3.0,
            "sampling_temperature_anneal_steps": 100,
            "sampling_temperature_schedule": "cosine",
        },
    )
    expected = [1.0 + 2.0 * (1 + math.cos(math.pi * step / 100)) / 2 for step in (0, 25, 50, 75, 100)]
    assert [cosine.sampling_temperature_at(step) for step in (0, 25, 50, 75, 100)] == pytest.approx(expected)
    assert cosine.sampling_temperature_at(200) == 1.0
    with pytest.raises(ValueError, match="sampling_temperature_anneal_steps"):
        load_config("tiny_cpu", {"sampling_temperature_start": 3.0})


def test_the_step_temperature_reaches_the_sampler():
    """A very hot step samples the four bases about evenly; the model's own temperature (cold here) does not."""
    model = pretraining_model(sampling_temperature=0.05).eval()
    force_generator_towards(model, BASE_IDS[0])
    with torch.no_grad():
        model.generator.decoder.bias[list(BASE_IDS)] = torch.tensor([3.0, 0.0, 0.0, 0.0])
    batch = masked_batch(rows=16, length=300)
    masked = batch["labels"] != -100
    with torch.no_grad():
        cold = model(**batch).discriminator_input_ids[masked]
        hot = model(**batch, sampling_temperature=100.0).discriminator_input_ids[masked]
    assert (cold == BASE_IDS[0]).float().mean() > 0.99
    assert 0.2 < (hot == BASE_IDS[0]).float().mean() < 0.3


def test_settings_reach_the_model_and_bad_ones_are_refused():
    settings = {"embedding_sharing": "gdes", "disallow_correct": True, "discriminator_weight": 10.0}
    model_config = build_model(load_config("tiny_cpu", settings)).config
    assert {name: getattr(model_config, name) for name in settings} == settings
    uniform = load_config("tiny_cpu", {"replacement": "uniform", "embedding_sharing": "none"})
    assert build_model(uniform).generator is None
    for overrides, message in (
        ({"embedding_sharing": "shared"}, "embedding_sharing must be one of"),
        ({"replacement": "random"}, "replacement must be one of"),
        ({"embedding_sharing": "gdes", "init_from": "x"}, "init_from with embedding_sharing gdes"),
        ({"embedding_sharing": "tied", "init_generator_from": "x"}, "init_generator_from with embedding_sharing tied"),
        ({"sampling_temperature_schedule": "step"}, "sampling_temperature_schedule must be one of"),
    ):
        with pytest.raises(ValueError, match=message):
            load_config("tiny_cpu", overrides)
    with pytest.raises(ValueError, match="embedding_sharing must be one of"):
        NucELConfig.for_pretraining("tiny", embedding_sharing="shared")
