"""The Hub-facing model code: these two files are copied into every saved checkpoint folder."""

from .configuration_nucel import NucELConfig
from .modeling_nucel import (
    NucELForPreTraining,
    NucELForSequenceClassification,
    NucELForTokenClassification,
    NucELGenerator,
    NucELModel,
    NucELPreTrainedModel,
)

__all__ = [
    "NucELConfig",
    "NucELForPreTraining",
    "NucELForSequenceClassification",
    "NucELForTokenClassification",
    "NucELGenerator",
    "NucELModel",
    "NucELPreTrainedModel",
]
