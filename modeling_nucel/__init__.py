"""The Hub-facing model code: every file here but this one is copied into every saved checkpoint folder.

Importing this package registers the NucEL classes with transformers' Auto classes, so that in this process a
NucELConfig selects them (`AutoModelForSequenceClassification.from_config(NucELConfig(...))`,
`AutoModel.from_pretrained(folder, config=...)`). Saved folders need no registration: their auto_map names the
classes (a folder of `NucELForReplacedTokenDetection`, the discriminator with its RTD head, maps
AutoModelForPreTraining to it, as ELECTRA's do; in this process load it by its class). The config keeps model_type
"modernbert" (dual mode), so AutoConfig stays native ModernBERT's.
"""

import transformers

from .configuration_nucel import NucELConfig
from .modeling_nucel import (
    NucELForPreTraining,
    NucELForReplacedTokenDetection,
    NucELForSequenceClassification,
    NucELForTokenClassification,
    NucELGenerator,
    NucELModel,
    NucELPreTrainedModel,
)

for _auto_class, _model_class in (
    (transformers.AutoModel, NucELModel),
    (transformers.AutoModelForMaskedLM, NucELGenerator),
    (transformers.AutoModelForPreTraining, NucELForPreTraining),
    (transformers.AutoModelForSequenceClassification, NucELForSequenceClassification),
    (transformers.AutoModelForTokenClassification, NucELForTokenClassification),
):
    _auto_class.register(NucELConfig, _model_class, exist_ok=True)

__all__ = [
    "NucELConfig",
    "NucELForPreTraining",
    "NucELForReplacedTokenDetection",
    "NucELForSequenceClassification",
    "NucELForTokenClassification",
    "NucELGenerator",
    "NucELModel",
    "NucELPreTrainedModel",
]
