"""A one-hot CNN baseline, trained by the same Trainer loop, on the same splits and with the same model selection
(lowest validation loss) as NucEL, but with hyper-parameters of its own.

Tang & Koo's point: a pre-trained DNA language model only matters where it beats a small supervised CNN on
one-hot DNA, so the CNN must be trained as well as a CNN can be, not at a transformer's learning rate: its
settings are the registry's `cnn_hyperparameters` (benchmarks/tasks/*.yaml), chosen once on GUE validation data
(benchmarks/cnn_tuning.py, benchmarks/results/cnn-tuning.md). The CNN reads the NucEL tokenizer's ids (so the
data pipeline is shared): A, C, G, T become one-hot channels, N and the special tokens all-zero columns.
"""

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from nucel.core.identity import json_sha256
from nucel.modeling_nucel.configuration_nucel import BASE_IDS

CONFIG_FILE = "cnn_config.json"
WEIGHTS_FILE = "model.safetensors"


CNN_MODEL = "cnn"  # how a command line names the baseline (`--model cnn`)
CNN_NAME = "cnn-baseline"  # how reports name it


@dataclass
class OneHotCNNConfig:
    num_labels: int
    problem_type: str = "single_label_classification"
    filters: int = 128
    first_kernel_size: int = 15  # wide enough for a transcription-factor motif
    second_kernel_size: int = 5
    pool_size: int = 2
    dropout: float = 0.2


class OneHotCNN(nn.Module):
    """conv(15) -> ReLU -> max-pool(2) -> conv(5) -> ReLU -> global max over real positions -> linear."""

    def __init__(self, config: OneHotCNNConfig):
        super().__init__()
        self.config = config
        self.register_buffer("base_ids", torch.tensor(BASE_IDS), persistent=False)
        self.first = nn.Conv1d(len(BASE_IDS), config.filters, config.first_kernel_size, padding="same")
        self.second = nn.Conv1d(config.filters, config.filters, config.second_kernel_size, padding="same")
        self.pool = nn.MaxPool1d(config.pool_size, ceil_mode=True)
        self.drop = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.filters, config.num_labels)

    def forward(self, input_ids, attention_mask=None, labels=None, **kwargs):
        one_hot = (input_ids[..., None] == self.base_ids).float().transpose(1, 2)  # (batch, 4, length)
        real = one_hot.amax(dim=1, keepdim=True)  # 1 where there is a base: padding and specials excluded
        hidden = self.pool(F.relu(self.first(one_hot)) * real)
        real = self.pool(real)
        hidden = F.relu(self.second(hidden))
        # Global max over real positions only, so padding never decides the output.
        pooled = hidden.masked_fill(real == 0, float("-inf")).amax(dim=-1)
        pooled = torch.where(torch.isfinite(pooled), pooled, torch.zeros_like(pooled))
        logits = self.classifier(self.drop(pooled))
        loss = None if labels is None else self.loss(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def loss(self, logits, labels):
        if self.config.problem_type == "single_label_classification":
            return F.cross_entropy(logits, labels)
        if self.config.problem_type == "multi_label_classification":
            return F.binary_cross_entropy_with_logits(logits, labels.float())
        return F.mse_loss(logits.squeeze(-1) if self.config.num_labels == 1 else logits, labels.float())


def cnn_identity() -> dict:
    """The one-hot CNN baseline: its architecture (the label count is the task's; the weights follow from the seed)."""
    architecture = {
        key: value
        for key, value in asdict(OneHotCNNConfig(num_labels=1)).items()
        if key not in ("num_labels", "problem_type")
    }
    return {"kind": "cnn", "architecture": architecture, "sha256": json_sha256(architecture)}
