"""Saved folders: identical weights, reproduced outputs, and loading as a Hub user does (fresh process, no
nucel package, offline), with the current transformers and with the last 4.x release."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM

from nucel import (
    NucELConfig,
    NucELForPreTraining,
    NucELForSequenceClassification,
    NucELForTokenClassification,
    NucELGenerator,
    NucELModel,
)
from nucel.core.models import save_model_folder
from nucel.modeling_nucel.configuration_nucel import BASE_IDS
from nucel.modeling_nucel.modeling_nucel import AUTO_MAP
from nucel.training.masking import mask_tokens

REPO_ROOT = Path(__file__).resolve().parents[1]
CHECK_SCRIPT = Path(__file__).with_name("remote_code_check.py")
SEQUENCE = "ACGTTGCAAGGCTTAACGTAGCTAGGATCCATGCAAAT" * 6  # 228 bp: longer than the local window
LABELS = {0: "non-promoter", 1: "promoter"}


def tiny(name, **overrides):
    return NucELConfig.from_preset("tiny", **overrides)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory, tokenizer):
    """One folder per artefact type plus expected.pt with the outputs of the models that were saved."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("saved")
    models = {
        "encoder": NucELModel(tiny("tiny")),
        "generator": NucELGenerator(tiny("tiny", restrict_to_bases=True)),
        "classifier": NucELForSequenceClassification(
            tiny("tiny", num_labels=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
        ),
        "token_classifier": NucELForTokenClassification(tiny("tiny", num_labels=3)),
        "pretraining": NucELForPreTraining(NucELConfig.for_pretraining("tiny")),
    }
    inputs = tokenizer(SEQUENCE, return_tensors="pt")
    masked_sequence = SEQUENCE[:40] + "[MASK]" + SEQUENCE[41:]
    masked_position = 41  # after [CLS]
    expected = {"sequence": SEQUENCE, "masked_sequence": masked_sequence, "input_ids": inputs["input_ids"][0]}
    with torch.no_grad():
        for name in ("encoder", "token_classifier"):
            key = "last_hidden_state" if name == "encoder" else "logits"
            expected[name] = getattr(models[name].eval()(**inputs), key)
        expected["generator"] = models["generator"].eval()(**inputs).logits
        expected["classifier"] = models["classifier"].eval()(**inputs).logits
        expected["classifier_probabilities"] = expected["classifier"][0].softmax(-1)
        masked_inputs = tokenizer(masked_sequence, return_tensors="pt")
        generator_logits = models["generator"](**masked_inputs).logits[0, masked_position]
        expected["fill_mask_probabilities"] = generator_logits.softmax(-1)[list(BASE_IDS)]
        rtd_input_ids, rtd_labels = mask_tokens(
            inputs["input_ids"].repeat(2, 1), generator=torch.Generator().manual_seed(0)
        )
        torch.manual_seed(0)
        expected["rtd_loss"] = models["pretraining"].eval()(input_ids=rtd_input_ids, labels=rtd_labels).loss
        expected["rtd_input_ids"], expected["rtd_labels"] = rtd_input_ids, rtd_labels
    for name, model in models.items():
        save_model_folder(model, root / name, tokenizer)
    torch.save(expected, root / "expected.pt")
    return root, models


def test_saved_folder_has_code_tokenizer_and_the_complete_auto_map(saved_models):
    root, _ = saved_models
    for name in ("encoder", "generator", "classifier", "token_classifier", "pretraining"):
        files = {p.name for p in (root / name).iterdir()}
        assert {
            "config.json",
            "model.safetensors",
            "configuration_nucel.py",
            "modeling_nucel.py",
            "tokenizer.json",
        } <= files
        config = NucELConfig.from_pretrained(root / name)
        assert config.auto_map == AUTO_MAP
        assert config.model_type == "modernbert"


@pytest.mark.parametrize(
    "cls, name",
    [
        (NucELModel, "encoder"),
        (NucELGenerator, "generator"),
        (NucELForSequenceClassification, "classifier"),
        (NucELForTokenClassification, "token_classifier"),
        (NucELForPreTraining, "pretraining"),
    ],
)
def test_loaded_weights_equal_saved_weights(saved_models, cls, name):
    root, models = saved_models
    on_disk = load_file(root / name / "model.safetensors")
    loaded = cls.from_pretrained(root / name)
    assert not loaded.training
    original, reloaded = models[name].state_dict(), loaded.state_dict()
    assert set(original) == set(reloaded) == set(on_disk)
    for key, value in original.items():
        assert torch.equal(value, reloaded[key]), f"{key} changed on load (silent re-initialisation?)"
        assert torch.equal(value, on_disk[key])


def test_a_loaded_model_reproduces_the_saved_models_outputs_exactly(saved_models, tokenizer):
    root, _ = saved_models
    expected = torch.load(root / "expected.pt")
    inputs = tokenizer(SEQUENCE, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(
            NucELModel.from_pretrained(root / "encoder")(**inputs).last_hidden_state, expected["encoder"]
        )
        remote = AutoModelForMaskedLM.from_pretrained(root / "generator", trust_remote_code=True)
        assert torch.equal(remote(**inputs).logits, expected["generator"])


def run_check(python: str, root: Path):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run(
        [python, str(CHECK_SCRIPT), str(root)], cwd=root, env=environment, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0 and "ALL OK" in result.stdout, result.stdout[-3000:] + result.stderr[-5000:]


@pytest.mark.slow
def test_fresh_process_without_the_package_loads_every_auto_class_and_pipeline(saved_models):
    run_check(sys.executable, saved_models[0])


def transformers4_python() -> str:
    python = os.environ.get("NUCEL_TRANSFORMERS4_PYTHON", str(REPO_ROOT / ".venv-tf4" / "bin" / "python"))
    if not Path(python).exists():
        pytest.skip(f"no transformers 4.57 environment at {python} (`make test` creates it)")
    return python


@pytest.mark.slow
def test_the_folders_also_load_under_transformers_4_57(saved_models):
    python = transformers4_python()
    version = subprocess.run(
        [python, "-c", "import transformers; print(transformers.__version__)"], capture_output=True, text=True
    )
    assert version.stdout.startswith("4.57"), version.stdout + version.stderr
    run_check(python, saved_models[0])


def test_fresh_models_get_modernbert_initialisation_and_new_heads_are_initialised_on_load(saved_models):
    """transformers 5.x skips custom-code modules without parameters of their own unless told otherwise; the
    parents that initialise their Linear layers must still run, for fresh models and for heads added on load."""
    root, models = saved_models
    embeddings = models["encoder"].embeddings.tok_embeddings.weight
    assert 0.01 < embeddings.std().item() < 0.03, "ModernBERT's truncated normal (std 0.02), not PyTorch's N(0, 1)"
    classifier = NucELForSequenceClassification.from_pretrained(root / "encoder", num_labels=2)
    for key, value in models["encoder"].state_dict().items():
        assert torch.equal(classifier.model.state_dict()[key], value)
    assert torch.isfinite(classifier.classifier.weight).all() and classifier.classifier.weight.std() < 1.0
    assert torch.isfinite(classifier.head.dense.weight).all() and classifier.head.dense.weight.abs().max() < 1.0
    inputs = {"input_ids": torch.tensor([[2, 7, 8, 9, 10, 3]])}
    assert torch.isfinite(classifier(**inputs).logits).all()
