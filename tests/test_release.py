"""Hub releases: the exact repository folder, its model card, dual-mode loading in a fresh process, the upload call,
and cards that cannot misstate: results of another model refused, the training record rendered from the run and
from finetune.json, no machine-local flags or paths."""

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from safetensors.torch import load_file
from test_train_rtd import small_settings

import nucel.modeling_nucel
from nucel import (
    NucELConfig,
    NucELForPreTraining,
    NucELForSequenceClassification,
    NucELForTokenClassification,
    NucELGenerator,
    NucELModel,
)
from nucel.cli import main as nucel_main
from nucel.core.classifiers import classifier_on, load_finetuned, predict_logits
from nucel.core.files import file_sha256
from nucel.core.identity import folder_identity, random_identity
from nucel.core.metrics import compute_metrics
from nucel.core.models import save_model_folder
from nucel.core.records import genome_files
from nucel.model_cards.card_rows import METRICS, genome_description
from nucel.model_cards.render import NOT_RECORDED, PROMOTER, SUITES, CardFacts
from nucel.modeling_nucel.configuration_nucel import BASE_IDS
from nucel.modeling_nucel.modeling_nucel import NON_BASE_LOGIT_BIAS
from nucel.release import build_release_folder, upload_release
from nucel.release_files import CODE_FILES, RELEASE_FILES, REQUIRED_FILES, ReleaseError, release_files
from nucel.tokenization import token_length
from nucel.training.finetune import finetune
from nucel.training.finetune_config import FinetuneSettings
from nucel.training.finetune_data import read_labelled_data
from nucel.training.pretraining_config import PretrainingConfig
from nucel.training.rtd_loop import run_pretraining

MODELING_DIR = Path(nucel.modeling_nucel.__file__).parent
LABELS = ["non-promoter", "promoter"]
# Padded batch: lowercase, N, and a sequence longer than the local window.
DNA = ["ACGTTGCATTAGGC" * 12 + "acgtNNacgt", "GGATCCATTAGCAT"]
MASKED = "ACGTTGCATTAGGCACGT[MASK]GCATTAGGCACGTTGCA"
FAKE_TOKEN = "hf_releaseTestTokenThatMustNeverBeWritten"
TRAINING_LEFTOVERS = [
    "optimizer.pt",
    "scheduler.pt",
    "rng_state.pth",
    "trainer_state.json",
    "training_args.bin",
    "token",
]


def results_json(suite: str, tasks: list[tuple[str, str, list[float]]], identity: dict) -> dict:
    """A results file in the shape the benchmark runner writes (benchmarks/run.py `write_results`), for the model
    with `identity` (benchmarks/model_identity.py)."""
    entries = []
    for task, metric, values in tasks:
        mean = sum(values) / len(values)
        sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
        entries.append(
            {
                "task": task,
                "metric": metric,
                "mean": mean,
                "sd": sd,
                "values": values,
                "seeds": list(range(len(values))),
                "num_labels": 2,
                "split_sizes": {"train": 4904, "validation": 613, "test": 613},
                "data_sha256": {"train": "0" * 64, "test": "1" * 64},
                "metrics": {metric: mean, "accuracy": 0.8},
            }
        )
    return {
        "suite": suite,
        "model": "/somewhere/local/runs/nucel-tiny",
        "model_identity": identity,
        "tasks": entries,
        "averages": {"CPD": entries[0]["mean"], "suite": sum(e["mean"] for e in entries) / len(entries)},
    }


def write_table(path: Path, rows: int, seed: int) -> Path:
    """A labelled CSV of 40-60 bp random sequences, half of each class."""
    rng = np.random.default_rng(seed)
    lines = ["sequence,label"]
    for i in range(rows):
        lines.append("".join(rng.choice(list("ACGT"), int(rng.integers(40, 61)))) + "," + LABELS[i % 2])
    path.write_text("\n".join(lines) + "\n")
    return path


