"""Hub releases: the exact repository folder, its model card, dual-mode loading in a fresh process, the upload call."""

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from safetensors.torch import load_file

import nucel.modeling_nucel
from nucel import NucELConfig, NucELForPreTraining, NucELForSequenceClassification, NucELForTokenClassification
from nucel.folders import save_model_folder
from nucel.model_cards.render import METRICS, SUITES, CardFacts
from nucel.modeling_nucel.configuration_nucel import BASE_IDS
from nucel.tokenization import token_length
from nucel.release import (
    CODE_FILES,
    RELEASE_FILES,
    REQUIRED_FILES,
    ReleaseError,
    add_parser,
    build_release_folder,
    release_files,
    upload_release,
)

MODELING_DIR = Path(nucel.modeling_nucel.__file__).parent
LABELS = ["non-promoter", "promoter"]
# Padded batch: lowercase, N, and a sequence longer than the local window.
DNA = ["ACGTTGCATTAGGC" * 12 + "acgtNNacgt", "GGATCCATTAGCAT"]
MASKED = "ACGTTGCATTAGGCACGT[MASK]GCATTAGGCACGTTGCA"
FAKE_TOKEN = "hf_releaseTestTokenThatMustNeverBeWritten"
TRAINING_LEFTOVERS = ["optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin", "token"]


def results_json(suite: str, tasks: list[tuple[str, str, list[float]]]) -> dict:
    """A results file in the shape the benchmark runner writes (notes/RESULTS_SCHEMA.md)."""
    entries = []
    for task, metric, values in tasks:
        mean = sum(values) / len(values)
        sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
        entries.append({
            "task": task, "metric": metric, "mean": mean, "sd": sd, "values": values, "seeds": list(range(len(values))),
            "num_labels": 2, "split_sizes": {"train": 4904, "validation": 613, "test": 613},
            "data_sha256": {"train": "0" * 64, "test": "1" * 64}, "metrics": {metric: mean, "accuracy": 0.8},
        })
    return {"suite": suite, "model": "/somewhere/local/runs/nucel-tiny", "tasks": entries,
            "averages": {"CPD": entries[0]["mean"], "suite": sum(e["mean"] for e in entries) / len(entries)}}


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """Release folders for the three artefact types, built from training outputs as the training scripts leave them."""
    root = tmp_path_factory.mktemp("release")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_TOKEN", FAKE_TOKEN)  # a token in the environment must not end up in any file
        return build_releases(root)


def build_releases(root: Path) -> dict:
    torch.manual_seed(0)
    pretraining = NucELForPreTraining(NucELConfig.for_pretraining("tiny")).eval()
    save_model_folder(pretraining, root / "pretraining")
    # The pre-training script's export layout: export/discriminator and export/generator.
    save_model_folder(pretraining.generator, root / "export" / "generator")
    classifier = NucELForSequenceClassification(NucELConfig.from_preset("tiny", num_labels=2, classifier_pooling="mean")).eval()
    finetuned = save_model_folder(classifier, root / "finetuned")
    for leftover in TRAINING_LEFTOVERS:
        (finetuned / leftover).write_text(FAKE_TOKEN)
    (finetuned / "checkpoint-10").mkdir()
    (finetuned / "checkpoint-10" / "optimizer.pt").write_text("state")
    (finetuned / ".cache").mkdir()

    results_dir = root / "benchmarks" / "results" / "gue-run"
    results_dir.mkdir(parents=True)
    results = results_json("gue", [("prom/prom_core_tata", "mcc", [0.55, 0.61, 0.58]), ("tf/0", "mcc", [0.41, 0.44, 0.40])])
    (results_dir / "results.json").write_text(json.dumps(results))
    facts = CardFacts(
        pretraining_data="GRCh38 chr2:1-2,333,275 (test fixture)", hardware="2-core CPU", training_time="1 minute",
        training_precision="fp32", training_recipe="RTD, 10 steps", datasets=["gue"],
    )
    folders = {
        "encoder": build_release_folder(root / "pretraining", "nucel-test/nucel-tiny", root / "out" / "encoder",
                                        part="discriminator", facts=facts, results_paths=[results_dir / "results.json"]),
        "generator": build_release_folder(root / "export", "nucel-test/nucel-tiny-generator", root / "out" / "generator",
                                          part="generator", facts=facts),
        "classifier": build_release_folder(root / "finetuned", "nucel-test/nucel-tiny-promoter", root / "out" / "classifier",
                                           facts=CardFacts(base_model="nucel-test/nucel-tiny", task="promoter vs background"),
                                           results_paths=[results_dir / "results.json"], label_names=LABELS),
    }
    return {"root": root, "folders": folders, "results": results, "pretraining": pretraining, "classifier": classifier,
            "finetuned": finetuned}


