"""The figures of a pre-training run, tallied over a logging interval or a validation pass.

Beside the losses, the figures that tell whether replaced token detection learned anything
(docs/design.md, "Trap: a discriminator that learns only the replaced rate").
A discriminator that learns only the replaced rate p predicts p for every token: its loss is then the entropy of
that rate, H(p) = -p ln p - (1-p) ln(1-p), it flags nothing at threshold 0.5, and its accuracy is a healthy-looking
1 - p. What it learned beyond the rate shows in

* information gain, H(p) - BCE: nats per token, and as a percentage of H(p) (0 for the prior, 100 for a
  discriminator that is always right and sure). p is the pooled replaced fraction of the same tokens as the BCE;
* AUROC and average precision of its scores, replaced against original (0.5 and p for the prior), over all bases
  and over the masked positions only (the only ones that were replaced, where the task is hardest).

Every discriminator figure counts the base tokens (A, C, G, T) only, the tokens masking can select: [CLS], [SEP],
[UNK] (N) and padding are never replaced, and counting them would credit a discriminator with knowing just that.

Generator accuracy counts the positions whose input was the [MASK] token only: a selected base that was kept is
visible to the generator, which gets it right almost always.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import gather_object
from sklearn.metrics import average_precision_score, roc_auc_score

from nucel.modeling_nucel.configuration_nucel import BASE_IDS, MASK_ID
from nucel.modeling_nucel.modeling_nucel import IGNORE_INDEX

# Discriminator scores kept per process and interval for AUROC and average precision: a uniform sample this large
# puts their sampling error near 0.001, and keeps an interval's scores in a few MB of host memory.
SCORED_TOKENS_PER_INTERVAL = 200_000


def binary_entropy(p: float) -> float:
    """H(p) in nats: the loss of a classifier that predicts the rate p for every token."""
    if not 0 < p < 1:
        return 0.0
    return -(p * math.log(p) + (1 - p) * math.log1p(-p))


def information_gain(bce: float, replaced_fraction: float) -> tuple[float, float]:
    """(H(p) - BCE in nats per token, the same as a percentage of H(p)); the percentage is NaN when H(p) is 0."""
    entropy = binary_entropy(replaced_fraction)
    gain = entropy - bce
    return gain, 100 * gain / entropy if entropy > 0 else float("nan")


def ranking_figures(replaced: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """AUROC and average precision of `scores` for telling replaced (True) from original tokens; NaN for both when
    only one of the two kinds is present."""
    if replaced.all() or not replaced.any():
        return float("nan"), float("nan")
    return float(roc_auc_score(replaced, scores)), float(average_precision_score(replaced, scores))


class ScoreSample:
    """A uniform random sample of at most `capacity` of the tokens added since the last `clear`: the discriminator's
    logit, whether the token was replaced, whether it was masked. Each token draws a random priority and the
    `capacity` lowest are kept (bottom-k sampling), so memory stays under 2 × capacity tokens however long the
    interval. The priorities come from a generator of its own, re-seeded at every `clear`: the sample is
    reproducible and the training's random streams are never touched."""

    def __init__(self, capacity: int, seed: int):
        self.capacity = capacity
        self.seed = seed
        self.clear()

    def clear(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.priorities = np.empty(0, np.float64)
        self.scores = np.empty(0, np.float32)
        self.replaced = np.empty(0, bool)
        self.masked = np.empty(0, bool)

    def add(self, scores: torch.Tensor, replaced: torch.Tensor, masked: torch.Tensor) -> None:
        """1-D tensors over the same tokens."""
        self.priorities = np.concatenate([self.priorities, self.rng.random(len(scores))])
        self.scores = np.concatenate([self.scores, scores.detach().float().cpu().numpy()])
        self.replaced = np.concatenate([self.replaced, replaced.cpu().numpy()])
        self.masked = np.concatenate([self.masked, masked.cpu().numpy()])
        if len(self.priorities) > 2 * self.capacity:
            self._keep_lowest_priorities()

    def _keep_lowest_priorities(self) -> None:
        if len(self.priorities) > self.capacity:
            kept = np.argpartition(self.priorities, self.capacity)[: self.capacity]
            self.priorities, self.scores = self.priorities[kept], self.scores[kept]
            self.replaced, self.masked = self.replaced[kept], self.masked[kept]

    def kept(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scores, replaced, masked) of the sampled tokens, in no particular order."""
        self._keep_lowest_priorities()
        return self.scores, self.replaced, self.masked

    def figures(self, accelerator: Accelerator) -> dict[str, float]:
        """AUROC and average precision over the samples of all processes; clears the sample."""
        scores, replaced, masked = self.kept()
        if accelerator.num_processes > 1:
            parts = gather_object([(scores, replaced, masked)])
            scores, replaced, masked = (np.concatenate(column) for column in zip(*parts))
        self.clear()
        auroc, average_precision = ranking_figures(replaced, scores)
        auroc_masked, average_precision_masked = ranking_figures(replaced[masked], scores[masked])
        return dict(
            auroc=auroc,
            average_precision=average_precision,
            auroc_masked=auroc_masked,
            average_precision_masked=average_precision_masked,
        )


class MetricTally:
    """Sums over micro-batches, reduced across processes on read; for RTD also a sample of discriminator scores.

    Accuracies and rates are pooled counts (correct / total over the interval), not averages of per-batch ratios.
    """

    COUNTS = {
        "mlm": ("batches", "sequences", "tokens", "loss", "masked", "mask_tokens", "generator_correct"),
        "rtd": (
            "batches",
            "sequences",
            "tokens",
            "loss",
            "masked",
            "mask_tokens",
            "generator_batches",
            "generator_correct",
            "generator_loss",
            "bases",
            "discriminator_loss",
            "discriminator_bce",
            "replaced",
            "original",
            "replaced_detected",
            "original_detected",
        ),
    }

    def __init__(self, objective: str, device, seed: int = 0):
        self.objective = objective
        self.names = self.COUNTS[objective]
        self.sums = torch.zeros(len(self.names), dtype=torch.float64, device=device)
        self.scores = ScoreSample(SCORED_TOKENS_PER_INTERVAL, seed) if objective == "rtd" else None
        self.grad_norms = []

    def add_counts(self, **values) -> None:
        for name, value in values.items():
            self.sums[self.names.index(name)] += value.detach().double() if torch.is_tensor(value) else value

    def add_grad_norm(self, norm) -> None:
        """The total gradient norm of one optimizer step, before clipping (identical on every process)."""
        self.grad_norms.append(norm.detach().float() if torch.is_tensor(norm) else torch.tensor(float(norm)))

    def add(self, output, batch) -> None:
        real_tokens = batch["attention_mask"].bool()
        selected = batch["labels"] != IGNORE_INDEX
        mask_tokens = batch["input_ids"] == MASK_ID
        self.add_counts(
            batches=1,
            sequences=len(real_tokens),
            tokens=real_tokens.sum(),
            loss=output.loss,
            masked=selected.sum(),
            mask_tokens=mask_tokens.sum(),
        )
        if self.objective == "mlm":
            correct = (output.logits.argmax(-1) == batch["labels"]) & mask_tokens
            self.add_counts(generator_correct=correct.sum())
            return
        if output.generator_logits is not None:  # None: replaced without a generator
            # generator_logits has one row per selected position, in the order of `masked_positions`.
            labels = batch["labels"][output.masked_positions]
            correct = (output.generator_logits.argmax(-1) == labels) & mask_tokens[output.masked_positions]
            self.add_counts(generator_batches=1, generator_loss=output.generator_loss, generator_correct=correct.sum())
        # The bases of the original sequence: the only tokens masking can select, hence replace.
        original_ids = torch.where(selected, batch["labels"], batch["input_ids"])
        bases = real_tokens & torch.isin(original_ids, torch.tensor(BASE_IDS, device=original_ids.device))
        replaced = output.replaced_mask[bases]
        logits = output.discriminator_logits.float()[bases]
        predicted_replaced = logits > 0
        # Summed over bases (the loss is a mean per batch), so that BCE and the replaced fraction pool the same tokens.
        bce = F.binary_cross_entropy_with_logits(logits, replaced.float(), reduction="sum")
        self.add_counts(
            bases=bases.sum(),
            discriminator_loss=output.discriminator_loss,
            discriminator_bce=bce,
            replaced=replaced.sum(),
            original=(~replaced).sum(),
            replaced_detected=(predicted_replaced & replaced).sum(),
            original_detected=(~predicted_replaced & ~replaced).sum(),
        )
        self.scores.add(logits, replaced, output.masked_positions[bases])

    def summary(self, accelerator: Accelerator) -> dict[str, float]:
        """Interval figures over all processes; resets the tally."""
        total = dict(zip(self.names, accelerator.reduce(self.sums, reduction="sum").tolist()))
        self.sums = torch.zeros_like(self.sums)

        def ratio(numerator: str, denominator: str) -> float:
            return total[numerator] / total[denominator] if total[denominator] else float("nan")

        figures = {"loss": ratio("loss", "batches")}
        if self.objective == "mlm" or total["generator_batches"]:
            figures["generator_accuracy"] = ratio("generator_correct", "mask_tokens")
        if self.objective == "rtd":
            if total["generator_batches"]:
                figures["generator_loss"] = ratio("generator_loss", "generator_batches")
            replaced_fraction = ratio("replaced", "bases")
            gain, gain_percent = information_gain(ratio("discriminator_bce", "bases"), replaced_fraction)
            figures.update(
                discriminator_loss=ratio("discriminator_loss", "batches"),
                information_gain=gain,
                information_gain_percent=gain_percent,
                **self.scores.figures(accelerator),
                replaced_fraction=replaced_fraction,
                masked_replaced_fraction=ratio("replaced", "masked"),
                discriminator_accuracy_replaced=ratio("replaced_detected", "replaced"),
                discriminator_accuracy_original=ratio("original_detected", "original"),
            )
        if self.grad_norms:
            norms = torch.stack(self.grad_norms)
            figures.update(grad_norm=norms.mean().item(), grad_norm_max=norms.max().item())
            self.grad_norms = []
        figures["tokens"], figures["sequences"] = total["tokens"], int(total["sequences"])
        return figures
