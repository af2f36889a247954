"""Fine-tuning NucEL (or the one-hot CNN baseline) on labelled sequences with the Hugging Face Trainer.

    nucel finetune --model nucel-93m --train train.csv --validation dev.csv --output my-model
    nucel finetune --model ./pretrained --train data.tsv --validation-fraction 0.1 --method lora ...

(the command's options: training/finetune_cli.py)

Tasks: single-label classification (binary or multi-class), multi-label classification (several 0/1 label
columns) and regression (one or more numeric columns). Methods: `full` (everything trained), `lora` (adapters
on Wqkv/Wo/Wi; the new head is trained and saved in full) and `frozen` (a linear probe of what pre-training
learnt: the encoder fixed, one linear layer on the pooled vector trained, hidden × labels + labels parameters).
Heads (`--head`): `linear`, the paper's (arXiv 2508.13191: "a linear layer on the [CLS] output"), or
`modernbert`, ModernBERT's dense -> activation -> norm before that layer. Unset, it is `modernbert` for full and
LoRA fine-tuning and `linear` for `frozen`, which refuses `modernbert` (its dense layer would be trained too, and
the probe would no longer be linear).

The model is evaluated on the validation split every `eval_steps` (or every epoch) and always after the last
step; training stops early when the validation loss stops improving, and the checkpoint with the lowest
validation loss is the one saved. One process trains on one device: with several GPUs, launch with
`accelerate launch`/`torchrun` (one process per GPU; `--batch-size` stays the global batch), never the
Trainer's implicit DataParallel. The saved folder loads with
`AutoModelForSequenceClassification`/`pipeline("text-classification", trust_remote_code=True)`
(LoRA folders: through `core/classifiers.py`'s `load_finetuned`).

`--model random:<preset>` trains a randomly initialised NucEL of that preset: the no-pre-training reference.
"""

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments, set_seed

from nucel.core.classifiers import TRAINING_LENGTHS, classifier_on, predict_logits, training_lengths
from nucel.core.files import atomic_folder
from nucel.core.identity import RANDOM_INIT_PREFIX, model_identity
from nucel.core.metrics import compute_metrics
from nucel.core.models import save_model_folder
from nucel.core.records import FINETUNE_METADATA, RECORD_FORMAT
from nucel.core.tables import Split
from nucel.modeling_nucel import NucELConfig, NucELForSequenceClassification
from nucel.tokenization import build_tokenizer, load_tokenizer, save_tokenizer, token_length
from nucel.training.finetune_config import FinetuneSettings
from nucel.training.finetune_data import check_label_sets

# Our layer names (ModernBERT's): attention in/out projections and the GeGLU input projection ("Wo" also
# matches the MLP output). The pooled head and the classifier are new, so they are trained and saved whole
# (a "linear" head has no layers of its own: the classifier alone).
LORA_TARGET_MODULES = ["Wqkv", "Wo", "Wi"]
LORA_MODULES_TO_SAVE = ["head", "classifier"]


@dataclass
class FinetuneResult:
    output_dir: Path
    best_validation_loss: float
    best_step: int
    steps_trained: int
    train_seconds: float
    validation_history: list[dict] = field(default_factory=list)  # [{"step": s, "loss": l}, ...]
    train_history: list[dict] = field(default_factory=list)  # training loss per logging interval, same layout
    test_metrics: dict | None = None
    test_logits: np.ndarray | None = None


# ----------------------------------------------------------------------------------------------------------------
# Data


class TokenizedSequences(torch.utils.data.Dataset):
    """Token ids and labels of a split, tokenized once."""

    def __init__(self, split: Split, tokenizer, max_length_bp: int | None, problem_type: str):
        self.encodings = tokenizer(
            split.sequences,
            truncation=max_length_bp is not None,
            max_length=None if max_length_bp is None else token_length(max_length_bp),
        )
        label_dtype = torch.long if problem_type == "single_label_classification" else torch.float
        self.labels = torch.tensor(split.labels, dtype=label_dtype)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return {
            "input_ids": self.encodings["input_ids"][index],
            "attention_mask": self.encodings["attention_mask"][index],
            "labels": self.labels[index],
        }


class PaddingCollator:
    """Pads token ids per batch and stacks the labels (which may be vectors: multi-label, several targets)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, features: list[dict]) -> dict:
        tokens = [{"input_ids": f["input_ids"], "attention_mask": f["attention_mask"]} for f in features]
        batch = self.tokenizer.pad(tokens, return_tensors="pt")
        batch["labels"] = torch.stack([f["labels"] for f in features])
        return batch


# ----------------------------------------------------------------------------------------------------------------
# Model


def tokenizer_for(model_name_or_path: str):
    """The checkpoint's own tokenizer; the standard NucEL tokenizer for `random:` models or checkpoints without one."""
    if model_name_or_path.startswith(RANDOM_INIT_PREFIX):
        return build_tokenizer()
    return load_tokenizer(model_name_or_path)