# Runs in a fresh interpreter, as a Hub user would: the nucel package cannot be imported, the Hub is offline.
CHILD = textwrap.dedent(
    """
    import sys
    sys.modules["nucel"] = None  # any import of the package now fails
    import json
    import torch
    from transformers import AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer, pipeline

    folders, dna, masked = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
    try:
        import nucel
        raise SystemExit("nucel was importable")
    except ImportError:
        pass
    autos = {"encoder": AutoModel, "generator": AutoModelForMaskedLM, "classifier": AutoModelForSequenceClassification}
    report = {}
    for artefact, folder in folders.items():
        tokenizer = AutoTokenizer.from_pretrained(folder)
        batch = tokenizer(dna, return_tensors="pt", padding=True)
        for remote in (True, False):
            model = autos[artefact].from_pretrained(folder, trust_remote_code=remote)
            with torch.no_grad():
                output = model(**batch)
            tensor = output.last_hidden_state if artefact == "encoder" else output.logits
            if artefact == "encoder":
                piped = pipeline("feature-extraction", model=folder, trust_remote_code=remote)(dna[1])
            elif artefact == "generator":
                piped = pipeline("fill-mask", model=folder, trust_remote_code=remote)(masked, top_k=4)
            else:
                piped = pipeline("text-classification", model=folder, trust_remote_code=remote)(dna, top_k=None)
            report[f"{artefact}/{remote}"] = {
                "class": type(model).__name__, "training": model.training,
                "output": torch.nan_to_num(tensor, neginf=-1e30).tolist(), "pipeline": piped,
            }
    print(json.dumps(report))
    """
)


@pytest.mark.slow
def test_release_folders_load_in_a_fresh_process_with_and_without_remote_code(releases, tmp_path, tokenizer):
    folders = {artefact: str(folder) for artefact, folder in releases["folders"].items()}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(folders), json.dumps(DNA), MASKED],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])

    expected_classes = {
        "encoder": ("NucELModel", "ModernBertModel"),
        "generator": ("NucELGenerator", "ModernBertForMaskedLM"),
        "classifier": ("NucELForSequenceClassification", "ModernBertForSequenceClassification"),
    }
    batch = tokenizer(DNA, return_tensors="pt", padding=True)
    real = batch["attention_mask"].bool()
    with torch.no_grad():  # what the training output itself computes: the release must reproduce it
        golden = {
            "encoder": releases["pretraining"].model(**batch).last_hidden_state,
            "generator": releases["pretraining"].generator(**batch).logits,
            "classifier": releases["classifier"](**batch).logits,
        }
    for artefact, (remote_class, native_class) in expected_classes.items():
        remote, native = report[f"{artefact}/True"], report[f"{artefact}/False"]
        assert (remote["class"], native["class"]) == (remote_class, native_class)
        assert not remote["training"] and not native["training"]
        remote_output, native_output = torch.tensor(remote["output"]), torch.tensor(native["output"])
        expected = torch.nan_to_num(golden[artefact], neginf=-1e30)
        if artefact == "classifier":
            assert torch.allclose(remote_output, expected, atol=1e-5) and torch.allclose(native_output, expected, atol=1e-5)
        else:
            assert torch.allclose(remote_output[real], expected[real], atol=1e-5)
            assert torch.allclose(native_output[real], expected[real], atol=1e-5)

    # Pipelines: the same answers with and without remote code.
    remote_features = torch.tensor(report["encoder/True"]["pipeline"])
    assert torch.allclose(remote_features, torch.tensor(report["encoder/False"]["pipeline"]), atol=1e-5)
    assert remote_features.shape == (1, token_length(len(DNA[1])), 64)
    for artefact in ("generator", "classifier"):
        remote, native = report[f"{artefact}/True"]["pipeline"], report[f"{artefact}/False"]["pipeline"]
        flatten = (lambda answers: answers) if artefact == "generator" else (lambda answers: [a for per in answers for a in per])
        for remote_answer, native_answer in zip(flatten(remote), flatten(native), strict=True):
            assert remote_answer.get("token_str") == native_answer.get("token_str")
            assert remote_answer.get("label") == native_answer.get("label")
            assert remote_answer["score"] == pytest.approx(native_answer["score"], abs=1e-5)
    # The generator (and so the native Hub widget) proposes only bases; the classifier answers with label names.
    assert {answer["token"] for answer in report["generator/False"]["pipeline"]} == set(BASE_IDS)
    assert sum(answer["score"] for answer in report["generator/False"]["pipeline"]) == pytest.approx(1.0, abs=1e-5)
    assert {answer["label"] for answer in report["classifier/False"]["pipeline"][0]} == set(LABELS)


