"""The code a Hub visitor copies from a model card runs as written and means what its comments say: the encoder's
output has one [CLS] then one vector per base (the tokenizer adds nothing after the bases), the token classifier gives
one label per base, and the generator's fill-mask scores the four bases only."""

import re

import pytest
import torch

from nucel.cli import main
from nucel.core.models import save_model_folder
from nucel.modeling_nucel import NucELConfig, NucELGenerator, NucELModel
from nucel.modeling_nucel.modeling_nucel import NucELForTokenClassification

SNIPPET_BASES = "ACGTAGCTAGGTATCGATCG"  # the sequence the card's snippets embed


def release(tmp_path, model, name: str, *extra: str):
    folder = save_model_folder(model, tmp_path / name)
    out = tmp_path / f"{name}-release"
    assert (
        main(
            [
                "release",
                "--model",
                str(folder),
                "--repo-id",
                f"owner/{name}",
                "--dry-run",
                "-o",
                str(out),
                *extra,
                "--debug",
            ]
        )
        == 0
    )
    return out


def python_snippets(card: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card, flags=re.S)


def run_snippet(card: str, repo_id: str, folder) -> dict:
    """The card's first Python block, with the Hub id pointed at the release folder (no network in tests)."""
    code = python_snippets(card)[0].replace(f'"{repo_id}"', repr(str(folder)))
    namespace = {}
    exec(compile(code, "model card", "exec"), namespace)
    return namespace


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_the_encoder_card_snippet_gives_one_vector_per_base(tmp_path):
    torch.manual_seed(0)
    folder = release(tmp_path, NucELModel(NucELConfig.from_preset("tiny")).eval(), "encoder")
    card = (folder / "README.md").read_text()
    assert "1 + bases + 1" not in card
    namespace = run_snippet(card, "owner/encoder", folder)
    assert namespace["hidden"].shape[1] == 1 + len(SNIPPET_BASES)
    assert namespace["base_embeddings"].shape[1] == len(SNIPPET_BASES)
    torch.testing.assert_close(namespace["base_embeddings"], namespace["hidden"][:, 1:])


def test_the_token_classifier_card_snippet_labels_every_base(tmp_path):
    config = NucELConfig.from_preset("tiny", num_labels=2, id2label={0: "exon", 1: "intron"})
    folder = release(tmp_path, NucELForTokenClassification(config).eval(), "tokens")
    namespace = run_snippet((folder / "README.md").read_text(), "owner/tokens", folder)
    assert namespace["per_base_labels"].shape[-1] == len(SNIPPET_BASES)


def test_the_fill_mask_widget_and_snippet_score_the_bases_only(tmp_path):
    torch.manual_seed(0)
    generator = NucELGenerator(NucELConfig.from_preset("tiny-generator", restrict_to_bases=True)).eval()
    folder = release(tmp_path, generator, "generator")
    card = (folder / "README.md").read_text()
    metadata = card.split("---")[1]
    assert re.search(r"inference:\s+parameters:\s+targets:\s+- A\s+- C\s+- G\s+- T\s+top_k: 4", metadata), metadata
    code = python_snippets(card)[0].replace('"owner/generator"', repr(str(folder)))
    code += "\nresult = fill('ACGTAGCTAGG[MASK]ATCGATCG', targets=['A', 'C', 'G', 'T'])\n"
    namespace = {}
    exec(compile(code, "model card", "exec"), namespace)
    assert sorted(entry["token_str"] for entry in namespace["result"]) == ["A", "C", "G", "T"]
