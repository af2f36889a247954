"""Publishing a NucEL checkpoint as a Hugging Face Hub repository.

    nucel release OUTPUT_FOLDER owner/name [--part discriminator|generator] [--dry-run] [--private] ...

`build_release_folder` rebuilds the repository folder from the model itself instead of copying the training
output, so the folder holds exactly `model.safetensors`, `config.json` (model_type "modernbert" plus the complete
auto_map: dual mode, docs/design.md "Decision: dual-mode folders"), the code files, the tokenizer files and the
`README.md` model card. Optimizer and scheduler state, RNG state, trainer state, logs, caches and tokens that sit in a
training output can therefore never reach the Hub. `upload_release` pushes exactly that folder.

The card states only what the training outputs record, so it cannot claim what did not happen:
- a pre-trained model's data, steps, recipe and validation figures come from its pre-training run (the
  `log.jsonl` and checkpoint configuration of `<run>/`, found above `<run>/export/<part>` or given as
  `--pretraining-run`);
- a fine-tuned model's data files, checksums, split sizes and test scores come from its `finetune.json`;
- `--results` (a `nucel benchmark` results.json) is accepted only when the model identity it records (sha256 of
  weights, config and tokenizer: core/identity.py) is the identity of the folder being released.
A LoRA fine-tune is released merged into its base (a self-contained classifier), or with `--lora-adapter` as the
adapter alone, whose `base_model_name_or_path` is then the base model's Hub id, never a local path. An adapter has
no config.json, so the release carries a `finetune.json` reduced to what rebuilding its classifier needs (the base's
Hub id, label names, problem type, pooling, head, training lengths) and the LoRA settings: `nucel predict` loads the
release from it, and the file tells a PEFT user which classifier to build before loading the adapter.
"""

import argparse
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi

from nucel.convert import fold_base_restriction, load_nucel_model
from nucel.core.classifiers import ADAPTER_CONFIG, load_finetuned
from nucel.core.files import atomic_folder, write_json_atomically
from nucel.core.identity import folder_identity
from nucel.core.models import is_repository_id
from nucel.core.options import check_output
from nucel.core.records import FINETUNE_METADATA, PRETRAINING_RECORD, read_pretraining_record, read_record
from nucel.model_cards.render import CardFacts, render_model_card
from nucel.modeling_nucel import (
    NucELForPreTraining,
    NucELForSequenceClassification,
    NucELForTokenClassification,
    NucELGenerator,
    NucELModel,
)
from nucel.release_files import (
    ReleaseError,
    check_no_local_paths,
    check_release_texts,
    check_results_belong,
    clean_tokenizer_config,
    parameter_counts,
    read_results,
    release_files,
    write_adapter_config,
    write_adapter_finetune_metadata,
)
from nucel.tokenization import load_tokenizer, save_tokenizer

ARTEFACTS = {
    NucELModel: "encoder",
    NucELGenerator: "generator",
    NucELForSequenceClassification: "classifier",
    NucELForTokenClassification: "token-classifier",
}
PARTS = ("discriminator", "generator")


@dataclass
class ReleaseSource:
    """What is released, and what the training outputs recorded about it."""

    folder: Path  # the model folder the weights come from
    model: object  # NucEL model in eval mode, or a PeftModel for an adapter release
    tokenizer: object
    finetune: dict | None = None  # finetune.json of a fine-tuned folder


def model_folder(source: str | Path, part: str | None) -> Path:
    """`source`, or its `part` sub-folder for a pre-training export that keeps discriminator/ and generator/."""
    source = Path(source)
    if part is not None and part not in PARTS:
        raise ReleaseError(f"part must be one of {PARTS}, got {part!r}")
    if part and not (source / "config.json").is_file() and (source / part / "config.json").is_file():
        return source / part
    return source