def test_release_folder_holds_exactly_the_release_files_and_the_trained_weights(releases):
    for artefact, folder in releases["folders"].items():
        names = set(release_files(folder))
        assert REQUIRED_FILES <= names <= RELEASE_FILES
        for code_file in names & CODE_FILES:  # the code is the package's own Hub-facing code, unchanged
            assert (folder / code_file).read_bytes() == (MODELING_DIR / code_file).read_bytes()
        for path in Path(folder).iterdir():
            assert FAKE_TOKEN not in path.read_bytes().decode("utf-8", errors="ignore"), path.name
        config = json.loads((folder / "config.json").read_text())
        assert config["model_type"] == "modernbert"
        assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForMaskedLM", "AutoModelForPreTraining",
                                           "AutoModelForSequenceClassification", "AutoModelForTokenClassification"}
    assert json.loads((releases["folders"]["encoder"] / "config.json").read_text())["generator_config"] is None
    classifier_config = json.loads((releases["folders"]["classifier"] / "config.json").read_text())
    assert classifier_config["id2label"] == {"0": LABELS[0], "1": LABELS[1]}

    released = load_file(releases["folders"]["classifier"] / "model.safetensors")
    trained = releases["classifier"].state_dict()
    assert released.keys() == trained.keys() and all(torch.equal(released[name], trained[name]) for name in trained)
    # The generator's base restriction is folded into its decoder bias for the native (widget) path, nothing else.
    generator = releases["pretraining"].generator.state_dict()
    released = load_file(releases["folders"]["generator"] / "model.safetensors")
    for name, value in generator.items():
        if name == "decoder.bias":
            assert torch.equal(released[name][list(BASE_IDS)], value[list(BASE_IDS)])
            assert torch.isinf(released[name]).sum() == len(value) - len(BASE_IDS)
        else:
            assert torch.equal(released[name], value), name


def test_model_card_metadata_body_and_model_index(releases):
    root, results = releases["root"], releases["results"]
    expected_tags = {"encoder": "feature-extraction", "generator": "fill-mask", "classifier": "text-classification"}
    for artefact, folder in releases["folders"].items():
        text = (folder / "README.md").read_text()
        card = ModelCard.load(folder / "README.md")
        data = card.data
        assert data.library_name == "transformers" and data.pipeline_tag == expected_tags[artefact]
        assert data.license == "apache-2.0" and {"dna", "genomics", "biology"} <= set(data.tags)
        for local in (str(root), "/tmp", str(Path.home()), str(Path.cwd()), "/somewhere/local"):
            assert local not in text, f"{artefact} card leaks {local}"
        for heading in ("Model details", "Tokenizer", "Context length", "Pooling", "Training", "How to load",
                        "How to fine-tune", "How to reproduce", "Evaluation", "Limits", "License", "Citation"):
            assert f"## {heading}" in card.text, heading
        for fact in ("[UNK]", "[MASK]", "upper-cased", "1025 tokens", "float32", "arXiv:2508.13191"):
            assert fact in card.text, fact
        widget_texts = [example["text"] for example in data.widget]
        assert all(set(text.replace("[MASK]", "")) <= set("ACGT") for text in widget_texts)

    generator_card = ModelCard.load(releases["folders"]["generator"] / "README.md")
    assert [example["text"].count("[MASK]") for example in generator_card.data.widget] == [1]
    generator_parameters = sum(p.numel() for p in releases["pretraining"].generator.parameters())
    assert f"{generator_parameters:,} in all" in generator_card.text

    classifier_card = ModelCard.load(releases["folders"]["classifier"] / "README.md")
    assert classifier_card.data.base_model == "nucel-test/nucel-tiny"
    assert len(classifier_card.data.widget) == 2  # a promoter and a non-promoter
    assert "pooling `mean`" in classifier_card.text and "`non-promoter`, `promoter`" in classifier_card.text

    encoder_card = ModelCard.load(releases["folders"]["encoder"] / "README.md")
    assert "GRCh38" in encoder_card.text and encoder_card.data.datasets == ["gue"]
    assert encoder_card.data.metrics == ["matthews_correlation"]
    index = {(r.dataset_name, r.metric_type): r for r in encoder_card.data.eval_results}
    assert len(index) == len(results["tasks"])
    for task in results["tasks"]:
        entry = index[(f"{SUITES['gue'][0]} {task['task']}", METRICS[task["metric"]][0])]
        assert entry.metric_value == task["mean"] and entry.dataset_split == "test" and entry.task_type == "text-classification"


