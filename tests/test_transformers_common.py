"""transformers' own common model tests (`ModelTesterMixin`, tests/test_modeling_common.py of the transformers
source distribution) run against the NucEL classes: the contract that Trainer, PEFT, pipelines, accelerate and
exporters rely on.

The sources are not part of the transformers wheel. `make test` fetches the source distribution of the installed
version from the package index into .transformers-tests/ (`make transformers-tests`); `NUCEL_TRANSFORMERS_TESTS`
may point at another checkout's tests/ folder. Without them this module skips, saying so. The sdist's tests/
folder lacks the `exporters` and `generation` sub-packages that test_modeling_common.py imports mixins from:
they are replaced by empty mixins (an encoder does not generate; torch.export is tested in test_model_contract.py).

No test of the mixin is skipped here. The mixin skips, by its own checks, what needs hardware or packages that
are absent (a GPU, several GPUs, flash-attn, DeepSpeed, the kernels library), what is marked slow, and what does not
exist in NucEL by design: RoPE scaling and partial or axial RoPE (NucEL's RoPE is plain, with ModernBERT's two bases),
sparse experts and router logits, key-value caches, composite and multimodal sub-configs, tensor-parallel plans,
fp32-kept modules, and checkpoint conversion mappings (NucEL's parameter names already are ModernBERT's).
"""

import importlib.util
import os
import sys
import types
import unittest
from pathlib import Path

import pytest
import transformers

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCES = Path(
    os.environ.get(
        "NUCEL_TRANSFORMERS_TESTS",
        REPO_ROOT / ".transformers-tests" / f"transformers-{transformers.__version__}" / "tests",
    )
)
if not (SOURCES / "test_modeling_common.py").is_file():
    pytest.skip(
        f"transformers' test sources are not at {SOURCES} (`make transformers-tests` fetches them)",
        allow_module_level=True,
    )
pytest.importorskip("parameterized", reason="transformers' common tests need the `parameterized` package (dev extra)")


def load_common_tests():
    """tests/test_modeling_common.py imported as part of a package, with the two sub-packages the sdist lacks."""
    package = types.ModuleType("transformers_common_tests")
    package.__path__ = [str(SOURCES)]
    sys.modules[package.__name__] = package
    for name, mixin in (
        ("exporters.test_export", "ExportTesterMixin"),
        ("generation.test_utils", "GenerationTesterMixin"),
    ):
        parent, _, child = name.partition(".")
        for module_name in (f"{package.__name__}.{parent}", f"{package.__name__}.{name}"):
            sys.modules.setdefault(module_name, types.ModuleType(module_name))
        setattr(sys.modules[f"{package.__name__}.{name}"], mixin, type(mixin, (), {}))
    spec = importlib.util.spec_from_file_location(
        f"{package.__name__}.test_modeling_common", SOURCES / "test_modeling_common.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


common = load_common_tests()

from transformers.models.auto import modeling_auto  # noqa: E402

from nucel import NucELConfig, NucELForSequenceClassification, NucELForTokenClassification, NucELGenerator, NucELModel  # noqa: E402


class NucELModelTester:
    """Tiny configurations and random DNA-like inputs for the mixin (its `model_tester`)."""

    def __init__(self, parent, batch_size=13, seq_length=7, hidden_size=32, num_hidden_layers=2, num_attention_heads=4):
        self.parent = parent
        self.batch_size, self.seq_length = batch_size, seq_length
        self.hidden_size, self.num_hidden_layers, self.num_attention_heads = (
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
        )
        self.vocab_size = NucELConfig().vocab_size
        self.is_training = True
        self.num_labels = 3

    def get_config(self):
        return NucELConfig(
            hidden_size=self.hidden_size,
            intermediate_size=37,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_labels=self.num_labels,
            max_position_embeddings=512,
        )

    def prepare_config_and_inputs_for_common(self):
        input_ids = common.ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        attention_mask = common.random_attention_mask([self.batch_size, self.seq_length])
        return self.get_config(), {"input_ids": input_ids, "attention_mask": attention_mask}


# The mixin knows a class's role (bare encoder, masked LM, classifier) by finding its name in transformers' registry
# of model classes, as it does for native models: NucEL's classes are entered there for the duration of the tests.
ROLES = {
    "MODEL_MAPPING_NAMES": "NucELModel",
    "MODEL_FOR_MASKED_LM_MAPPING_NAMES": "NucELGenerator",
    "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES": "NucELForSequenceClassification",
    "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES": "NucELForTokenClassification",
}


class NucELCommonTest(common.ModelTesterMixin, unittest.TestCase):
    all_model_classes = (NucELModel, NucELGenerator, NucELForSequenceClassification, NucELForTokenClassification)

    @classmethod
    def setUpClass(cls):
        for mapping, class_name in ROLES.items():
            getattr(modeling_auto, mapping)["nucel"] = class_name

    @classmethod
    def tearDownClass(cls):
        for mapping in ROLES:
            getattr(modeling_auto, mapping).pop("nucel", None)

    def setUp(self):
        self.model_tester = NucELModelTester(self)