def build_classifier(model_name_or_path: str, settings: FinetuneSettings):
    """A NucEL sequence classifier with a fresh head, set up for `settings.method`."""
    set_seed(settings.seed)  # the new head's initialisation (and a random backbone's) follows the seed
    if model_name_or_path.startswith(RANDOM_INIT_PREFIX):
        if settings.method == "lora":
            raise ValueError(
                "LoRA needs a saved base checkpoint to reload the adapters onto; save the random model first"
            )
        config = NucELConfig.from_preset(
            model_name_or_path[len(RANDOM_INIT_PREFIX) :],
            id2label=dict(enumerate(settings.label_names)),
            label2id={name: i for i, name in enumerate(settings.label_names)},
            problem_type=settings.problem_type,
            classifier_pooling=settings.pooling,
            classifier_head=settings.head,
        )
        model = NucELForSequenceClassification(config)
    else:
        model = classifier_on(
            model_name_or_path, settings.label_names, settings.problem_type, settings.pooling, settings.head
        )
    if settings.method == "frozen":
        # A linear probe: the output layer (hidden × labels weights, labels biases) is all that learns; the
        # settings guarantee the head has no layers of its own.
        model.requires_grad_(False)
        model.classifier.requires_grad_(True)
    elif settings.method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        lora = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=settings.lora_rank,
            lora_alpha=settings.lora_alpha,
            lora_dropout=settings.lora_dropout,
            target_modules=LORA_TARGET_MODULES,
            modules_to_save=LORA_MODULES_TO_SAVE if settings.head == "modernbert" else ["classifier"],
        )
        model = get_peft_model(model, lora)
    if settings.compile:
        (model.get_base_model() if settings.method == "lora" else model).compile_layers()
    return model


# ----------------------------------------------------------------------------------------------------------------
# Training


class OneDeviceArguments(TrainingArguments):
    """TrainingArguments that never ask the Trainer for nn.DataParallel.

    Started as one process on a machine with several GPUs, the Trainer sets `n_gpu` to the GPU count, wraps the
    model in nn.DataParallel and multiplies the batch by that count, so the batch trained on is not the one the
    settings (or a benchmark registry) name. One process here uses one device; several GPUs are used by launching
    with `accelerate launch`/`torchrun` (distributed data parallel, one process per GPU, where `n_gpu` is 1 anyway).
    """

    @property
    def n_gpu(self):
        return min(super().n_gpu, 1)


def training_arguments(settings: FinetuneSettings, output_dir: str, device: str | None = None) -> TrainingArguments:
    """The Trainer's arguments for `settings`: evaluation and checkpoints every `eval_steps` (or epoch), the lowest
    validation loss kept, one device per process (`device`: cpu, or cuda when available) and `settings.batch_size`
    as the global batch."""
    if device not in (None, "cpu", "cuda", "cuda:0"):
        raise ValueError(
            f"--device {device}: fine-tuning trains on the first visible GPU (or the CPU); choose the GPU "
            "with CUDA_VISIBLE_DEVICES and give --device cuda"
        )
    strategy = "steps" if settings.eval_steps else "epoch"
    arguments = OneDeviceArguments(
        output_dir=output_dir,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        warmup_steps=settings.warmup_steps,
        lr_scheduler_type=settings.lr_scheduler,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=settings.eval_steps,
        save_steps=settings.eval_steps,
        save_only_model=True,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_strategy=strategy,
        logging_steps=settings.eval_steps,
        label_names=["labels"],
        remove_unused_columns=False,
        seed=settings.seed,
        data_seed=settings.seed,
        report_to="none",
        disable_tqdm=True,
        use_cpu=device == "cpu" or not torch.cuda.is_available(),
    )
    # Launched on several processes, each takes its share of the batch, so the optimiser still sees batch_size.
    if arguments.world_size > 1:
        if settings.batch_size % arguments.world_size:
            raise ValueError(
                f"batch_size {settings.batch_size} does not split evenly over {arguments.world_size} processes"
            )
        arguments.per_device_train_batch_size = settings.batch_size // arguments.world_size
    return arguments


class EvaluateAtEnd(TrainerCallback):
    """Evaluate, log and checkpoint after the last step, whether or not `eval_steps` divides it. transformers 4.x
    does not: a run shorter than `eval_steps` was never evaluated (nothing to select from), and the steps after
    the last multiple of `eval_steps` were trained but never scored. 5.x does it for step-wise evaluation; asking
    twice for the same step is harmless."""

    def __init__(self):
        self.evaluated_step = None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_log = control.should_evaluate = control.should_save = True
        return control

    def on_evaluate(self, args, state, control, **kwargs):
        self.evaluated_step = state.global_step

    def on_epoch_end(self, args, state, control, **kwargs):
        # With per-epoch evaluation the last epoch ends on the step just evaluated: no second evaluation of it.
        if self.evaluated_step == state.global_step:
            control.should_evaluate = control.should_save = False
        return control