def cli(*argv):
    parser = argparse.ArgumentParser(prog="nucel")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(arg) for arg in argv])
    args.func(args)


def test_upload_sends_exactly_the_release_folder(releases, tmp_path):
    with mock.patch.object(HfApi, "create_repo") as create_repo, \
         mock.patch.object(HfApi, "create_branch") as create_branch, \
         mock.patch.object(HfApi, "upload_folder") as upload_folder:
        cli("release", releases["finetuned"], "nucel-test/nucel-tiny-promoter", "--out", tmp_path / "classifier",
            "--label-names", *LABELS, "--base-model", "nucel-test/nucel-tiny",
            "--private", "--revision", "v1", "--commit-message", "First release")

    folder = tmp_path / "classifier"
    create_repo.assert_called_once_with("nucel-test/nucel-tiny-promoter", repo_type="model", private=True, exist_ok=True)
    create_branch.assert_called_once_with("nucel-test/nucel-tiny-promoter", repo_type="model", branch="v1", exist_ok=True)
    upload_folder.assert_called_once()
    call = upload_folder.call_args.kwargs
    assert call["repo_id"] == "nucel-test/nucel-tiny-promoter" and call["folder_path"] == folder
    assert call["revision"] == "v1" and call["commit_message"] == "First release"
    assert call["allow_patterns"] == sorted(path.name for path in folder.iterdir())
    assert not set(call["allow_patterns"]) & set(TRAINING_LEFTOVERS + ["checkpoint-10", ".cache"])
    assert call["delete_patterns"] == "*"  # the repository ends up holding exactly the folder (.gitattributes aside)


def test_dry_run_writes_the_folder_and_uploads_nothing(releases, tmp_path):
    forbidden = mock.Mock(side_effect=AssertionError("a dry run must not call the Hub"))
    with mock.patch.object(HfApi, "create_repo", forbidden), mock.patch.object(HfApi, "upload_folder", forbidden):
        cli("release", releases["root"] / "pretraining", "nucel-test/nucel-tiny-generator", "--part", "generator",
            "--out", tmp_path / "generator", "--dry-run")
    assert "model.safetensors" in release_files(tmp_path / "generator")
    forbidden.assert_not_called()


def test_release_refuses_what_it_cannot_publish(releases, tmp_path):
    with pytest.raises(ReleaseError, match="--label-names"):
        build_release_folder(releases["finetuned"], "nucel-test/x", tmp_path / "a")
    with pytest.raises(ReleaseError, match="--part"):
        build_release_folder(releases["root"] / "pretraining", "nucel-test/x", tmp_path / "b")
    with pytest.raises(ReleaseError, match="owner/name"):
        build_release_folder(releases["finetuned"], "no-owner", tmp_path / "c", label_names=LABELS)
    with pytest.raises(ReleaseError, match="local path"):
        build_release_folder(releases["finetuned"], "nucel-test/x", tmp_path / "d", label_names=LABELS,
                             facts=CardFacts(hardware=f"the machine that wrote {releases['finetuned']}"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "d").exists()
    # A release folder that picked up anything else is never uploaded.
    folder = releases["folders"]["classifier"]
    (folder / "optimizer.pt").write_text("state")
    try:
        with mock.patch.object(HfApi, "create_repo") as create_repo, pytest.raises(ReleaseError, match="optimizer.pt"):
            upload_release(folder, "nucel-test/nucel-tiny-promoter")
        create_repo.assert_not_called()
    finally:
        (folder / "optimizer.pt").unlink()


def test_token_classifier_release_and_card_facts_file(tmp_path):
    model = NucELForTokenClassification(NucELConfig.from_preset("tiny", num_labels=3))
    save_model_folder(model, tmp_path / "trained")
    (tmp_path / "facts.yaml").write_text("objective: mlm\nhardware: 1x H100\ntraining_time: 2 hours\n")
    cli("release", tmp_path / "trained", "nucel-test/splice-sites", "--out", tmp_path / "release", "--dry-run",
        "--card-facts", tmp_path / "facts.yaml", "--label-names", "none", "donor", "acceptor", "--license", "mit")
    card = ModelCard.load(tmp_path / "release" / "README.md")
    assert card.data.pipeline_tag == "token-classification" and card.data.license == "mit"
    assert "plain masked language modelling" in card.text and "| Hardware | 1x H100 |" in card.text
    assert not card.data.eval_results  # no results given: no model-index

    (tmp_path / "typo.yaml").write_text("hardwre: 1x H100\n")
    with pytest.raises(ValueError, match="unknown card fact.*hardwre"):
        CardFacts.from_yaml(tmp_path / "typo.yaml")
