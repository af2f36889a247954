"""Publishing a NucEL checkpoint as a Hugging Face Hub repository.

    nucel release OUTPUT_FOLDER owner/name [--part discriminator|generator] [--dry-run] [--private] ...

`build_release_folder` rebuilds the repository folder from the model itself instead of copying the training
output, so the folder holds exactly `model.safetensors`, `config.json` (model_type "modernbert" plus the complete
auto_map: dual mode, DESIGN.md section 3), the two code files, the tokenizer files and the `README.md` model card.
Optimizer and scheduler state, RNG state, trainer state, logs, caches and tokens that sit in a training output
can therefore never reach the Hub. `upload_release` pushes exactly that folder.
"""

import argparse
import copy
import json
from pathlib import Path

from huggingface_hub import HfApi

from . import modeling_nucel
from .convert import fold_base_restriction, load_nucel_model
from .tokenization import load_tokenizer
from .folders import atomic_folder
from .model_cards.render import METRICS, SUITES, CardFacts, render_model_card
from .modeling_nucel import (
    NucELForPreTraining,
    NucELForSequenceClassification,
    NucELForTokenClassification,
    NucELGenerator,
    NucELModel,
)
from .tokenization import save_tokenizer

ARTEFACTS = {
    NucELModel: "encoder",
    NucELGenerator: "generator",
    NucELForSequenceClassification: "classifier",
    NucELForTokenClassification: "token-classifier",
}
PARTS = ("discriminator", "generator")

REQUIRED_FILES = frozenset(
    {"config.json", "model.safetensors", "configuration_nucel.py", "modeling_nucel.py", "tokenizer.json", "tokenizer_config.json", "README.md"}
)
# The Hub-facing code files (save_pretrained copies the model file and the files it imports relatively); transformers
# 4.x also writes special_tokens_map.json. Nothing else belongs in a release.
CODE_FILES = frozenset(path.name for path in Path(modeling_nucel.__file__).parent.glob("*.py") if path.name != "__init__.py")
RELEASE_FILES = REQUIRED_FILES | CODE_FILES | {"special_tokens_map.json"}


class ReleaseError(ValueError):
    """A training output that cannot be released as asked; the message says what to change."""


def load_release_model(source: str | Path, part: str | None = None):
    """The model to release and its tokenizer.

    `source` is a saved NucEL model folder: an encoder, a generator, a fine-tuned classifier, or a pre-training
    model (`NucELForPreTraining`, generator + discriminator) from which `part` picks one half. A pre-training
    export that keeps the halves in `discriminator/` and `generator/` sub-folders is accepted with `part` too.
    """
    source = Path(source)
    if part is not None and part not in PARTS:
        raise ReleaseError(f"part must be one of {PARTS}, got {part!r}")
    if part and not (source / "config.json").is_file() and (source / part / "config.json").is_file():
        source = source / part
    model = load_nucel_model(source)
    if isinstance(model, NucELForPreTraining):
        if part is None:
            raise ReleaseError(f"{source} holds generator and discriminator together: choose --part {' or --part '.join(PARTS)}")
        if part == "discriminator":
            model = model.model
            # The encoder's config is the pre-training config; the released encoder has no generator.
            model.config = copy.deepcopy(model.config)
            model.config.generator_config = None
        else:
            model = model.generator
    elif part is not None and (part == "generator") != isinstance(model, NucELGenerator):
        raise ReleaseError(f"{source} holds a {type(model).__name__}, not the {part}")
    return model.eval(), load_tokenizer(source)


def set_label_names(model, label_names: list[str]) -> None:
    if len(label_names) != model.config.num_labels:
        raise ReleaseError(f"{len(label_names)} label names given for a model with {model.config.num_labels} labels")
    if len(set(label_names)) != len(label_names):
        raise ReleaseError(f"label names must be distinct, got {label_names}")
    model.config.id2label = dict(enumerate(label_names))
    model.config.label2id = {name: i for i, name in enumerate(label_names)}


def require_label_names(model) -> None:
    """The Hub widget and the pipelines show id2label: a release must not say LABEL_0 / LABEL_1."""
    generic = [f"LABEL_{i}" for i in range(model.config.num_labels)]
    if [model.config.id2label[i] for i in range(model.config.num_labels)] == generic:
        raise ReleaseError(f"the classifier's labels are the placeholders {generic}: give --label-names")


def read_results(path: str | Path) -> dict:
    """A benchmark results.json (notes/RESULTS_SCHEMA.md), checked for what the model card reads."""
    path = Path(path)
    results = json.loads(path.read_text())
    if results.get("suite") not in SUITES:
        raise ReleaseError(f"{path}: suite {results.get('suite')!r} is not one of {sorted(SUITES)}")
    for index, task in enumerate(results.get("tasks", [])):
        missing = [key for key in ("task", "metric", "mean", "sd", "values", "split_sizes") if key not in task]
        if missing:
            raise ReleaseError(f"{path}: tasks[{index}] lacks {missing}")
        if task["metric"] not in METRICS:
            raise ReleaseError(f"{path}: tasks[{index}] ({task['task']}) has metric {task['metric']!r}, not one of {sorted(METRICS)}")
    return results


def check_no_local_paths(text: str, paths: list[Path]) -> None:
    """A model card is public: it must not reveal where the release was built."""
    for path in paths:
        for spelling in {str(path), str(path.resolve())}:
            if len(spelling) > 1 and spelling in text:
                raise ReleaseError(f"the model card would publish the local path {spelling}; remove it from the card facts")


