"""The figures that tell whether pre-training learned: information gain, AUROC / average precision, generator
accuracy at [MASK] positions, gradient norms; each checked on hand-built outputs or against an independent formula."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from scipy.stats import rankdata

from nucel.modeling_nucel.configuration_nucel import BASE_IDS, CLS_ID, MASK_ID, PAD_ID, SEP_ID, UNK_ID
from nucel.training.rtd_metrics import MetricTally, ScoreSample, binary_entropy, information_gain, ranking_figures

A, C, G, T = BASE_IDS


@pytest.fixture(scope="module")
def accelerator():
    return Accelerator(cpu=True)


def rtd_batch(rows: int = 8, length: int = 40, seed: int = 0):
    """A padded batch with about 15% of the bases selected and about half of those replaced."""
    generator = torch.Generator().manual_seed(seed)
    original = torch.tensor(BASE_IDS)[torch.randint(0, 4, (rows, length), generator=generator)]
    original[:, 0] = CLS_ID
    attention_mask = torch.ones(rows, length, dtype=torch.long)
    attention_mask[1::2, length - 7 :] = 0  # every other row padded
    original[~attention_mask.bool()] = PAD_ID
    selected = (torch.rand(rows, length, generator=generator) < 0.15) & (original != CLS_ID) & attention_mask.bool()
    replaced = selected & (torch.rand(rows, length, generator=generator) < 0.5)
    labels = torch.where(selected, original, torch.full_like(original, -100))
    batch = {"input_ids": original.masked_fill(selected, MASK_ID), "attention_mask": attention_mask, "labels": labels}
    return batch, selected, replaced


def rtd_output(batch, selected, replaced, discriminator_logits, generator_predictions=None):
    """What NucELForPreTraining returns, with hand-chosen discriminator logits and generator predictions."""
    labels = batch["labels"][selected]
    predictions = labels if generator_predictions is None else generator_predictions
    generator_logits = torch.full((len(labels), 27), -10.0)
    generator_logits[torch.arange(len(labels)), predictions] = 10.0
    return SimpleNamespace(
        loss=torch.tensor(1.0),
        generator_loss=torch.tensor(0.5),
        discriminator_loss=torch.tensor(0.3),
        generator_logits=generator_logits,
        discriminator_logits=discriminator_logits,
        masked_positions=selected,
        replaced_mask=replaced,
    )


def test_binary_entropy_is_the_loss_of_predicting_the_rate():
    assert binary_entropy(0.09) == pytest.approx(0.3025, abs=1e-4)  # -0.09 ln 0.09 - 0.91 ln 0.91
    assert binary_entropy(0.5) == pytest.approx(math.log(2))
    assert binary_entropy(0.0) == binary_entropy(1.0) == 0.0
    assert information_gain(binary_entropy(0.2), 0.2) == (0.0, 0.0)
    gain, percent = information_gain(binary_entropy(0.2) / 4, 0.2)
    assert gain == pytest.approx(0.75 * binary_entropy(0.2)) and percent == pytest.approx(75.0)


def test_information_gain_is_zero_for_the_prior_and_positive_for_a_discriminator_that_knows(accelerator):
    batch, selected, replaced = rtd_batch()
    bases = batch["attention_mask"].bool() & (batch["input_ids"] != CLS_ID)
    p = replaced.sum().item() / bases.sum().item()

    prior = MetricTally("rtd", "cpu")
    prior.add(rtd_output(batch, selected, replaced, torch.full(replaced.shape, math.log(p / (1 - p)))), batch)
    figures = prior.summary(accelerator)
    assert figures["replaced_fraction"] == pytest.approx(p)
    assert abs(figures["information_gain"]) < 1e-6 and abs(figures["information_gain_percent"]) < 1e-4
    assert figures["auroc"] == 0.5 and figures["average_precision"] == pytest.approx(p)  # one score for all: no ranking

    knowing = MetricTally("rtd", "cpu")
    knowing.add(rtd_output(batch, selected, replaced, torch.where(replaced, 6.0, -6.0)), batch)
    figures = knowing.summary(accelerator)
    assert 0 < figures["information_gain"] <= binary_entropy(p)
    assert 95 < figures["information_gain_percent"] <= 100
    assert figures["auroc"] == figures["auroc_masked"] == figures["average_precision"] == 1.0
    assert figures["discriminator_accuracy_replaced"] == figures["discriminator_accuracy_original"] == 1.0

    wrong = MetricTally("rtd", "cpu")  # sure and always wrong: worse than the prior
    wrong.add(rtd_output(batch, selected, replaced, torch.where(replaced, -6.0, 6.0)), batch)
    figures = wrong.summary(accelerator)
    assert figures["information_gain"] < 0 and figures["auroc"] == 0.0


def test_knowing_only_that_specials_are_never_replaced_gains_nothing(accelerator):
    """[CLS], [SEP] and N ([UNK]) are never replaced: a discriminator sure of that, and knowing nothing else (the
    replaced rate p of the bases for every base), scores 0 gain and AUROC 0.5. Counted over every real token, it
    would look like a discriminator that learned (the issue's 0.12-0.49 % of H(p))."""
    batch, selected, replaced = rtd_batch(rows=16, length=100)
    batch["input_ids"][:, 40:43] = UNK_ID  # an N run, never selected
    selected[:, 40:43] = replaced[:, 40:43] = False
    batch["labels"][:, 40:43] = -100
    last = batch["attention_mask"].sum(1) - 1
    batch["input_ids"][torch.arange(16), last] = SEP_ID
    selected[torch.arange(16), last] = replaced[torch.arange(16), last] = False
    batch["labels"][torch.arange(16), last] = -100
    original = torch.where(selected, batch["labels"], batch["input_ids"])
    bases = torch.isin(original, torch.tensor(BASE_IDS)) & batch["attention_mask"].bool()
    p = replaced.sum().item() / bases.sum().item()
    logits = torch.where(bases, math.log(p / (1 - p)), -30.0)

    tally = MetricTally("rtd", "cpu")
    tally.add(rtd_output(batch, selected, replaced, logits), batch)
    figures = tally.summary(accelerator)
    assert figures["replaced_fraction"] == pytest.approx(p)
    assert abs(figures["information_gain"]) < 1e-6 and abs(figures["information_gain_percent"]) < 1e-4
    assert figures["auroc"] == 0.5

    real = batch["attention_mask"].bool()  # what the same discriminator scored over every real token
    p_real = replaced.sum().item() / real.sum().item()
    bce_real = torch.nn.functional.binary_cross_entropy_with_logits(logits[real], replaced[real].float()).item()
    assert (binary_entropy(p_real) - bce_real) / binary_entropy(p_real) > 0.01


def rank_auroc(replaced: np.ndarray, scores: np.ndarray) -> float:
    """The Mann-Whitney form: the probability that a replaced token outscores an original one, ties counting half."""
    ranks = rankdata(scores)  # ties get their average rank
    positives, negatives = replaced.sum(), (~replaced).sum()
    return (ranks[replaced].sum() - positives * (positives + 1) / 2) / (positives * negatives)


def step_average_precision(replaced: np.ndarray, scores: np.ndarray) -> float:
    """Σ (recall_k − recall_k−1) · precision_k over the distinct score thresholds, highest first."""
    total, previous_recall = 0.0, 0.0
    for threshold in np.unique(scores)[::-1]:
        flagged = scores >= threshold
        recall = (flagged & replaced).sum() / replaced.sum()
        total += (recall - previous_recall) * (flagged & replaced).sum() / flagged.sum()
        previous_recall = recall
    return total


def test_auroc_and_average_precision_equal_independent_computations():
    rng = np.random.default_rng(0)
    replaced = rng.random(3000) < 0.1
    scores = np.round(rng.normal(size=3000) + replaced * 0.8, 1)  # rounded: many ties
    auroc, average_precision = ranking_figures(replaced, scores)
    assert auroc == pytest.approx(rank_auroc(replaced, scores), abs=1e-12)
    assert average_precision == pytest.approx(step_average_precision(replaced, scores), abs=1e-12)
    assert 0.6 < auroc < 0.8
    assert all(
        math.isnan(value) for value in ranking_figures(np.zeros(5, bool), np.arange(5.0))
    )  # one class: undefined


def test_the_score_sample_is_uniform_capped_and_independent_of_batching(accelerator):
    rng = np.random.default_rng(1)
    scores = torch.tensor(rng.normal(size=10_000), dtype=torch.float32)
    replaced = torch.tensor(rng.random(10_000) < 0.3)
    masked = torch.tensor(rng.random(10_000) < 0.5)

    whole = ScoreSample(capacity=1000, seed=5)
    whole.add(scores, replaced, masked)
    in_pieces = ScoreSample(capacity=1000, seed=5)
    for start in range(0, 10_000, 700):
        in_pieces.add(scores[start : start + 700], replaced[start : start + 700], masked[start : start + 700])
    sampled_scores, sampled_replaced, _ = whole.kept()
    assert len(sampled_scores) == 1000 and sorted(sampled_scores) == sorted(in_pieces.kept()[0])
    assert 0.25 < sampled_replaced.mean() < 0.35  # a uniform sample keeps the replaced rate

    small = ScoreSample(capacity=1000, seed=5)  # under the cap: every token is scored
    small.add(scores[:500], replaced[:500], masked[:500])
    figures = small.figures(accelerator)
    expected = ranking_figures(replaced[:500].numpy(), scores[:500].numpy())
    assert (figures["auroc"], figures["average_precision"]) == expected
    masked_only = masked[:500].numpy()
    assert (
        figures["auroc_masked"]
        == ranking_figures(replaced[:500].numpy()[masked_only], scores[:500].numpy()[masked_only])[0]
    )
    assert len(small.kept()[0]) == 0  # cleared for the next interval


def test_generator_accuracy_counts_only_mask_token_positions(accelerator):
    # Row 0 selects positions 1, 2, 3 ([MASK]ed) and 4 (kept: visible to the generator).
    input_ids = torch.tensor([[CLS_ID, MASK_ID, MASK_ID, MASK_ID, G, T]])
    labels = torch.tensor([[-100, A, C, G, G, -100]])
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
    selected = labels != -100
    # Right at the kept position and at one of the three [MASK] positions.
    predictions = torch.tensor([A, T, T, G])
    output = rtd_output(
        batch, selected, torch.zeros_like(selected), torch.zeros(1, 6), generator_predictions=predictions
    )
    tally = MetricTally("rtd", "cpu")
    tally.add(output, batch)
    tally.add_grad_norm(torch.tensor(1.0))
    tally.add_grad_norm(torch.tensor(3.0))
    figures = tally.summary(accelerator)
    assert figures["generator_accuracy"] == pytest.approx(1 / 3)  # counting the kept base would give 2 / 4
    assert (figures["grad_norm"], figures["grad_norm_max"]) == (2.0, 3.0)

    # The MLM baseline's logits cover every position; the same rule applies.
    mlm_logits = torch.full((1, 6, 27), -10.0)
    mlm_logits[0, torch.arange(6), torch.tensor([CLS_ID, A, T, T, G, T])] = 10.0
    mlm = MetricTally("mlm", "cpu")
    mlm.add(SimpleNamespace(loss=torch.tensor(1.0), logits=mlm_logits), batch)
    assert mlm.summary(accelerator)["generator_accuracy"] == pytest.approx(1 / 3)
