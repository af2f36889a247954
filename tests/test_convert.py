"""Import of ModernBERT-format checkpoints (the published NucEL layout included) and export to native ModernBERT."""

import argparse
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    ModernBertConfig,
    ModernBertForMaskedLM,
    ModernBertForSequenceClassification,
    ModernBertModel,
)

from nucel import NucELConfig, NucELForPreTraining, NucELForSequenceClassification, NucELGenerator, NucELModel
from nucel.convert import ConversionError, add_parser, export_modernbert, import_modernbert
from nucel.folders import save_model_folder
from nucel.modeling_nucel.configuration_nucel import BASE_IDS, SPECIAL_TOKENS

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4)
# Longer than the local window (±64), with lowercase and N, padded in a batch.
DNA = ["ACGTTGCA" * 20 + "acgtn" * 4, "GGATCCNNATTA" * 9]

# The published NucEL token layout, written out by hand from its description: the seven specials at 0-6, ids 7-10
# unused, A C G T at 11-14, 16 more rows at 15-30.
PUBLISHED_ID = {token: i for i, token in enumerate(SPECIAL_TOKENS)} | {"A": 11, "C": 12, "G": 13, "T": 14}


def published_ids(tokenizer, sequences):
    """Our token ids for `sequences`, and the same tokens in the published layout."""
    batch = tokenizer(sequences, return_tensors="pt", padding=True)
    ours = batch["input_ids"]
    published = ours.clone()
    for token, published_id in PUBLISHED_ID.items():
        published[ours == tokenizer.convert_tokens_to_ids(token)] = published_id
    return ours, published, batch["attention_mask"]


def native_config(vocab_size, **overrides):
    return ModernBertConfig(
        vocab_size=vocab_size, pad_token_id=0, cls_token_id=2, sep_token_id=3, bos_token_id=5, eos_token_id=6,
        local_attention=128, global_attn_every_n_layers=3, **TINY, **overrides,
    )