def parameter_counts(model) -> tuple[int, int]:
    encoder = model if isinstance(model, NucELModel) else model.model
    return sum(p.numel() for p in model.parameters()), sum(p.numel() for p in encoder.parameters())


def release_files(folder: str | Path) -> list[str]:
    """The files of a release folder, after checking it holds exactly what a release may hold."""
    folder = Path(folder)
    names = sorted(entry.name for entry in folder.iterdir())
    unexpected = [name for name in names if name not in RELEASE_FILES or not (folder / name).is_file()]
    if unexpected:
        raise ReleaseError(f"{folder} holds {unexpected}, which a release must not contain")
    missing = sorted(REQUIRED_FILES - set(names))
    if missing:
        raise ReleaseError(f"{folder} lacks {missing}")
    return names


def build_release_folder(
    source: str | Path,
    repo_id: str,
    out: str | Path,
    *,
    part: str | None = None,
    facts: CardFacts | None = None,
    results_paths: list[str | Path] = (),
    label_names: list[str] | None = None,
) -> Path:
    """Write the exact Hub repository folder for `source` at `out` (atomically) and return it."""
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ReleaseError(f"repo id must look like owner/name, got {repo_id!r}")
    facts = facts or CardFacts()
    model, tokenizer = load_release_model(source, part)
    artefact = ARTEFACTS[type(model)]
    if artefact in ("classifier", "token-classifier"):
        if label_names:
            set_label_names(model, label_names)
        require_label_names(model)
    if isinstance(model, NucELGenerator):
        fold_base_restriction(model)

    results = [read_results(path) for path in results_paths]
    parameters, encoder_parameters = parameter_counts(model)
    card = render_model_card(
        artefact=artefact,
        repo_id=repo_id,
        config=model.config,
        tokenizer=tokenizer,
        parameters=parameters,
        encoder_parameters=encoder_parameters,
        weights_dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        facts=facts,
        results=results,
    )
    local_paths = [Path(source), Path(out), Path.cwd(), Path.home(), *(Path(path).parent for path in results_paths)]
    check_no_local_paths(card, local_paths)

    with atomic_folder(out) as staging:
        model.save_pretrained(staging)
        save_tokenizer(tokenizer, staging)
        (staging / "README.md").write_text(card, encoding="utf-8")
        release_files(staging)
    return Path(out)


def upload_release(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
):
    """Push a release folder to the Hub, making the repository (at `revision`) hold exactly its files.

    The repository is created if needed (`private` applies then; an existing repository keeps its visibility) and
    `revision` names a branch, created from main if absent. `token=None` uses HF_TOKEN or the saved login.
    Remote files that are not in the folder are deleted in the same commit (.gitattributes is kept).
    """
    folder = Path(folder)
    files = release_files(folder)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    if revision not in (None, "main"):
        api.create_branch(repo_id, repo_type="model", branch=revision, exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=folder,
        revision=revision,
        commit_message=commit_message or f"Release {repo_id.split('/')[-1]}",
        allow_patterns=files,
        delete_patterns="*",
    )


# ----------------------------------------------------------------------------------------------------------------
# Command line


def add_parser(subparsers) -> None:
    """Register `nucel release`."""
    parser = subparsers.add_parser(
        "release",
        help="assemble a Hub repository folder (weights, config, code, tokenizer, model card) and upload it",
        description="Token: HF_TOKEN or `hf auth login`; it is never written into the folder.",
    )
    parser.add_argument("source", type=Path, help="training output: a NucEL model folder (pre-training export or fine-tuned)")
    parser.add_argument("repo_id", help="Hub repository, owner/name")
    parser.add_argument("--part", choices=PARTS, help="for a pre-training model: which half to release")
    parser.add_argument("--out", type=Path, help="where to write the release folder (default: releases/<owner>--<name>)")
    parser.add_argument("--card-facts", type=Path, help="YAML with pretraining_data, hardware, training_time, ... for the card")
    parser.add_argument("--results", type=Path, nargs="+", default=[], help="benchmark results.json file(s) for the model-index")
    parser.add_argument("--label-names", nargs="+", help="classifier label names, in label-id order")
    parser.add_argument("--base-model", help="Hub id of the pre-trained model a fine-tune started from")
    parser.add_argument("--license", help="license id for the card (default apache-2.0)")
    parser.add_argument("--dry-run", action="store_true", help="write the folder, upload nothing")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--revision", help="branch to push to (created if absent; default main)")
    parser.add_argument("--commit-message", help="commit message (default: 'Release <name>')")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    facts = CardFacts.from_yaml(args.card_facts) if args.card_facts else CardFacts()
    if args.base_model:
        facts.base_model = args.base_model
    if args.license:
        facts.license = args.license
    out = args.out or Path("releases") / args.repo_id.replace("/", "--")
    folder = build_release_folder(
        args.source, args.repo_id, out, part=args.part, facts=facts, results_paths=args.results, label_names=args.label_names
    )
    print(f"release folder {folder}: {', '.join(release_files(folder))}")
    if args.dry_run:
        print("dry run: nothing uploaded")
        return
    commit = upload_release(
        folder, args.repo_id, private=args.private, revision=args.revision, commit_message=args.commit_message
    )
    print(f"uploaded to {commit.commit_url}")
