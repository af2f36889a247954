"""The released NucEL-93M and this package are one thing: same token ids, same template, its folder loads as
published, converts to a dual-mode folder bit for bit, and its non-default config values are never dropped.

The release itself needs the network; a replica built from its published facts stands in (tests/released_nucel.py).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from released_nucel import RELEASE_CONFIG, released_batch, released_tokenize, write_release_replica
from safetensors.torch import load_file
from transformers import AutoModel, ModernBertModel

from nucel import NucELConfig, NucELModel
from nucel.convert import export_modernbert, import_modernbert
from nucel.core.embeddings import embed_sequences
from nucel.core.models import load_encoder
from nucel.tokenization import load_tokenizer

# Longer than the local window (±64) so local and global layers differ; lowercase (soft-masked), N and IUPAC codes.
DNA = ["ACGTTGCA" * 20 + "acgtnRYkm" * 3, "GGATCCNNATTAwsbdhv" * 5, "t"]
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def replica(tmp_path_factory) -> Path:
    return write_release_replica(tmp_path_factory.mktemp("release") / "NucEL")


def hidden_states(model, input_ids, attention_mask):
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[attention_mask.bool()]


def test_our_tokenizer_gives_the_released_ids_and_template(tokenizer):
    for sequence in DNA + ["N", "acgtACGT", "RYSWKMBDHVN"]:
        assert tokenizer(sequence)["input_ids"] == released_tokenize(sequence), sequence
    ours = tokenizer(DNA, padding=True, return_tensors="pt")
    released_ids, released_mask = released_batch(DNA)
    assert torch.equal(ours["input_ids"], released_ids) and torch.equal(ours["attention_mask"], released_mask)


def test_the_release_folder_uses_our_tokenizer(replica, tokenizer):
    # The release ships only a remote-code slow tokenizer; ours stands in for it with the same ids.
    stand_in = load_tokenizer(replica)
    assert stand_in(DNA[0])["input_ids"] == tokenizer(DNA[0])["input_ids"] == released_tokenize(DNA[0])


def test_nucel_model_loads_the_release_as_published(replica):
    model = NucELModel.from_pretrained(replica)
    # No weight changed on the way in, and every computation-relevant value is the folder's, not a default.
    saved = load_file(replica / "model.safetensors")
    loaded = model.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[name], loaded[name]) for name in saved)
    for field in ("norm_eps", "global_rope_theta", "local_rope_theta", "local_attention", "global_attn_every_n_layers"):
        assert getattr(model.config, field) == RELEASE_CONFIG[field], field
    assert not model.training

    native = ModernBertModel.from_pretrained(replica).eval()
    input_ids, attention_mask = released_batch(DNA)
    torch.testing.assert_close(
        hidden_states(model, input_ids, attention_mask),
        hidden_states(native, input_ids, attention_mask),
        atol=1e-5,
        rtol=0,
    )


CHILD = """
import json, os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
sys.modules["nucel"] = None  # a Hub user has only the folder's own code
import torch
from transformers import AutoModel, AutoTokenizer
folder, remote = sys.argv[1], sys.argv[2] == "remote"
model = AutoModel.from_pretrained(folder, trust_remote_code=remote)
tokenizer = AutoTokenizer.from_pretrained(folder)
batch = tokenizer(json.loads(sys.argv[3]), padding=True, return_tensors="pt")
with torch.no_grad():
    hidden = model(**batch).last_hidden_state[batch["attention_mask"].bool()]