def load_release_model(source: str | Path, part: str | None = None, lora_adapter: bool = False) -> ReleaseSource:
    """The model to release, its tokenizer and its fine-tuning record.

    `source` is a saved NucEL model folder: an encoder, a generator, a fine-tuned classifier (full, frozen or LoRA),
    or a pre-training model (`NucELForPreTraining`, generator + discriminator) from which `part` picks one half. A
    pre-training export that keeps the halves in `discriminator/` and `generator/` sub-folders is accepted with
    `part` too. LoRA folders are merged into their base unless `lora_adapter`.
    """
    folder = model_folder(source, part)
    finetune = read_finetune_metadata(folder)
    if (folder / ADAPTER_CONFIG).is_file():
        if part is not None:
            raise ReleaseError(f"{folder} is a LoRA fine-tune, not a pre-training model: leave out --part")
        if finetune is None:
            raise ReleaseError(
                f"{folder} holds a LoRA adapter without {FINETUNE_METADATA}: not written by nucel finetune"
            )
        if (
            not lora_adapter
            and not Path(finetune["base_model"]).is_dir()
            and not is_repository_id(finetune["base_model"])
        ):
            raise ReleaseError(
                f"{folder}: its base model {finetune['base_model']} is gone; the adapter cannot be merged into it"
            )
        peft_model, tokenizer, _ = load_finetuned(folder)
        model = peft_model if lora_adapter else peft_model.merge_and_unload()
        return ReleaseSource(folder, model.eval(), tokenizer, finetune)
    if lora_adapter:
        raise ReleaseError(f"{folder} is not a LoRA fine-tune (no {ADAPTER_CONFIG}): leave out --lora-adapter")
    model = load_nucel_model(folder)
    if isinstance(model, NucELForPreTraining):
        if part is None:
            raise ReleaseError(
                f"{folder} holds generator and discriminator together: choose --part {' or --part '.join(PARTS)}"
            )
        # As pre-training exports them: shared embeddings folded into each table, no pre-training settings.
        model = model.discriminator_for_export() if part == "discriminator" else model.generator_for_export()
    elif part is not None and (part == "generator") != isinstance(model, NucELGenerator):
        raise ReleaseError(f"{folder} holds a {type(model).__name__}, not the {part}")
    return ReleaseSource(folder, model.eval(), load_tokenizer(folder), finetune)


def read_finetune_metadata(folder: Path) -> dict | None:
    path = folder / FINETUNE_METADATA
    return read_record(path) if path.is_file() else None


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


def base_model_of(finetune: dict | None, facts: CardFacts) -> str | None:
    """The Hub id of a fine-tune's base: the one given with the release, else the one it was trained from if that
    was a Hub id (a local folder or a random initialisation has none)."""
    if facts.base_model:
        return facts.base_model
    if (
        finetune
        and finetune.get("base_model_source", "hub") == "hub"
        and is_repository_id(finetune["base_model"])
        and not Path(finetune["base_model"]).exists()
    ):
        return finetune["base_model"]
    return None


