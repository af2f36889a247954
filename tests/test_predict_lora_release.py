"""`nucel predict` on an adapter-only LoRA release (`nucel release --lora-adapter`): the classifier is rebuilt on the
base model's Hub id (here from a fake offline Hub cache) and predicts exactly as the fine-tuned folder it came from,
windows included; a base that is not there is a one-line error that names it."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from nucel import NucELConfig, NucELModel, cli
from nucel.core.classifiers import TRAINING_LENGTHS, load_classifier
from nucel.core.models import save_model_folder
from nucel.core.tables import Split
from nucel.predict import predict_file
from nucel.release_files import ADAPTER_REQUIRED_FILES
from nucel.training.finetune import finetune
from nucel.training.finetune_config import FinetuneSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LABELS = ["c_rich", "g_rich"]
BASE_ID = "nucel-tests/nucel-tiny"
RELEASE_ID = "nucel-tests/promoter-adapter"


def random_dna(length: int, seed: int) -> str:
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), size=length))


def cache_model(cache, repo_id: str, folder) -> None:
    """`folder` as the Hub cache holds a downloaded repository: models--owner--name/refs/main -> snapshots/<commit>/."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repository = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repository / "snapshots" / commit)
    (repository / "refs").mkdir()
    (repository / "refs" / "main").write_text(commit)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty offline Hub cache of this test's own."""
    import huggingface_hub.constants

    assert huggingface_hub.constants.HF_HUB_OFFLINE  # tests/conftest.py switches the Hub off
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LoRA fine-tune of a tiny local base, and its adapter-only release naming the base by its Hub id."""
    root = tmp_path_factory.mktemp("lora-release")
    torch.manual_seed(0)
    base = save_model_folder(NucELModel(NucELConfig.from_preset("tiny")), root / "base")
    rng = np.random.default_rng(0)
    sequences = [random_dna(int(n), i) for i, n in enumerate(rng.integers(30, 61, size=16))]
    split = Split(sequences, [int(s.count("G") > s.count("C")) for s in sequences], "toy", "")
    # A large learning rate, so that two steps move the adapters away from their zero start.
    settings = FinetuneSettings(
        label_names=LABELS,
        method="lora",
        learning_rate=1e-2,
        max_steps=2,
        eval_steps=2,
        batch_size=8,
        early_stopping_patience=None,
        max_length_bp=50,
    )
    finetune(str(base), split, split, root / "finetuned", settings)
    assert (
        cli.main(
            [
                "release",
                "--model",
                str(root / "finetuned"),
                "--repo-id",
                RELEASE_ID,
                "--lora-adapter",
                "--base-model",
                BASE_ID,
                "--dry-run",
                "-o",
                str(root / "release"),
            ]
        )
        == 0
    )
    fasta = root / "input.fa"
    # 100 bp: longer than the 50 bp trained on, so predicted from windows.
    fasta.write_text(
        "".join(
            f">{name}\n{random_dna(length, seed)}\n"
            for name, length, seed in (("short", 25, 1), ("long", 100, 2), ("exact", 50, 3))
        )
    )
    return {"root": root, "base": base, "finetuned": root / "finetuned", "release": root / "release", "fasta": fasta}


def read_rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def probabilities(rows: list[dict]) -> np.ndarray:
    return np.array([[float(row[f"probability_{name}"]) for name in LABELS] for row in rows])


def test_the_release_records_the_classifier_without_local_paths(trained):
    release = trained["release"]
    assert ADAPTER_REQUIRED_FILES <= {path.name for path in release.iterdir()}
    original = json.loads((trained["finetuned"] / "finetune.json").read_text())
    public = json.loads((release / "finetune.json").read_text())
    assert public["base_model"] == BASE_ID and public["base_model_source"] == "hub"
    for key in ("label_names", "problem_type", "pooling", "head", "method", "lora_rank", TRAINING_LENGTHS):
        assert public[key] == original[key], key
    assert json.loads((release / "adapter_config.json").read_text())["base_model_name_or_path"] == BASE_ID
    for path in release.iterdir():
        if path.suffix in (".json", ".md"):
            assert str(trained["root"]) not in path.read_text(), path.name


def test_predict_on_the_release_equals_the_fine_tuned_folder(trained, hub_cache, tmp_path):
    cache_model(hub_cache, BASE_ID, trained["base"])
    cache_model(hub_cache, RELEASE_ID, trained["release"])
    expected = read_rows(
        predict_file(trained["finetuned"], trained["fasta"], tmp_path / "finetuned.tsv", device="cpu", progress=False)
    )
    assert [row["windows"] for row in expected] == ["1", "3", "1"]  # 50-bp windows at 0, 25 and 50
    for model in (trained["release"], RELEASE_ID):  # the release folder, and the same files from the Hub cache
        rows = read_rows(predict_file(model, trained["fasta"], tmp_path / "release.tsv", device="cpu", progress=False))
        np.testing.assert_allclose(probabilities(rows), probabilities(expected), atol=1e-5)
        assert [(row["id"], row["prediction"], row["windows"]) for row in rows] == [
            (row["id"], row["prediction"], row["windows"]) for row in expected
        ]
    classifier = load_classifier(trained["release"], "cpu")
    assert classifier.label_names == LABELS
    assert classifier.training_lengths == load_classifier(trained["finetuned"], "cpu").training_lengths


def test_a_base_model_missing_offline_is_a_one_line_error_naming_it(trained, hub_cache, tmp_path, capsys):
    cache_model(hub_cache, RELEASE_ID, trained["release"])  # the release is there, its base is not
    for model in (trained["release"], RELEASE_ID):
        with pytest.raises(FileNotFoundError) as error:
            load_classifier(model, "cpu")
        message = str(error.value)
        assert len(message.splitlines()) == 1
        assert f"{BASE_ID}: no such model folder or Hub id" in message and f"`hf download {BASE_ID}`" in message

    assert (
        cli.main(
            ["predict", "--model", str(trained["release"]), str(trained["fasta"]), "-o", str(tmp_path / "never.tsv")]
        )
        == 2
    )
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and BASE_ID in error
    assert not (tmp_path / "never.tsv").exists()
