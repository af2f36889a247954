"""The speed benchmark's workloads, and the two implementations it compares with the same weights: NucEL and
transformers' ModernBERT (with an RTD wrapper built from ModernBERT's own blocks), plus the DNA batches they run on.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    ModernBertConfig,
    ModernBertForMaskedLM,
    ModernBertModel,
    PreTrainedModel,
)
from transformers.models.modernbert.modeling_modernbert import ModernBertPredictionHead

from nucel.modeling_nucel import (
    NucELConfig,
    NucELForPreTraining,
    NucELGenerator,
    NucELModel,
)
from nucel.modeling_nucel.configuration_nucel import BASE_IDS, PAD_ID
from nucel.modeling_nucel.modeling_nucel import gumbel_max_sample, mask_to_bases
from nucel.tokenization import token_length, with_special_tokens
from nucel.training.masking import mask_tokens

NUCEL_ONLY_FIELDS = {"model_type", "transformers_version", "auto_map", "architectures", "generator_config"}
MIXED_FRACTIONS = (1.0, 0.7, 0.45, 0.25)  # of the full length, per row: about 40 % of the batch is padding
SEED = 1234
DEFAULT_VARIANT = "default"  # our side runs the run's attention implementation (SDPA, or flash-attn 2 where installed)


@dataclass(frozen=True)
class Workload:
    preset: str
    task: str  # "inference", "mlm_step" or "rtd_step"
    bp: int
    batch: int
    batch_kind: str  # "fixed" or "mixed"
    variant: str = DEFAULT_VARIANT  # our side: attention implementation, "+compile" for compiled layers

    @property
    def key(self) -> str:
        suffix = "" if self.variant == DEFAULT_VARIANT else f"/{self.variant}"
        return f"{self.preset}/{self.task}/{self.bp}bp/{self.batch_kind}x{self.batch}{suffix}"

    @property
    def attn_implementation(self) -> str | None:
        """Our attention implementation, or None for the run's default."""
        implementation = self.variant.removesuffix("+compile")
        return None if implementation == DEFAULT_VARIANT else implementation

    @property
    def compiled(self) -> bool:
        return self.variant.endswith("+compile")


# ----------------------------------------------------------------------------------------------------------------
# The two implementations, same weights


def reference_config(config: NucELConfig, attn_implementation: str) -> ModernBertConfig:
    """transformers' ModernBertConfig read from the same fields, as a dual-mode folder is read."""
    fields = {k: v for k, v in config.to_dict().items() if k not in NUCEL_ONLY_FIELDS}
    return ModernBertConfig(**fields, attn_implementation=attn_implementation)


class ReferenceRTD(nn.Module):
    """NucEL's RTD objective assembled from transformers' ModernBERT classes, as a user without NucEL would write
    it: the MLM model scores every position, the masked ones are picked from its logits. Same module names as
    NucELForPreTraining, so its state dict loads unchanged."""

    def __init__(self, config: NucELConfig, attn_implementation: str):
        super().__init__()
        self.discriminator_weight = config.discriminator_weight
        self.generator = ModernBertForMaskedLM(reference_config(config.generator_configuration(), attn_implementation))
        discriminator_config = reference_config(config, attn_implementation)
        self.model = ModernBertModel(discriminator_config)
        self.rtd_head = ModernBertPredictionHead(discriminator_config)
        self.rtd_classifier = nn.Linear(config.hidden_size, 1)

    def forward(self, input_ids, labels, attention_mask):
        masked_positions = labels != -100
        generator_logits = self.generator(input_ids=input_ids, attention_mask=attention_mask).logits[masked_positions]
        generator_logits = mask_to_bases(generator_logits)  # the generator is restricted to A/C/G/T
        generator_loss = F.cross_entropy(generator_logits, labels[masked_positions])
        with torch.no_grad():
            sampled = gumbel_max_sample(generator_logits.detach())
        original_ids = torch.where(masked_positions, labels, input_ids)
        discriminator_ids = original_ids.masked_scatter(masked_positions, sampled)
        hidden = self.model(input_ids=discriminator_ids, attention_mask=attention_mask).last_hidden_state
        discriminator_logits = self.rtd_classifier(self.rtd_head(hidden)).squeeze(-1)
        real = attention_mask.bool()
        replaced = (discriminator_ids != original_ids)[real].to(discriminator_logits.dtype)
        discriminator_loss = F.binary_cross_entropy_with_logits(discriminator_logits[real], replaced)
        return generator_loss + self.discriminator_weight * discriminator_loss, discriminator_logits


def build_pair(
    preset: str, task: str, attn_implementation: str, ours_implementation: str | None = None, compiled: bool = False
) -> tuple[nn.Module, nn.Module, NucELConfig]:
    """(ours, reference, configuration of the model whose FLOPs count), with identical weights. Ours runs
    `ours_implementation` (default: the reference's) and, with `compiled`, compiled layers."""
    torch.manual_seed(SEED)
    if task == "rtd_step":
        config = NucELConfig.for_pretraining(preset)
        ours, reference = NucELForPreTraining(config), ReferenceRTD(config, attn_implementation)
    else:
        config = NucELConfig.from_preset(preset)
        ours_class, reference_class = (
            (NucELModel, ModernBertModel) if task == "inference" else (NucELGenerator, ModernBertForMaskedLM)
        )
        ours, reference = ours_class(config), reference_class(reference_config(config, attn_implementation))
    for module in reference.modules():
        if isinstance(module, PreTrainedModel):
            module.config._attn_implementation = attn_implementation
    for module in ours.modules():  # NucELForPreTraining holds two models, each with its own configuration
        if isinstance(module, PreTrainedModel):
            module.config._attn_implementation = ours_implementation or attn_implementation
    reference.load_state_dict(ours.state_dict(), strict=True)
    if compiled:
        ours.compile_layers()
    return ours, reference, config


def dna_batch(workload: Workload) -> dict[str, torch.Tensor]:
    """Right-padded `[CLS] bases` rows; with labels and masked ids for the training steps."""
    generator = torch.Generator().manual_seed(SEED)
    fractions = MIXED_FRACTIONS[: workload.batch] if workload.batch_kind == "mixed" else (1.0,) * workload.batch
    width = token_length(workload.bp)
    input_ids = torch.full((workload.batch, width), PAD_ID)
    attention_mask = torch.zeros_like(input_ids)
    for row, fraction in enumerate(fractions):
        length = max(1, round(workload.bp * fraction))
        bases = torch.tensor(BASE_IDS)[torch.randint(0, 4, (length,), generator=generator)]
        row_ids = with_special_tokens(bases.tolist())
        input_ids[row, : len(row_ids)] = torch.tensor(row_ids)
        attention_mask[row, : len(row_ids)] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if workload.task != "inference":
        batch["input_ids"], batch["labels"] = mask_tokens(input_ids, generator=generator)
    return batch
