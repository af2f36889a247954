"""Fine-tuned classifiers: the records a fine-tune writes beside its weights, loading any NucEL classifier
(full, frozen, LoRA, released, Hub id), and its raw outputs.
"""

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nucel.core.models import default_device, load_checked, quiet_loading, resolve_model_folder
from nucel.core.records import FINETUNE_METADATA, read_record
from nucel.modeling_nucel import NucELConfig, NucELForSequenceClassification
from nucel.tokenization import load_tokenizer, token_length

ADAPTER_CONFIG = "adapter_config.json"
# The length range of the training split, in config.json (so that it survives `nucel release`) and finetune.json.
TRAINING_LENGTHS = "nucel_training_lengths"


def training_lengths(sequences: list[str], max_length_bp: int | None = None) -> dict:
    """Shortest, longest and median length (bp) of the training sequences as the model saw them: cut to
    `max_length_bp` when training truncated them."""
    lengths = [min(len(s), max_length_bp) if max_length_bp else len(s) for s in sequences]
    return {"min_bp": min(lengths), "max_bp": max(lengths), "median_bp": statistics.median(lengths)}


def classifier_on(base_model: str, label_names: list[str], problem_type: str, pooling: str, head: str):
    """A NucELForSequenceClassification with `base_model`'s encoder and a new head (`head`: "modernbert" or
    "linear", recorded in the config so that a saved model rebuilds the same layout)."""
    config = NucELConfig.from_pretrained(
        base_model,
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        problem_type=problem_type,
        classifier_pooling=pooling,
        classifier_head=head,
    )
    return NucELForSequenceClassification.from_pretrained(base_model, config=config, ignore_mismatched_sizes=True)


def recorded_lengths(metadata: dict) -> dict | None:
    """The training length range of a finetune.json; folders written before it was recorded have the training
    split's min and max in its provenance (cut to `max_length_bp` here, as training cut the sequences)."""
    if TRAINING_LENGTHS in metadata:
        return metadata[TRAINING_LENGTHS]
    seen = metadata.get("data", {}).get("train", {}).get("length_bp")
    if not seen:
        return None
    cap = metadata.get("max_length_bp") or seen["max"]
    return {"min_bp": min(seen["min"], cap), "max_bp": min(seen["max"], cap), "median_bp": None}


def adapter_base(model_dir: Path, metadata: dict) -> Path:
    """The folder of the base model a LoRA adapter was trained on: the local folder its finetune.json names, or its
    Hub id's snapshot (downloaded, or from the local cache with HF_HUB_OFFLINE=1), as for any model."""
    base = metadata["base_model"]
    try:
        return resolve_model_folder(base)
    except FileNotFoundError as error:
        # An adapter release (`nucel release --lora-adapter`) always names a Hub id; a fine-tune folder may name the
        # local folder it was trained from.
        advice = (
            f"download it with `hf download {base}` (with the Hub reachable), then run again"
            if metadata.get("base_model_source", "hub") == "hub"
            else "it was a local folder where the adapter was trained: put it back there, then run again"
        )
        raise FileNotFoundError(
            f"{model_dir}: cannot load the base model of this LoRA adapter, {error}; {advice}"
        ) from None


def load_finetuned(model_dir: str | Path):
    """(model in eval mode, tokenizer, metadata) from a fine-tuned folder, full or LoRA, or an adapter release
    (whose finetune.json records the base model's Hub id and the classifier to rebuild on it)."""
    model_dir = Path(model_dir)
    metadata_path = model_dir / FINETUNE_METADATA
    if not metadata_path.is_file():
        raise FileNotFoundError(f"{metadata_path}: not a fine-tuned NucEL folder (written by training/finetune.py)")
    metadata = read_record(metadata_path)
    tokenizer = load_tokenizer(model_dir)
    with quiet_loading():
        if (model_dir / ADAPTER_CONFIG).is_file():
            from peft import PeftModel

            # Folders written before the head was a setting have no "head": theirs was ModernBERT's.
            base = classifier_on(
                str(adapter_base(model_dir, metadata)),
                metadata["label_names"],
                metadata["problem_type"],
                metadata["pooling"],
                metadata.get("head", "modernbert"),
            )
            # An adapter folder has no config.json of its own: the record goes on the rebuilt config, so that a
            # merged release (`nucel release`) writes it into its config.json.
            if (lengths := recorded_lengths(metadata)) is not None:
                setattr(base.config, TRAINING_LENGTHS, lengths)
            model = PeftModel.from_pretrained(base, model_dir)
        else:
            model = NucELForSequenceClassification.from_pretrained(model_dir)
    return model.eval(), tokenizer, metadata


def folder_training_lengths(folder: Path) -> dict | None:
    """The training length range a classifier folder records (finetune.json, else config.json)."""
    if (folder / FINETUNE_METADATA).is_file():
        return recorded_lengths(read_record(folder / FINETUNE_METADATA))
    if (folder / "config.json").is_file():
        return json.loads((folder / "config.json").read_text()).get(TRAINING_LENGTHS)
    return None


@dataclass
class Classifier:
    model: torch.nn.Module  # in eval mode
    tokenizer: object
    label_names: list[str]
    problem_type: str
    training_lengths: dict | None  # {"min_bp", "max_bp", "median_bp"}, None when the model does not record it
    name: str  # as the user gave it


def load_classifier(name_or_path: str | Path, device: str | None = None) -> Classifier:
    """Any NucEL classifier (see the module docstring), in eval mode on `device`. An adapter release (`nucel release
    --lora-adapter`: the adapter and a finetune.json) is rebuilt on its base model like a LoRA fine-tune folder."""
    folder = resolve_model_folder(name_or_path)
    if (folder / FINETUNE_METADATA).is_file():
        model, tokenizer, metadata = load_finetuned(folder)
        return Classifier(
            model.to(default_device(device)),
            tokenizer,
            metadata["label_names"],
            metadata["problem_type"],
            recorded_lengths(metadata),
            str(name_or_path),
        )
    if (folder / ADAPTER_CONFIG).is_file():
        # Adapter releases written before `nucel release` recorded the classifier beside the adapter.
        raise FileNotFoundError(
            f"{name_or_path}: a LoRA adapter without {FINETUNE_METADATA} (its base model, labels and head); "
            "release it again with the current `nucel release --lora-adapter`, or release the merged model"
        )
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{name_or_path}: no config.json here; not a model folder")
    model = load_checked(NucELForSequenceClassification, folder, device)
    config = model.config
    label_names = [str(config.id2label[i]) for i in range(config.num_labels)]
    # transformers' own rule when problem_type is unset: one output is a regression, several are classes.
    problem_type = config.problem_type or ("regression" if config.num_labels == 1 else "single_label_classification")
    return Classifier(
        model, load_tokenizer(folder), label_names, problem_type, folder_training_lengths(folder), str(name_or_path)
    )


@torch.inference_mode()
def predict_logits(
    model, tokenizer, sequences: list[str], batch_size: int = 32, max_length_bp: int | None = None
) -> np.ndarray:
    """Raw outputs (n, num_labels) for `sequences`, in order; longer sequences are cut to `max_length_bp`."""
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    for start in range(0, len(sequences), batch_size):
        batch = tokenizer(
            sequences[start : start + batch_size],
            padding=True,
            truncation=max_length_bp is not None,
            max_length=None if max_length_bp is None else token_length(max_length_bp),
            return_tensors="pt",
        ).to(device)
        outputs.append(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float().cpu())
    return torch.cat(outputs).numpy()