print(json.dumps({"class": type(model).__name__, "ids": batch["input_ids"].tolist(), "hidden": hidden.tolist()}))
"""


def run_child(python: Path, folder: Path, remote: bool) -> dict:
    completed = subprocess.run(
        [str(python), "-c", CHILD, str(folder), "remote" if remote else "native", json.dumps(DNA)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


TRANSFORMERS4_PYTHON = Path(os.environ.get("NUCEL_TRANSFORMERS4_PYTHON", REPO_ROOT / ".venv-tf4" / "bin" / "python"))


@pytest.mark.slow
@pytest.mark.parametrize("python", [Path(sys.executable), TRANSFORMERS4_PYTHON], ids=["current", "transformers-4.57"])
def test_converted_release_is_bit_identical_and_loads_without_the_package(replica, tmp_path, python):
    if not python.exists():
        pytest.skip(f"no transformers 4.57 environment at {python} (`make test` creates it)")
    converted = import_modernbert(replica, tmp_path / "nucel-93m")
    config = json.loads((converted / "config.json").read_text())
    assert config["model_type"] == "modernbert" and config["auto_map"]["AutoModel"] == "modeling_nucel.NucELModel"
    saved, written = load_file(replica / "model.safetensors"), load_file(converted / "model.safetensors")
    assert saved.keys() == written.keys() and all(torch.equal(saved[name], written[name]) for name in saved)

    input_ids, attention_mask = released_batch(DNA)
    expected = hidden_states(ModernBertModel.from_pretrained(replica).eval(), input_ids, attention_mask)
    for remote, wanted_class in ((True, "NucELModel"), (False, "ModernBertModel")):
        result = run_child(python, converted, remote)
        assert result["class"] == wanted_class
        assert result["ids"] == input_ids.tolist()  # the converted folder's tokenizer gives the released ids
        torch.testing.assert_close(torch.tensor(result["hidden"]), expected, atol=1e-5, rtol=0)


def test_a_non_default_rope_base_changes_outputs_and_survives_load_convert_save_export(tmp_path):
    replica = write_release_replica(tmp_path / "release")
    default_base = write_release_replica(tmp_path / "default-base", local_rope_theta=10000.0)  # same weights
    input_ids, attention_mask = released_batch(DNA)
    with_release_base = hidden_states(NucELModel.from_pretrained(replica), input_ids, attention_mask)
    with_default_base = hidden_states(NucELModel.from_pretrained(default_base), input_ids, attention_mask)
    assert (with_release_base - with_default_base).abs().max() > 1e-3  # the value matters: dropping it would show

    converted = import_modernbert(replica, tmp_path / "nucel")  # convert (and save)
    exported = export_modernbert(converted, tmp_path / "native")  # export
    assert json.loads((exported / "config.json").read_text())["local_rope_theta"] == 1000.0
    assert NucELModel.from_pretrained(converted).config.local_rope_theta == 1000.0
    for model in (
        NucELModel.from_pretrained(converted),
        AutoModel.from_pretrained(converted, trust_remote_code=True),
        ModernBertModel.from_pretrained(exported).eval(),
    ):
        torch.testing.assert_close(
            hidden_states(model, input_ids, attention_mask), with_release_base, atol=1e-5, rtol=0
        )


def test_a_transformers5_spelled_config_keeps_its_values(tmp_path):
    # transformers 5.x writes the attention pattern and RoPE bases as layer_types / rope_parameters only.
    replica = write_release_replica(tmp_path / "release")
    config = json.loads((replica / "config.json").read_text())
    for legacy in ("global_attn_every_n_layers", "global_rope_theta", "local_rope_theta"):
        config.pop(legacy)
    config["layer_types"] = ["full_attention", "sliding_attention", "full_attention", "sliding_attention"]
    config["rope_parameters"] = {
        "full_attention": {"rope_type": "default", "rope_theta": 10000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 1000.0},
    }
    (replica / "config.json").write_text(json.dumps(config))
    model = NucELModel.from_pretrained(replica)
    assert model.config.global_attn_every_n_layers == 2
    assert (model.config.global_rope_theta, model.config.local_rope_theta) == (10000.0, 1000.0)
    native = ModernBertModel.from_pretrained(replica).eval()
    input_ids, attention_mask = released_batch(DNA)
    torch.testing.assert_close(
        hidden_states(model, input_ids, attention_mask),
        hidden_states(native, input_ids, attention_mask),
        atol=1e-5,
        rtol=0,
    )


def test_scaled_rope_or_an_irregular_attention_pattern_is_refused():
    with pytest.raises(ValueError, match="RoPE scaling"):
        NucELConfig(
            rope_parameters={
                "full_attention": {"rope_type": "yarn", "rope_theta": 1.0},
                "sliding_attention": {"rope_theta": 1.0},
            }
        )
    with pytest.raises(ValueError, match="layer_types"):
        NucELConfig(num_hidden_layers=3, layer_types=["full_attention", "full_attention", "sliding_attention"])


def test_the_package_commands_accept_the_release_folder(replica):
    model, tokenizer = load_encoder(replica, device="cpu")
    per_base = embed_sequences(model, tokenizer, DNA[:1], pooling=None, progress=False)[0]
    input_ids, attention_mask = released_batch(DNA[:1])
    native = ModernBertModel.from_pretrained(replica).eval()
    with torch.no_grad():
        expected = native(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[0, 1:]
    np.testing.assert_allclose(per_base, expected.numpy(), atol=1e-5)
