"""Import of ModernBERT-format checkpoints, export to native ModernBERT, migration of folders with the old ids.
(The released NucEL-93M's own folder: test_released_model.py.)"""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    ModernBertConfig,
    ModernBertForMaskedLM,
    ModernBertForSequenceClassification,
    ModernBertModel,
)

from nucel import NucELConfig, NucELForPreTraining, NucELForSequenceClassification, NucELGenerator, NucELModel
from nucel.cli import main as nucel_main
from nucel.convert import ConversionError, export_modernbert, import_modernbert, load_nucel_model
from nucel.core.models import save_model_folder
from nucel.modeling_nucel.configuration_nucel import BASE_IDS, SPECIAL_TOKENS

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4)
# Longer than the local window (±64), with lowercase and N, padded in a batch.
DNA = ["ACGTTGCA" * 20 + "acgtn" * 4, "GGATCCNNATTA" * 9]


def native_config(vocab_size, **overrides):
    return ModernBertConfig(
        vocab_size=vocab_size,
        pad_token_id=0,
        cls_token_id=2,
        sep_token_id=3,
        bos_token_id=5,
        eos_token_id=6,
        local_attention=128,
        global_attn_every_n_layers=3,
        **TINY,
        **overrides,
    )


def randomise_norms(model):
    """LayerNorm weights start at 1; make them differ so that a norm left behind by the import would show."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.uniform_(0.5, 1.5)
    return model


def test_import_classifier_keeps_labels_and_logits(tmp_path, tokenizer):
    config = native_config(27, num_labels=2, id2label={0: "background", 1: "promoter"}, classifier_pooling="mean")
    original = randomise_norms(ModernBertForSequenceClassification(config).eval())
    original.save_pretrained(tmp_path / "native")
    converted = NucELForSequenceClassification.from_pretrained(
        import_modernbert(tmp_path / "native", tmp_path / "nucel")
    )
    assert (
        converted.config.id2label == {0: "background", 1: "promoter"} and converted.config.classifier_pooling == "mean"
    )
    batch = tokenizer(DNA, return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.allclose(original(**batch).logits, converted(**batch).logits, atol=1e-5)


def test_import_refuses_another_vocabulary(tmp_path):
    ModernBertModel(native_config(31)).save_pretrained(tmp_path / "odd")
    with pytest.raises(ConversionError, match="31-row vocabulary"):
        import_modernbert(tmp_path / "odd", tmp_path / "nucel")
    # 27 rows, but a slow tokenizer that numbers the bases differently.
    ModernBertModel(native_config(27)).save_pretrained(tmp_path / "other-ids")
    (tmp_path / "other-ids" / "vocab.json").write_text(
        json.dumps({**{t: i for i, t in enumerate(SPECIAL_TOKENS)}, "A": 7, "C": 8, "G": 9, "T": 10})
    )
    with pytest.raises(ConversionError, match="differ from the released NucEL vocabulary"):
        import_modernbert(tmp_path / "other-ids", tmp_path / "nucel")


# ----------------------------------------------------------------------------------------------------------------
# Folders saved before the vocabulary change (A, C, G, T at 7-10)

NEW_FIELDS = ("base_token_ids", "sampling_temperature", "sampling_top_k")


def old_layout(rows: torch.Tensor) -> torch.Tensor:
    """Rows as the old vocabulary numbered them: bases at 7-10, four reserved tokens at 11-14."""
    return torch.cat([rows[:7], rows[11:15], rows[7:11], rows[15:]])


def write_legacy_folder(model, folder: Path) -> Path:
    """What this package saved before the change: old rows, no `base_token_ids`, old tokenizer ids."""
    save_model_folder(model, folder)
    config = json.loads((folder / "config.json").read_text())
    for fields in (config, config.get("generator_config") or {}):
        for name in NEW_FIELDS:
            fields.pop(name, None)
    (folder / "config.json").write_text(json.dumps(config))
    state = load_file(folder / "model.safetensors")
    save_file(
        {
            name: old_layout(value)
            if name.endswith(("tok_embeddings.weight", "decoder.weight", "decoder.bias"))
            else value
            for name, value in state.items()
        },
        folder / "model.safetensors",
        metadata={"format": "pt"},
    )
    return folder


def old_ids(new_ids: torch.Tensor) -> torch.Tensor:
    return torch.where((new_ids >= 11) & (new_ids <= 14), new_ids - 4, new_ids)


def test_loading_an_old_id_folder_without_migrating_says_how(tmp_path):
    legacy = write_legacy_folder(NucELModel(NucELConfig.from_preset("tiny")), tmp_path / "old")
    with pytest.raises(ValueError, match="old token ids.*nucel convert migrate"):
        NucELModel.from_pretrained(legacy)
    with pytest.raises(ValueError, match="nucel convert migrate"):
        load_nucel_model(legacy)


@pytest.mark.parametrize("kind", ["encoder", "generator", "pretraining"])
def test_migration_moves_rows_and_keeps_outputs(tmp_path, tokenizer, kind):
    model = {
        "encoder": lambda: NucELModel(NucELConfig.from_preset("tiny")),
        "generator": lambda: NucELGenerator(NucELConfig.from_preset("tiny", restrict_to_bases=True)),
        "pretraining": lambda: NucELForPreTraining(NucELConfig.for_pretraining("tiny")),
    }[kind]()
    model = randomise_norms(model).eval()
    legacy = write_legacy_folder(model, tmp_path / "old")
    run_cli("convert", "migrate", str(legacy), "-o", str(tmp_path / "new"))

    migrated = load_nucel_model(tmp_path / "new")
    assert type(migrated) is type(model) and migrated.config.base_token_ids == list(BASE_IDS)
    original_state, migrated_state = model.state_dict(), migrated.state_dict()
    assert original_state.keys() == migrated_state.keys()
    assert all(torch.equal(original_state[name], migrated_state[name]) for name in original_state)

    if kind == "encoder":  # the old folder read as it was meant (native ModernBERT, old ids) = the migrated one
        batch = tokenizer(DNA, return_tensors="pt", padding=True)
        with torch.no_grad():
            before = ModernBertModel.from_pretrained(legacy)(
                old_ids(batch["input_ids"]), attention_mask=batch["attention_mask"]
            )
            after = migrated(**batch)
        real = batch["attention_mask"].bool()
        torch.testing.assert_close(before.last_hidden_state[real], after.last_hidden_state[real], atol=1e-5, rtol=0)
    with pytest.raises(ConversionError, match="nothing to migrate"):
        run_cli("convert", "migrate", str(tmp_path / "new"), "-o", str(tmp_path / "again"))


def run_cli(*argv):
    assert nucel_main([*argv, "--debug"]) == 0  # --debug: an error is raised, not printed


@pytest.mark.parametrize("kind", ["generator", "classifier"])
def test_export_is_native_modernbert_and_round_trips(tmp_path, tokenizer, kind):
    if kind == "generator":
        model = NucELGenerator(NucELConfig.from_preset("tiny", restrict_to_bases=True))
        auto_class, native_class = AutoModelForMaskedLM, ModernBertForMaskedLM
    else:
        model = NucELForSequenceClassification(
            NucELConfig.from_preset("tiny", num_labels=3, id2label={0: "a", 1: "b", 2: "c"})
        )
        auto_class, native_class = AutoModelForSequenceClassification, ModernBertForSequenceClassification
    model = randomise_norms(model).eval()
    save_model_folder(model, tmp_path / "nucel")
    run_cli("convert", "export", str(tmp_path / "nucel"), "-o", str(tmp_path / "native"))

    exported = tmp_path / "native"
    config = json.loads((exported / "config.json").read_text())
    assert "auto_map" not in config and not list(exported.glob("*.py"))
    assert not {"restrict_to_bases", "generator_config", "discriminator_weight"} & set(config)
    assert config["global_attn_every_n_layers"] == 3 and config["local_attention"] == 128  # 4.x spelling kept
    native = auto_class.from_pretrained(exported)  # no trust_remote_code: native classes
    assert type(native) is native_class

    batch = tokenizer(DNA, return_tensors="pt", padding=True)
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        reference = model(**batch).logits
        native_logits = native(**batch).logits
        if kind == "generator":
            # The base restriction travels in the decoder bias: native ModernBERT gives the same finite logits on
            # every id (~0 probability off the bases), so an entropy over the vocabulary is a number in both modes.
            assert torch.isfinite(native_logits[real]).all() and torch.isfinite(reference[real]).all()
            assert torch.all(native_logits[real].softmax(-1)[:, list(BASE_IDS)].sum(-1) > 1 - 1e-6)
            reference, native_logits = reference[real], native_logits[real]
        torch.testing.assert_close(native_logits, reference, atol=1e-5, rtol=1e-6)

    run_cli("convert", "import", str(exported), "-o", str(tmp_path / "back"))
    back = type(model).from_pretrained(tmp_path / "back")
    original_state, back_state = model.state_dict(), back.state_dict()
    assert original_state.keys() == back_state.keys()
    for name, value in original_state.items():
        assert torch.equal(value, back_state[name]), name  # the restriction was in the bias already


def test_export_refuses_a_pretraining_model(tmp_path):
    save_model_folder(NucELForPreTraining(NucELConfig.for_pretraining("tiny")), tmp_path / "pretraining")
    with pytest.raises(ConversionError, match="NucELForPreTraining"):
        export_modernbert(tmp_path / "pretraining", tmp_path / "native")


TRANSFORMERS4_CHILD = """
import json, sys
import torch
import transformers
from transformers import ModernBertForMaskedLM
assert transformers.__version__.startswith("4.57"), transformers.__version__
model = ModernBertForMaskedLM.from_pretrained(sys.argv[1]).eval()
ids = torch.tensor(json.loads(sys.argv[2]))
with torch.no_grad():
    logits = model(ids).logits