def build_release_folder(
    source: str | Path,
    repo_id: str,
    out: str | Path,
    *,
    part: str | None = None,
    facts: CardFacts | None = None,
    results_paths: list[str | Path] = (),
    label_names: list[str] | None = None,
    pretraining_run: str | Path | None = None,
    lora_adapter: bool = False,
) -> Path:
    """Write the exact Hub repository folder for `source` at `out` (atomically) and return it."""
    if not is_repository_id(repo_id):
        raise ReleaseError(f"repo id must look like owner/name, got {repo_id!r}")
    facts = facts or CardFacts()
    released = load_release_model(source, part, lora_adapter)
    model = released.model
    artefact = "adapter" if lora_adapter else ARTEFACTS[type(model)]
    if artefact in ("classifier", "token-classifier", "adapter"):
        labelled = model.get_base_model() if lora_adapter else model
        if label_names:
            set_label_names(labelled, label_names)
        require_label_names(labelled)
    if isinstance(model, NucELGenerator):
        fold_base_restriction(model)
    base_model = base_model_of(released.finetune, facts)
    if lora_adapter and base_model is None:
        raise ReleaseError(
            f"a LoRA adapter loads onto its base model, and {released.folder} was trained on a local one: give the "
            "base's Hub id (--base-model owner/name), or release the merged model (leave out --lora-adapter)"
        )

    # The pre-training record: the released model's own, or for a fine-tune, its base checkpoint's.
    if pretraining_run is not None or released.finetune is None:
        pretraining = read_pretraining_record(released.folder, pretraining_run)
    else:
        base_folder = Path(released.finetune["base_model"])
        pretraining = read_pretraining_record(base_folder) if base_folder.is_dir() else None
    if facts.objective and pretraining and pretraining["objective"] and pretraining["objective"] != facts.objective:
        raise ReleaseError(
            f"the card facts say objective {facts.objective!r}, but the model was pre-trained with "
            f"{pretraining['objective']!r}"
        )

    results = [read_results(path) for path in results_paths]
    parameters, encoder_parameters = parameter_counts(model)
    local_paths = [Path(source), Path(out), Path.cwd(), Path.home(), *(Path(path).parent for path in results_paths)]
    if pretraining_run is not None:
        local_paths.append(Path(pretraining_run))
    if released.finetune and Path(released.finetune["base_model"]).is_absolute():
        local_paths.append(Path(released.finetune["base_model"]))

    with atomic_folder(out) as staging:
        model.save_pretrained(staging)
        save_tokenizer(released.tokenizer, staging)
        clean_tokenizer_config(staging)
        if lora_adapter:
            write_adapter_config(staging, base_model)
            labels = model.get_base_model().config.id2label
            write_adapter_finetune_metadata(
                staging, released.finetune, base_model, [labels[i] for i in range(len(labels))]
            )
        if results:
            # The source folder (what `nucel benchmark --model SOURCE` identifies) and the release folder (what a
            # benchmark of the published Hub repository identifies) are the released model's identities.
            identities = [folder_identity(released.folder)["sha256"], folder_identity(staging)["sha256"]]
            base_identity = ((released.finetune or {}).get("base_model_identity") or {}).get("sha256")
            for path, result in zip(results_paths, results):
                check_results_belong(result, Path(path), released.folder, identities, base_identity)
        card = render_model_card(
            artefact=artefact,
            repo_id=repo_id,
            config=(model.get_base_model() if lora_adapter else model).config,
            tokenizer=released.tokenizer,
            parameters=parameters,
            encoder_parameters=encoder_parameters,
            weights_dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
            facts=facts,
            results=results,
            pretraining=pretraining,
            finetune=released.finetune,
            base_model=base_model,
        )
        if pretraining is not None and released.finetune is None:
            write_json_atomically(staging / PRETRAINING_RECORD, pretraining)
        check_no_local_paths(card, local_paths)
        (staging / "README.md").write_text(card, encoding="utf-8")
        check_release_texts(staging, local_paths)
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


def run(args: argparse.Namespace) -> None:
    facts = CardFacts.from_yaml(args.card_facts) if args.card_facts else CardFacts()
    if args.base_model:
        facts.base_model = args.base_model
    if args.license:
        facts.license = args.license
    out = args.output or Path("releases") / args.repo_id.replace("/", "--")
    check_output(out, "folder", args.overwrite)  # the default folder too (the command line checks a given one)
    folder = build_release_folder(
        args.model,
        args.repo_id,
        out,
        part=args.part,
        facts=facts,
        results_paths=args.results,
        label_names=args.label_names,
        pretraining_run=args.pretraining_run,
        lora_adapter=args.lora_adapter,
    )
    print(f"release folder {folder}: {', '.join(release_files(folder))}")
    if args.dry_run:
        print("dry run: nothing uploaded")
        return
    commit = upload_release(
        folder, args.repo_id, private=args.private, revision=args.revision, commit_message=args.commit_message
    )
    print(f"uploaded to {commit.commit_url}")