def randomise_norms(model):
    """LayerNorm weights start at 1; make them differ so that a norm left behind by the import would show."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.uniform_(0.5, 1.5)
    return model


def test_import_published_mlm_checkpoint_gives_the_same_hidden_states_and_logits(tmp_path, tokenizer):
    original = randomise_norms(ModernBertForMaskedLM(native_config(31)).eval())  # tied decoder, as ModernBERT saves it
    original.save_pretrained(tmp_path / "published")
    converted_folder = import_modernbert(tmp_path / "published", tmp_path / "nucel")

    converted = AutoModelForMaskedLM.from_pretrained(converted_folder, trust_remote_code=True)
    assert type(converted).__name__ == "NucELGenerator"
    assert converted.config.vocab_size == 27 and json.loads((converted_folder / "config.json").read_text())["auto_map"]
    ours, published, attention_mask = published_ids(tokenizer, DNA)
    assert set(published[0, 1:161].tolist()) == {11, 12, 13, 14}  # the first sequence starts with 160 bases
    with torch.no_grad():
        expected = original(published, attention_mask=attention_mask)
        got = converted(ours, attention_mask=attention_mask)
        expected_hidden = original.model(published, attention_mask=attention_mask).last_hidden_state
        got_hidden = converted.model(ours, attention_mask=attention_mask).last_hidden_state
    real = attention_mask.bool()
    assert torch.allclose(expected_hidden[real], got_hidden[real], atol=1e-5)
    # Every one of our 27 logits is the published logit of the same token.
    published_rows = [PUBLISHED_ID.get(tokenizer.convert_ids_to_tokens(i)) for i in range(11)]
    assert torch.allclose(expected.logits[real][:, published_rows], got.logits[real][:, :11], atol=1e-5)
    base_row = converted.model.embeddings.tok_embeddings.weight[BASE_IDS[0]]
    assert torch.equal(base_row, original.model.embeddings.tok_embeddings.weight[11])


def test_import_published_encoder_with_transformers5_config_spelling(tmp_path, tokenizer):
    config = native_config(31, global_rope_theta=80000.0)
    config.layer_types = ["full_attention", "sliding_attention"] * 2  # global every 2nd layer, not the default 3rd
    original = randomise_norms(ModernBertModel(config).eval())
    original.save_pretrained(tmp_path / "published")
    # Keep only transformers 5.x's spelling (layer_types, rope_parameters), as a checkpoint saved by 5.x has it.
    config_path = tmp_path / "published" / "config.json"
    saved = json.loads(config_path.read_text())
    for legacy in ("global_attn_every_n_layers", "global_rope_theta", "local_rope_theta"):
        saved.pop(legacy, None)
    assert saved["rope_parameters"]["full_attention"]["rope_theta"] == 80000.0
    config_path.write_text(json.dumps(saved))

    converted = NucELModel.from_pretrained(import_modernbert(tmp_path / "published", tmp_path / "nucel"))
    assert converted.config.global_attn_every_n_layers == 2 and converted.config.global_rope_theta == 80000.0
    ours, published, attention_mask = published_ids(tokenizer, DNA)
    with torch.no_grad():
        expected = original(published, attention_mask=attention_mask).last_hidden_state
        got = converted(ours, attention_mask=attention_mask).last_hidden_state
    real = attention_mask.bool()
    assert torch.allclose(expected[real], got[real], atol=1e-5)


def test_import_classifier_in_our_layout_keeps_labels_and_logits(tmp_path, tokenizer):
    config = native_config(27, num_labels=2, id2label={0: "background", 1: "promoter"}, classifier_pooling="mean")
    original = randomise_norms(ModernBertForSequenceClassification(config).eval())
    original.save_pretrained(tmp_path / "native")
    converted = NucELForSequenceClassification.from_pretrained(import_modernbert(tmp_path / "native", tmp_path / "nucel"))
    assert converted.config.id2label == {0: "background", 1: "promoter"} and converted.config.classifier_pooling == "mean"
    batch = tokenizer(DNA, return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.allclose(original(**batch).logits, converted(**batch).logits, atol=1e-5)


def test_import_refuses_an_unknown_vocabulary_layout(tmp_path):
    ModernBertModel(native_config(30)).save_pretrained(tmp_path / "odd")
    with pytest.raises(ConversionError, match="30-row vocabulary"):
        import_modernbert(tmp_path / "odd", tmp_path / "nucel")


def run_cli(*argv):
    parser = argparse.ArgumentParser(prog="nucel")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


@pytest.mark.parametrize("kind", ["generator", "classifier"])
def test_export_is_native_modernbert_and_round_trips(tmp_path, tokenizer, kind):
    if kind == "generator":
        model = NucELGenerator(NucELConfig.from_preset("tiny", restrict_to_bases=True))
        auto_class, native_class = AutoModelForMaskedLM, ModernBertForMaskedLM
    else:
        model = NucELForSequenceClassification(NucELConfig.from_preset("tiny", num_labels=3, id2label={0: "a", 1: "b", 2: "c"}))
        auto_class, native_class = AutoModelForSequenceClassification, ModernBertForSequenceClassification
    model = randomise_norms(model).eval()
    save_model_folder(model, tmp_path / "nucel")
    run_cli("convert", "export", str(tmp_path / "nucel"), str(tmp_path / "native"))

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
            # The base restriction travels in the decoder bias: native ModernBERT scores only A, C, G, T too.
            assert torch.isinf(native_logits[real][:, 11:]).all() and torch.isfinite(native_logits[real][:, list(BASE_IDS)]).all()
            assert torch.equal(native_logits[real].argmax(-1), reference[real].argmax(-1))
            reference, native_logits = reference[real][:, list(BASE_IDS)], native_logits[real][:, list(BASE_IDS)]
        assert torch.allclose(reference, native_logits, atol=1e-5)

    run_cli("convert", "import", str(exported), str(tmp_path / "back"))
    back = type(model).from_pretrained(tmp_path / "back")
    original_state, back_state = model.state_dict(), back.state_dict()
    assert original_state.keys() == back_state.keys()
    for name, value in original_state.items():
        if kind == "generator" and name == "decoder.bias":  # only the non-base entries changed, to -inf
            assert torch.equal(value[list(BASE_IDS)], back_state[name][list(BASE_IDS)])
        else:
            assert torch.equal(value, back_state[name]), name


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
    python = Path(os.environ.get("NUCEL_TRANSFORMERS4_PYTHON", Path(__file__).resolve().parents[1] / ".venv-tf4" / "bin" / "python"))
    if not python.exists():
        pytest.skip(f"no transformers 4.57 environment at {python} (`make test` creates it)")
    # Non-default attention period and RoPE base: 4.x reads only the legacy spelling, and would silently use
    # its defaults (3, 160000) if the export lacked it.
    model = randomise_norms(NucELGenerator(NucELConfig.from_preset(
        "tiny", global_attn_every_n_layers=2, global_rope_theta=50000.0, restrict_to_bases=True))).eval()
    save_model_folder(model, tmp_path / "nucel")
    export_modernbert(tmp_path / "nucel", tmp_path / "native")
    ids = tokenizer(DNA[0])["input_ids"]
    completed = subprocess.run(
        [str(python), "-c", TRANSFORMERS4_CHILD, str(tmp_path / "native"), json.dumps([ids])],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    logits = torch.tensor(json.loads(completed.stdout.strip().splitlines()[-1]))
    with torch.no_grad():
        expected = torch.nan_to_num(model(torch.tensor([ids])).logits, neginf=-1e30)
    assert torch.allclose(logits, expected, atol=1e-5)