print(json.dumps(torch.nan_to_num(logits, neginf=-1e30).tolist()))
"""


@pytest.mark.slow
def test_exported_folder_means_the_same_under_transformers_4_57(tmp_path, tokenizer):
    python = Path(
        os.environ.get(
            "NUCEL_TRANSFORMERS4_PYTHON", Path(__file__).resolve().parents[1] / ".venv-tf4" / "bin" / "python"
        )
    )
    if not python.exists():
        pytest.skip(f"no transformers 4.57 environment at {python} (`make test` creates it)")
    # Non-default attention period and RoPE base: 4.x reads only the legacy spelling, and would silently use
    # its defaults (3, 160000) if the export lacked it.
    model = randomise_norms(
        NucELGenerator(
            NucELConfig.from_preset(
                "tiny", global_attn_every_n_layers=2, global_rope_theta=50000.0, restrict_to_bases=True
            )
        )
    ).eval()
    save_model_folder(model, tmp_path / "nucel")
    export_modernbert(tmp_path / "nucel", tmp_path / "native")
    ids = tokenizer(DNA[0])["input_ids"]
    completed = subprocess.run(
        [str(python), "-c", TRANSFORMERS4_CHILD, str(tmp_path / "native"), json.dumps([ids])],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""},
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    logits = torch.tensor(json.loads(completed.stdout.strip().splitlines()[-1]))
    with torch.no_grad():
        expected = torch.nan_to_num(model(torch.tensor([ids])).logits, neginf=-1e30)
    assert torch.allclose(logits, expected, atol=1e-5)