def one_class_loss(train: Split, validation: Split) -> float:
    """The validation cross-entropy (nats) of a predictor that ignores its input and outputs the training label
    frequencies: the plateau a classifier sits on before it has learned anything from the sequences."""
    classes, counts = np.unique(np.asarray(train.labels), return_counts=True)
    prior = dict(zip(classes.tolist(), (counts / counts.sum()).tolist()))
    return float(-np.mean([np.log(prior.get(label, 1e-12)) for label in np.asarray(validation.labels).tolist()]))


# A validation loss this far below the one-class loss has left the plateau (noise on a balanced dev set of a few
# hundred rows is well under 1 %).
PLATEAU_MARGIN = 0.02


class PatienceAfterPlateau(TrainerCallback):
    """Stop when the validation loss has not improved for `patience_steps` steps, counting only from the first
    validation below the plateau (`plateau_loss` × (1 - PLATEAU_MARGIN)): a run that has not left the plateau yet is
    never stopped, however long it has sat there."""

    def __init__(self, patience_steps: int, plateau_loss: float | None):
        self.patience_steps = patience_steps
        self.threshold = None if plateau_loss is None else plateau_loss * (1 - PLATEAU_MARGIN)
        self.left_plateau_step = None if plateau_loss is not None else 0
        self.best_loss, self.best_step = float("inf"), 0

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        loss = (metrics or {}).get("eval_loss")
        if loss is None:
            return control
        if self.left_plateau_step is None and loss < self.threshold:
            self.left_plateau_step = state.global_step
        if loss < self.best_loss:
            self.best_loss, self.best_step = loss, state.global_step
        if self.left_plateau_step is not None and state.global_step - self.best_step >= self.patience_steps:
            control.should_training_stop = True
        return control


def selected_checkpoint(state, history: list[dict]) -> dict:
    """The step and validation loss of the checkpoint the Trainer restored, checked against the evaluations:
    selection that silently kept the last weights, or picked something other than the lowest loss, is an error."""
    if state.best_model_checkpoint is None:
        raise RuntimeError(f"no checkpoint was selected after {state.global_step} steps (evaluations: {history})")
    step = int(Path(state.best_model_checkpoint).name.rsplit("-", 1)[1])
    lowest = min(history, key=lambda entry: entry["loss"])
    if step != lowest["step"] or state.best_metric != lowest["loss"]:
        raise RuntimeError(
            f"the Trainer restored step {step} (validation loss {state.best_metric}), but the lowest "
            f"validation loss was {lowest['loss']} at step {lowest['step']}"
        )
    return {"step": step, "loss": state.best_metric}


def train_with_selection(
    model, tokenizer, train: Split, validation: Split, settings: FinetuneSettings, device: str | None = None
) -> tuple:
    """Train with the Trainer, evaluating on `validation`; returns (the model with its lowest-validation-loss
    weights restored, a summary dict). Works for any module whose forward takes input_ids, attention_mask and
    labels and returns `.loss`/`.logits` (NucEL, PEFT-wrapped NucEL, the CNN baseline)."""
    train_data = TokenizedSequences(train, tokenizer, settings.max_length_bp, settings.problem_type)
    validation_data = TokenizedSequences(validation, tokenizer, settings.max_length_bp, settings.problem_type)
    with tempfile.TemporaryDirectory(prefix="nucel-finetune-checkpoints-") as checkpoints:
        callbacks = [EvaluateAtEnd()]
        if settings.early_stopping_patience:
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=settings.early_stopping_patience))
        if settings.early_stopping_steps:
            classification = settings.problem_type == "single_label_classification"
            plateau = one_class_loss(train, validation) if classification else None
            callbacks.append(PatienceAfterPlateau(settings.early_stopping_steps, plateau))
        trainer = Trainer(
            model=model,
            args=training_arguments(settings, checkpoints, device),
            train_dataset=train_data,
            eval_dataset=validation_data,
            data_collator=PaddingCollator(tokenizer),
            callbacks=callbacks,
        )
        started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - started
        history = [
            {"step": log["step"], "loss": log["eval_loss"]} for log in trainer.state.log_history if "eval_loss" in log
        ]
        train_history = [
            {"step": log["step"], "loss": log["loss"]} for log in trainer.state.log_history if "loss" in log
        ]
        best = selected_checkpoint(trainer.state, history)
        summary = {
            "best_validation_loss": best["loss"],
            "best_step": best["step"],
            "steps_trained": trainer.state.global_step,
            "train_seconds": train_seconds,
            "validation_history": history,
            "train_history": train_history,
        }
    return trainer.model.eval(), summary