def pretraining_run(root: Path) -> Path:
    """Two steps of `nucel-pretrain` on the built-in synthetic genome: a run folder as users get it."""
    settings = small_settings(
        root,
        max_steps=2,
        global_batch_size=4,
        warmup_steps=1,
        eval_every=2,
        eval_windows=4,
        save_every=2,
        keep_checkpoints=1,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_pretraining(PretrainingConfig(**settings))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """Release folders for every artefact type, built from training outputs as the training scripts leave them."""
    root = tmp_path_factory.mktemp("release")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_TOKEN", FAKE_TOKEN)  # a token in the environment must not end up in any file
        return build_releases(root)


def build_releases(root: Path) -> dict:
    torch.manual_seed(0)
    pretraining = NucELForPreTraining(NucELConfig.for_pretraining("tiny")).eval()
    save_model_folder(pretraining, root / "pretraining")
    classifier = NucELForSequenceClassification(
        NucELConfig.from_preset("tiny", num_labels=2, classifier_pooling="mean")
    ).eval()
    finetuned = save_model_folder(classifier, root / "finetuned")
    for leftover in TRAINING_LEFTOVERS:
        (finetuned / leftover).write_text(FAKE_TOKEN)
    (finetuned / "checkpoint-10").mkdir()
    (finetuned / "checkpoint-10" / "optimizer.pt").write_text("state")
    (finetuned / ".cache").mkdir()

    run = pretraining_run(root)
    discriminator = run / "export" / "discriminator"
    data = root / "data"
    data.mkdir()
    settings = FinetuneSettings(label_names=LABELS, max_steps=2, eval_steps=1, batch_size=8)
    splits = [
        read_labelled_data(write_table(data / name, rows, seed), settings, ["label"])
        for name, rows, seed in (("train.csv", 24, 1), ("dev.csv", 8, 2), ("test.csv", 8, 3))
    ]
    finetune(str(discriminator), *splits[:2], root / "promoter", settings, splits[2])
    finetune(
        str(discriminator), *splits[:2], root / "promoter-lora", dataclasses.replace(settings, method="lora"), splits[2]
    )

    results_dir = root / "benchmarks" / "results" / "gue-run"
    results_dir.mkdir(parents=True)
    results = results_json(
        "gue",
        [("prom/prom_core_tata", "mcc", [0.55, 0.61, 0.58]), ("tf/0", "mcc", [0.41, 0.44, 0.40])],
        folder_identity(discriminator),
    )
    (results_dir / "results.json").write_text(json.dumps(results))
    facts = CardFacts(hardware="2-core CPU", training_time="1 minute", datasets=["gue"])
    folders = {
        "encoder": build_release_folder(
            discriminator,
            "nucel-test/nucel-tiny",
            root / "out" / "encoder",
            facts=facts,
            results_paths=[results_dir / "results.json"],
        ),
        "generator": build_release_folder(
            run / "export", "nucel-test/nucel-tiny-generator", root / "out" / "generator", part="generator", facts=facts
        ),
        "classifier": build_release_folder(
            root / "finetuned",
            "nucel-test/nucel-tiny-promoter",
            root / "out" / "classifier",
            facts=CardFacts(base_model="nucel-test/nucel-tiny", task="promoter vs background"),
            label_names=LABELS,
        ),
        "promoter": build_release_folder(root / "promoter", "nucel-test/promoter", root / "out" / "promoter"),
        "promoter-lora": build_release_folder(
            root / "promoter-lora", "nucel-test/promoter-lora", root / "out" / "promoter-lora"
        ),
        "promoter-adapter": build_release_folder(
            root / "promoter-lora",
            "nucel-test/promoter-adapter",
            root / "out" / "adapter",
            facts=CardFacts(base_model="nucel-test/nucel-tiny"),
            lora_adapter=True,
        ),
    }
    return {
        "root": root,
        "folders": folders,
        "results": results,
        "results_path": results_dir / "results.json",
        "pretraining": pretraining,
        "classifier": classifier,
        "finetuned": finetuned,
        "run": run,
        "encoder": NucELModel.from_pretrained(discriminator).eval(),
        "generator": NucELGenerator.from_pretrained(run / "export" / "generator").eval(),
        "data": data,
    }


# Runs in a fresh interpreter, as a Hub user would: the nucel package cannot be imported, the Hub is offline.
CHILD = textwrap.dedent(
    """
    import sys
    sys.modules["nucel"] = None  # any import of the package now fails
    import json
    import torch
    from transformers import AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification, \
AutoTokenizer, pipeline

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
    folders = {artefact: str(releases["folders"][artefact]) for artefact in ("encoder", "generator", "classifier")}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(folders), json.dumps(DNA), MASKED],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
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
            "encoder": releases["encoder"](**batch).last_hidden_state,
            "generator": releases["generator"](**batch).logits,
            "classifier": releases["classifier"](**batch).logits,
        }
    for artefact, (remote_class, native_class) in expected_classes.items():
        remote, native = report[f"{artefact}/True"], report[f"{artefact}/False"]
        assert (remote["class"], native["class"]) == (remote_class, native_class)
        assert not remote["training"] and not native["training"]
        remote_output, native_output = torch.tensor(remote["output"]), torch.tensor(native["output"])
        expected = torch.nan_to_num(golden[artefact], neginf=-1e30)
        if artefact == "classifier":
            assert torch.allclose(remote_output, expected, atol=1e-5) and torch.allclose(
                native_output, expected, atol=1e-5
            )
        else:
            assert torch.allclose(remote_output[real], expected[real], atol=1e-5)
            assert torch.allclose(native_output[real], expected[real], atol=1e-5)

    # Pipelines: the same answers with and without remote code.
    remote_features = torch.tensor(report["encoder/True"]["pipeline"])
    assert torch.allclose(remote_features, torch.tensor(report["encoder/False"]["pipeline"]), atol=1e-5)
    assert remote_features.shape == (1, token_length(len(DNA[1])), 64)
    for artefact in ("generator", "classifier"):
        remote, native = report[f"{artefact}/True"]["pipeline"], report[f"{artefact}/False"]["pipeline"]
        flatten = (
            (lambda answers: answers)
            if artefact == "generator"
            else (lambda answers: [a for per in answers for a in per])
        )
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
        if artefact == "promoter-adapter":
            continue
        names = set(release_files(folder))
        assert REQUIRED_FILES <= names <= RELEASE_FILES
        for code_file in names & CODE_FILES:  # the code is the package's own Hub-facing code, unchanged
            assert (folder / code_file).read_bytes() == (MODELING_DIR / code_file).read_bytes()
        for path in Path(folder).iterdir():
            assert FAKE_TOKEN not in path.read_bytes().decode("utf-8", errors="ignore"), path.name
        config = json.loads((folder / "config.json").read_text())
        assert config["model_type"] == "modernbert"
        assert set(config["auto_map"]) == {
            "AutoConfig",
            "AutoModel",
            "AutoModelForMaskedLM",
            "AutoModelForPreTraining",
            "AutoModelForSequenceClassification",
            "AutoModelForTokenClassification",
        }
    assert json.loads((releases["folders"]["encoder"] / "config.json").read_text())["generator_config"] is None
    classifier_config = json.loads((releases["folders"]["classifier"] / "config.json").read_text())
    assert classifier_config["id2label"] == {"0": LABELS[0], "1": LABELS[1]}

    released = load_file(releases["folders"]["classifier"] / "model.safetensors")
    trained = releases["classifier"].state_dict()
    assert released.keys() == trained.keys() and all(torch.equal(released[name], trained[name]) for name in trained)
    # The generator's base restriction lives in its decoder bias (finite), so the native (widget) path scores the
    # bases only too; the release changes no weight.
    generator = releases["generator"].state_dict()
    released = load_file(releases["folders"]["generator"] / "model.safetensors")
    assert all(torch.equal(released[name], value) for name, value in generator.items())
    non_base = [i for i in range(len(released["decoder.bias"])) if i not in BASE_IDS]
    assert torch.all(released["decoder.bias"][non_base] == NON_BASE_LOGIT_BIAS)


def test_model_card_metadata_body_and_model_index(releases):
    root, results = releases["root"], releases["results"]
    expected_tags = {"encoder": "feature-extraction", "generator": "fill-mask", "classifier": "text-classification"}
    for artefact, folder in releases["folders"].items():
        text = (folder / "README.md").read_text()
        for local in (str(root), "/tmp", str(Path.home()), str(Path.cwd()), "/somewhere/local"):
            assert local not in text, f"{artefact} card leaks {local}"
        if artefact not in expected_tags:
            continue
        card = ModelCard.load(folder / "README.md")
        data = card.data
        assert data.library_name == "transformers" and data.pipeline_tag == expected_tags[artefact]
        assert data.license == "apache-2.0" and {"dna", "genomics", "biology"} <= set(data.tags)
        for heading in (
            "Model details",
            "Tokenizer",
            "Context length",
            "Pooling",
            "Training",
            "How to load",
            "How to fine-tune",
            "How to reproduce",
            "Evaluation",
            "Limits",
            "License",
            "Citation",
        ):
            assert f"## {heading}" in card.text, heading
        for fact in ("[UNK]", "[MASK]", "upper-cased", "1025 tokens", "float32", "arXiv:2508.13191"):
            assert fact in card.text, fact
        widget_texts = [example["text"] for example in data.widget]
        assert all(set(text.replace("[MASK]", "")) <= set("ACGT") for text in widget_texts)

    generator_card = ModelCard.load(releases["folders"]["generator"] / "README.md")
    assert [example["text"].count("[MASK]") for example in generator_card.data.widget] == [1]
    generator_parameters = sum(p.numel() for p in releases["generator"].parameters())
    assert f"{generator_parameters:,} in all" in generator_card.text

    classifier_card = ModelCard.load(releases["folders"]["classifier"] / "README.md")
    assert classifier_card.data.base_model == "nucel-test/nucel-tiny"
    # No finetune.json, so no recorded examples: the 70-bp promoter, with no label claimed.
    assert [example["text"] for example in classifier_card.data.widget] == [PROMOTER]
    assert "label" not in classifier_card.data.widget[0]["example_title"]
    assert "pooling `mean`" in classifier_card.text and "`non-promoter`, `promoter`" in classifier_card.text

    encoder_card = ModelCard.load(releases["folders"]["encoder"] / "README.md")
    assert encoder_card.data.datasets == ["gue"]
    assert encoder_card.data.metrics == ["matthews_correlation"]
    index = {(r.dataset_name, r.metric_type): r for r in encoder_card.data.eval_results}
    assert len(index) == len(results["tasks"])
    for task in results["tasks"]:
        entry = index[(f"{SUITES['gue'][0]} {task['task']}", METRICS[task["metric"]][0])]
        assert (
            entry.metric_value == task["mean"]
            and entry.dataset_split == "test"
            and entry.task_type == "text-classification"
        )
    assert f"`{releases['results']['model_identity']['sha256']}`" in encoder_card.text


def cli(*argv):
    assert nucel_main([*map(str, argv), "--debug"]) == 0  # --debug: an error is raised, not printed


def test_upload_sends_exactly_the_release_folder(releases, tmp_path):
    with (
        mock.patch.object(HfApi, "create_repo") as create_repo,
        mock.patch.object(HfApi, "create_branch") as create_branch,
        mock.patch.object(HfApi, "upload_folder") as upload_folder,
    ):
        cli(
            "release",
            "--model",
            releases["finetuned"],
            "--repo-id",
            "nucel-test/nucel-tiny-promoter",
            "-o",
            tmp_path / "classifier",
            "--label-names",
            *LABELS,
            "--base-model",
            "nucel-test/nucel-tiny",
            "--private",
            "--revision",
            "v1",
            "--commit-message",
            "First release",
        )

    folder = tmp_path / "classifier"
    create_repo.assert_called_once_with(
        "nucel-test/nucel-tiny-promoter", repo_type="model", private=True, exist_ok=True
    )
    create_branch.assert_called_once_with(
        "nucel-test/nucel-tiny-promoter", repo_type="model", branch="v1", exist_ok=True
    )
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
        cli(
            "release",
            "--model",
            releases["root"] / "pretraining",
            "--repo-id",
            "nucel-test/nucel-tiny-generator",
            "--part",
            "generator",
            "-o",
            tmp_path / "generator",
            "--dry-run",
        )
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
        build_release_folder(
            releases["finetuned"],
            "nucel-test/x",
            tmp_path / "d",
            label_names=LABELS,
            facts=CardFacts(hardware=f"the machine that wrote {releases['finetuned']}"),
        )
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
    cli(
        "release",
        "--model",
        tmp_path / "trained",
        "--repo-id",
        "nucel-test/splice-sites",
        "-o",
        tmp_path / "release",
        "--dry-run",
        "--card-facts",
        tmp_path / "facts.yaml",
        "--label-names",
        "none",
        "donor",
        "acceptor",
        "--license",
        "mit",
    )
    card = ModelCard.load(tmp_path / "release" / "README.md")
    assert card.data.pipeline_tag == "token-classification" and card.data.license == "mit"
    assert "plain masked language modelling" in card.text and "| Hardware | 1x H100 |" in card.text
    assert not card.data.eval_results  # no results given: no model-index

    (tmp_path / "typo.yaml").write_text("hardwre: 1x H100\n")
    with pytest.raises(ValueError, match="unknown card fact.*hardwre"):
        CardFacts.from_yaml(tmp_path / "typo.yaml")


# ----------------------------------------------------------------------------------------------------------------
# Cards that cannot lie


def test_results_of_another_model_are_refused(releases, tmp_path):
    discriminator = releases["run"] / "export" / "discriminator"
    tasks = [("tf/0", "mcc", [0.41, 0.44, 0.40])]
    other = random_identity("tiny")  # e.g. the no-pre-training reference benchmarked beside it
    (tmp_path / "random.json").write_text(json.dumps(results_json("gue", tasks, other)))
    with pytest.raises(ReleaseError) as refused:
        build_release_folder(discriminator, "nucel-test/x", tmp_path / "a", results_paths=[tmp_path / "random.json"])
    message = str(refused.value)
    own = folder_identity(discriminator)["sha256"]
    assert other["sha256"][:16] in message and own[:16] in message and "nucel benchmark --model" in message
    assert "\n" not in message and not (tmp_path / "a").exists()

    # Results that record no identity prove nothing about the model.
    anonymous = results_json("gue", tasks, other)
    del anonymous["model_identity"]
    (tmp_path / "anonymous.json").write_text(json.dumps(anonymous))
    with pytest.raises(ReleaseError, match="records no model identity"):
        build_release_folder(discriminator, "nucel-test/x", tmp_path / "b", results_paths=[tmp_path / "anonymous.json"])

    # A fine-tune is not its base: the base's benchmark table is refused for it, and the message says whose it is.
    with pytest.raises(ReleaseError, match="its base model's"):
        build_release_folder(
            releases["root"] / "promoter", "nucel-test/x", tmp_path / "c", results_paths=[releases["results_path"]]
        )

    # The command line reports the refusal in one line, without a traceback, and fails.
    code = nucel_main(
        [
            "release",
            "--model",
            str(discriminator),
            "--repo-id",
            "nucel-test/x",
            "-o",
            str(tmp_path / "d"),
            "--dry-run",
            "--results",
            str(tmp_path / "random.json"),
        ]
    )
    assert code != 0 and not (tmp_path / "d").exists()


def test_results_of_the_published_copy_are_accepted(releases, tmp_path):
    """Benchmarking the Hub repository identifies the release folder's files: the same model, so accepted."""
    published = folder_identity(releases["folders"]["encoder"])
    (tmp_path / "hub.json").write_text(json.dumps(results_json("gue", [("tf/0", "mcc", [0.4, 0.5])], published)))
    folder = build_release_folder(
        releases["folders"]["encoder"],
        "nucel-test/nucel-tiny",
        tmp_path / "again",
        results_paths=[tmp_path / "hub.json"],
    )
    assert ModelCard.load(folder / "README.md").data.eval_results[0].metric_value == pytest.approx(0.45)
    assert folder_identity(folder)["sha256"] == published["sha256"]  # re-releasing changes no byte that identifies it


def test_pretrained_card_states_synthetic_data_steps_recipe_and_figures(releases):
    records = [json.loads(line) for line in (releases["run"] / "log.jsonl").read_text().splitlines()]
    validation = [record for record in records if "validation_loss" in record][-1]
    for artefact in ("encoder", "generator"):
        card = ModelCard.load(releases["folders"][artefact] / "README.md")
        text = card.text
        assert "**SYNTHETIC** genome" in text and "not real DNA" in text and "synthetic-data" in card.data.tags
        assert "pre-trained on a SYNTHETIC genome" in text  # the banner under the title
        for fact in (
            "| Steps | 2 optimizer steps of 4 crops |",
            "up to 512 bases",
            "learning rate 0.002",
            "15% of the bases chosen",
            "temperature 1 from all four bases",
            "generator `tiny-generator`",
            "50 × discriminator",
            "| Seed | 3 |",
            "60,000 bp",
            f"{validation['validation_information_gain_percent']:.2f} % of H(p)",
            f"{validation['validation_auroc']:.4f} (0.5 = chance)",
        ):
            assert fact in text, (artefact, fact)
        # The only rows left unrecorded are those no training output records.
        unrecorded = [line.split("|")[1].strip() for line in text.splitlines() if NOT_RECORDED in line]
        assert unrecorded == [], unrecorded  # hardware and time were given as card facts
        assert "nucel pretrain --config recipe.yaml" in text and "- builtin" in text


def test_pretraining_data_from_a_fasta_is_named_with_its_checksum(tmp_path):
    fasta = tmp_path / "genomes" / "chr2_piece.fa"
    fasta.parent.mkdir()
    fasta.write_text(">chr2\nACGTACGTNNACGT\n")
    files = genome_files({"fasta": [str(fasta), str(tmp_path / "gone.fa")]})
    assert files == [
        {"builtin": False, "name": "chr2_piece.fa", "sha256": file_sha256(fasta)},
        {"builtin": False, "name": "gone.fa", "sha256": None},
    ]
    description = genome_description(files)
    assert f"FASTA `chr2_piece.fa` (sha256 `{file_sha256(fasta)}`)" in description
    assert "SYNTHETIC" not in description and str(tmp_path) not in description and "no checksum" in description


def test_finetune_json_carries_data_checksums_and_test_metrics(releases):
    folder, data = releases["root"] / "promoter", releases["data"]
    metadata = json.loads((folder / "finetune.json").read_text())
    for split, name, rows in (("train", "train.csv", 24), ("validation", "dev.csv", 8), ("test", "test.csv", 8)):
        record = metadata["data"][split]
        assert record["sha256"] == file_sha256(data / name) and record["rows"] == rows
        assert record["label_counts"] == {LABELS[0]: rows // 2, LABELS[1]: rows // 2}
        assert 40 <= record["length_bp"]["min"] <= record["length_bp"]["max"] <= 60
    assert metadata["base_model_identity"] == folder_identity(releases["run"] / "export" / "discriminator")
    assert metadata["base_model_source"] == "local"
    # The recorded test scores are the saved model's, over the whole test split.
    model, tokenizer, _ = load_finetuned(folder)
    test = read_labelled_data(data / "test.csv", FinetuneSettings(label_names=LABELS), ["label"])
    assert metadata["test_metrics"] == pytest.approx(
        compute_metrics(metadata["problem_type"], test.labels, predict_logits(model, tokenizer, test.sequences))
    )
    # Widget examples: one held-out validation sequence per class.
    dev = read_labelled_data(data / "dev.csv", FinetuneSettings(label_names=LABELS), ["label"])
    assert [example["label"] for example in metadata["examples"]] == LABELS
    assert all(example["sequence"] in dev.sequences for example in metadata["examples"])


def test_finetuned_card_carries_its_data_checksums_and_test_scores(releases):
    metadata = json.loads((releases["root"] / "promoter" / "finetune.json").read_text())
    card = ModelCard.load(releases["folders"]["promoter"] / "README.md")
    text = card.text
    for split, name in (("train", "train.csv"), ("validation", "dev.csv"), ("test", "test.csv")):
        assert f"| {split} | {name} | {metadata['data'][split]['rows']} |" in text
        assert f"`{file_sha256(releases['data'] / name)}`" in text
    for metric, label in (("mcc", "MCC"), ("accuracy", "Accuracy"), ("auroc", "AUROC")):
        assert f"| {label} | {metadata['test_metrics'][metric]:.4f} |" in text
    assert (
        "a local checkpoint, not published (sha256 of its weights, config and tokenizer: "
        f"`{metadata['base_model_identity']['sha256']}`)" in text
    )
    assert "Pre-training of the base model" in text and "**SYNTHETIC** genome" in text
    assert "trained on sequences of 40-60 bp" in text and "lowest validation loss" in text
    assert card.data.base_model is None  # a local base has no Hub id to link
    # The widget shows the task's own held-out examples, one per class, of the trained length.
    assert [(w["text"], w["example_title"].split(" ")[0]) for w in card.data.widget] == [
        (example["sequence"], example["label"]) for example in metadata["examples"]
    ]


def test_released_tokenizer_config_has_no_machine_local_flags_or_paths(releases):
    for artefact, folder in releases["folders"].items():
        config = json.loads((folder / "tokenizer_config.json").read_text())
        assert not {"local_files_only", "is_local", "name_or_path", "_name_or_path"} & set(config), artefact
        for key, value in config.items():
            assert not (
                isinstance(value, str) and (value.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", value))
            ), (artefact, key)
        for path in folder.iterdir():
            if path.suffix in (".json", ".md"):
                assert str(releases["root"]) not in path.read_text(), (artefact, path.name)


def test_lora_fine_tune_releases_merged_or_as_an_adapter_on_a_hub_base(releases, tmp_path, tokenizer):
    source = releases["root"] / "promoter-lora"
    peft_model, _, metadata = load_finetuned(source)
    batch = tokenizer(DNA, return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = peft_model(**batch).logits

    # Merged (the default): a self-contained classifier that gives the adapter's outputs.
    merged = NucELForSequenceClassification.from_pretrained(releases["folders"]["promoter-lora"]).eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, expected, atol=1e-5, rtol=0)
    assert "merged into the released weights" in (releases["folders"]["promoter-lora"] / "README.md").read_text()

    # The adapter alone: its base is the Hub id given with the release, never the local training path.
    folder = releases["folders"]["promoter-adapter"]
    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "nucel-test/nucel-tiny"
    assert not Path(adapter_config["base_model_name_or_path"]).is_absolute()
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "peft" and card.data.base_model == "nucel-test/nucel-tiny"
    from peft import PeftModel  # as the card says: the base first, then the adapter

    base = classifier_on(
        metadata["base_model"], LABELS, metadata["problem_type"], metadata["pooling"], metadata["head"]
    )
    reloaded = PeftModel.from_pretrained(base, folder).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, expected, atol=1e-5, rtol=0)

    # Without a Hub id for its local base, an adapter release is refused (nobody could load it).
    with pytest.raises(ReleaseError, match="--base-model"):
        build_release_folder(source, "nucel-test/x", tmp_path / "adapter", lora_adapter=True)
    assert not (tmp_path / "adapter").exists()


def test_a_copied_export_finds_its_run_through_pretraining_run(releases, tmp_path):
    import shutil

    from nucel.core.records import PRETRAINING_RECORD

    # An export carries its own record (pretraining.json) wherever it is copied...
    carried = shutil.copytree(releases["run"] / "export" / "discriminator", tmp_path / "carried")
    assert (
        "**SYNTHETIC** genome"
        in (build_release_folder(carried, "nucel-test/x", tmp_path / "self") / "README.md").read_text()
    )
    # ...and one exported before the record existed finds its run only through --pretraining-run.
    copy = shutil.copytree(releases["run"] / "export" / "discriminator", tmp_path / "copied")
    (copy / PRETRAINING_RECORD).unlink()
    alone = ModelCard.load(build_release_folder(copy, "nucel-test/x", tmp_path / "alone") / "README.md").text
    assert "SYNTHETIC" not in alone and f"| Pre-training data | {NOT_RECORDED} |" in alone  # nothing claimed
    found = build_release_folder(copy, "nucel-test/x", tmp_path / "found", pretraining_run=releases["run"])
    assert "**SYNTHETIC** genome" in (found / "README.md").read_text()
    with pytest.raises(FileNotFoundError, match="not a pre-training run folder"):  # core/records.py: a missing file
        build_release_folder(copy, "nucel-test/x", tmp_path / "wrong", pretraining_run=tmp_path)


def test_probe_scores_of_the_run_reach_the_card(releases, tmp_path):
    import shutil

    from nucel.core.records import read_pretraining_record
    from nucel.model_cards.card_rows import pretraining_figure_rows

    run = tmp_path / "run"
    shutil.copytree(releases["run"] / "checkpoints", run / "checkpoints")
    log = (releases["run"] / "log.jsonl").read_text()
    probes = [{"step": 0, "probe_mcc/promoters": 0.05}, {"step": 2, "probe_mcc/promoters": 0.31}]
    (run / "log.jsonl").write_text(log + "".join(json.dumps(record) + "\n" for record in probes))
    rows = dict(pretraining_figure_rows(read_pretraining_record(run / "export" / "discriminator", run)))
    assert rows["Probe MCC, `promoters`"].startswith("0.3100 at step 2 (step 0: 0.0500)")