def save_finetuned(model, tokenizer, output_dir: str | Path, metadata: dict) -> Path:
    """Full/frozen: the whole model folder (loads through the Auto classes). LoRA: only adapters and heads."""
    output_dir = Path(output_dir)
    if hasattr(model, "peft_config"):
        with atomic_folder(output_dir) as staging:
            model.save_pretrained(staging)
            # PEFT writes a placeholder card whose base_model is the base's local path: this folder is described by
            # finetune.json, and `nucel release` writes its card.
            (staging / "README.md").unlink(missing_ok=True)
            save_tokenizer(tokenizer, staging)
            (staging / FINETUNE_METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    else:
        save_model_folder(model, output_dir, tokenizer, records={FINETUNE_METADATA: metadata})
    return output_dir


def finetune(
    model_name_or_path: str,
    train: Split,
    validation: Split,
    output_dir: str | Path,
    settings: FinetuneSettings,
    test: Split | None = None,
    device: str | None = None,
) -> FinetuneResult:
    """Fine-tune, keep the checkpoint with the lowest validation loss, save it to `output_dir`, and evaluate
    it on `test` (metrics over the whole split) when given. The splits' labels are checked as one set first."""
    check_label_sets(train, {"validation": validation, **({"test": test} if test is not None else {})}, settings)
    tokenizer = tokenizer_for(model_name_or_path)
    # Identified before training, so that a base that cannot be checksummed fails before hours of work.
    base_identity = model_identity(model_name_or_path)
    model = build_classifier(model_name_or_path, settings)
    model, summary = train_with_selection(model, tokenizer, train, validation, settings, device)
    result = FinetuneResult(output_dir=Path(output_dir), **summary)
    if test is not None:  # scored before saving, so that the saved folder carries its own test scores
        result.test_logits = predict_logits(
            model, tokenizer, test.sequences, settings.batch_size, settings.max_length_bp
        )
        result.test_metrics = compute_metrics(settings.problem_type, test.labels, result.test_logits)
    metadata = {
        "format": RECORD_FORMAT,
        "base_model": model_name_or_path,
        "base_model_identity": base_identity,
        "base_model_source": base_model_source(model_name_or_path),
        **asdict(settings),
        "data": {
            name: split_provenance(split, settings)
            for name, split in (("train", train), ("validation", validation), ("test", test))
            if split is not None
        },
        "examples": held_out_examples(validation, settings),
        **{key: value for key, value in summary.items() if key != "train_seconds"},
        **({"test_metrics": result.test_metrics} if test is not None else {}),
    }
    # The length range it was trained on, for `nucel predict` to window longer inputs: in config.json too (a LoRA
    # folder has none: finetune.json only), so that a release keeps it.
    metadata[TRAINING_LENGTHS] = training_lengths(train.sequences, settings.max_length_bp)
    setattr(model.config, TRAINING_LENGTHS, metadata[TRAINING_LENGTHS])
    save_finetuned(model, tokenizer, output_dir, metadata)
    return result


def base_model_source(model_name_or_path: str) -> str:
    """ "random", "local" or "hub": whether `base_model` is a Hub id others can load, a folder on this machine only,
    or no checkpoint at all."""
    if model_name_or_path.startswith(RANDOM_INIT_PREFIX):
        return "random"
    return "local" if Path(model_name_or_path).is_dir() else "hub"


def split_provenance(split: Split, settings: FinetuneSettings) -> dict:
    """Where a split came from, its checksum, size, sequence lengths and (classification) rows per label."""
    lengths = [len(sequence) for sequence in split.sequences]
    record = {
        "source": split.source,
        "rows": len(split),
        "sha256": split.sha256,
        "length_bp": {"min": min(lengths), "max": max(lengths)},
    }
    if settings.problem_type == "single_label_classification":
        counts = np.bincount(np.asarray(split.labels, dtype=np.int64), minlength=len(settings.label_names))
        record["label_counts"] = {name: int(count) for name, count in zip(settings.label_names, counts)}
    return record


def held_out_examples(validation: Split, settings: FinetuneSettings) -> list[dict]:
    """One validation sequence per class (or the first two rows for other tasks), for a released model's widget:
    inputs of the task and length the model was trained on, never test rows."""
    if settings.problem_type != "single_label_classification":
        return [
            {"sequence": sequence, "label": label}
            for sequence, label in zip(validation.sequences[:2], validation.labels[:2])
        ]
    first = {}
    for sequence, label in zip(validation.sequences, validation.labels):
        first.setdefault(label, sequence)
    return [{"sequence": first[label], "label": settings.label_names[label]} for label in sorted(first)]
