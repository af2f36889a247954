"""Predictions from a NucEL sequence classifier: sequences in (CSV/TSV/FASTA), labels and probabilities out.

    nucel predict --model MODEL sequences.fa -o predictions.tsv
    nucel predict --model user/nucel-promoters genome.fa.gz -o windows.csv --stride 10 --aggregate max
    nucel predict --model MODEL sequences.csv -o predictions.csv --batch-size 64

MODEL is any NucEL classifier: a folder written by `nucel finetune` (full, frozen, or LoRA adapters, which are put
back on their base model), a released folder (`nucel release`; labels from config.json's `id2label`, tokenizer from
the folder or this package's; an adapter-only release is rebuilt on its base model's Hub id from its finetune.json),
or a Hub id (downloaded, or taken from the local cache with HF_HUB_OFFLINE=1).

Input length: a classifier is known to work on inputs as long as those it was trained on, no longer. `nucel finetune`
records that range (`nucel_training_lengths` in config.json and finetune.json: min, max and median bp of the training
split, as the model saw it). An input longer than the longest training sequence is, with `--long-inputs window` (the
default), cut into windows of exactly that length (`--window` to choose another) that start `--stride` bases apart
(default: half a window), the last one ending at the input's end; the prediction comes from the windows' class
probabilities (regression: values) averaged per class (`--aggregate mean`, the default) or their maximum per class
(`--aggregate max`: "is it anywhere in this sequence?"). With `--long-inputs refuse`, a longer input is an error
raised before anything is predicted. The `windows` column says how many windows each prediction used (1: the input
whole). A classifier without a record is windowed at 1024 bp (the pre-training length), and the command says so.

Inputs are streamed (read lazily, batched by length, written as they are predicted), so a genome is fine; the
output file appears only when complete.
"""

import argparse
import csv
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from nucel.core.classifiers import Classifier, load_classifier
from nucel.core.embeddings import READ_AHEAD_BATCHES
from nucel.core.errors import interruption_reported
from nucel.core.files import atomic_file
from nucel.core.metrics import sigmoid, softmax
from nucel.core.sequences import SequenceRecord, clean_sequence, iter_sequences, scan_sequences, with_unique_ids
from nucel.core.windows import DEFAULT_WINDOW, base_token_ids, batches_by_length, pad_batch, window_count, window_plan
from nucel.tokenization import with_special_tokens

LONG_INPUTS = ("window", "refuse")
AGGREGATIONS = ("mean", "max")


def scores_from_logits(logits: np.ndarray, problem_type: str) -> np.ndarray:
    """Class probabilities (softmax; multi-label: sigmoid per label), or the values of a regression."""
    if problem_type == "regression":
        return logits
    return sigmoid(logits) if problem_type == "multi_label_classification" else softmax(logits)


def prediction_columns(problem_type: str, label_names: list[str]) -> list[str]:
    if problem_type == "regression":
        return list(label_names)
    return ["prediction"] + [f"probability_{name}" for name in label_names]


def prediction_row(scores: np.ndarray, problem_type: str, label_names: list[str]) -> list:
    """The predicted label and one score per label (regression: the predicted values), as `prediction_columns`."""
    if problem_type == "regression":
        return scores.tolist()
    if problem_type == "multi_label_classification":
        label = ";".join(name for name, p in zip(label_names, scores) if p >= 0.5)
    else:
        label = label_names[int(scores.argmax())]
    return [label, *scores.tolist()]


# ----------------------------------------------------------------------------------------------------------------
# Length-aware, streamed prediction


@dataclass(frozen=True)
class LengthPolicy:
    """How inputs are cut to the length a classifier knows (see the module docstring)."""

    window: int  # the longest input the model sees, in bp
    stride: int  # bases between the starts of consecutive windows
    long_inputs: str = "window"  # or "refuse"
    aggregate: str = "mean"  # or "max"
    trained: dict | None = None  # the classifier's training lengths, when it records them
    chosen: bool = False  # `window` was chosen by the user

    def __post_init__(self):
        if self.long_inputs not in LONG_INPUTS:
            raise ValueError(f"--long-inputs must be one of {LONG_INPUTS}, got {self.long_inputs!r}")
        if self.aggregate not in AGGREGATIONS:
            raise ValueError(f"--aggregate must be one of {AGGREGATIONS}, got {self.aggregate!r}")
        if self.window < 1 or not 1 <= self.stride <= self.window:
            raise ValueError(
                f"need --window >= 1 and 1 <= --stride <= --window, got window {self.window}, stride {self.stride}"
            )

    @classmethod
    def for_lengths(
        cls,
        trained: dict | None,
        long_inputs: str = "window",
        aggregate: str = "mean",
        window: int | None = None,
        stride: int | None = None,
    ) -> "LengthPolicy":
        """The window is the longest training sequence (`trained`, a classifier's record) unless `window` is given."""
        length = window or (trained["max_bp"] if trained else DEFAULT_WINDOW)
        return cls(length, stride or max(1, length // 2), long_inputs, aggregate, trained, window is not None)

    def describe(self) -> str:
        how = "mean" if self.aggregate == "mean" else "maximum"
        return f"{self.window:,}-bp windows {self.stride:,} bp apart, {how} of their scores"

    def refusal(self, source: str, length: int, model_name: str) -> str:
        known = (
            f"trained on {self.trained['min_bp']:,}-{self.trained['max_bp']:,} bp sequences"
            if self.trained
            else f"without a record of its training lengths (assumed at most {self.window:,} bp)"
        )
        limit = (
            f"the {self.window:,}-bp --window"
            if self.chosen
            else f"the {self.window:,} bp classifier {model_name} knows"
        )
        return (
            f"{source}: {length:,} bp is longer than {limit} ({known}); "
            f"--long-inputs window predicts from {self.describe()}, or cut the input yourself"
        )


@dataclass(frozen=True)
class Prediction:
    record: SequenceRecord
    scores: np.ndarray  # (num_labels,): probabilities (regression: values), aggregated over the windows
    windows: int  # how many windows the prediction used; 1: the input whole


class _RecordPrediction:
    def __init__(self, record: SequenceRecord, windows: int, aggregate: str):
        self.record, self.windows, self.windows_left, self.aggregate = record, windows, windows, aggregate
        self.total = None

    def add(self, scores: np.ndarray) -> None:
        if self.total is None:
            self.total = scores.astype(np.float64)
        else:
            self.total = np.maximum(self.total, scores) if self.aggregate == "max" else self.total + scores
        self.windows_left -= 1

    def result(self) -> Prediction:
        return Prediction(
            self.record, self.total / self.windows if self.aggregate == "mean" else self.total, self.windows
        )


@torch.inference_mode()
def prediction_stream(
    classifier: Classifier,
    records: Iterable[SequenceRecord],
    policy: LengthPolicy,
    batch_size: int = 32,
    progress: bool = True,
    total_bases: int | None = None,
) -> Iterator[Prediction]:
    """Predictions for `records` (read lazily), in input order, each from its windows (see `LengthPolicy`)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size} (--batch-size)")
    model, device = classifier.model, next(classifier.model.parameters()).device
    unfinished = deque()

    def windows() -> Iterator[tuple[_RecordPrediction, list[int], int]]:
        for record in records:
            sequence = clean_sequence(record.sequence, record.source)
            if len(sequence) > policy.window and policy.long_inputs == "refuse":
                raise ValueError(policy.refusal(record.source, len(sequence), classifier.name))
            overlap = policy.window - policy.stride
            state = _RecordPrediction(record, window_count(len(sequence), policy.window, overlap), policy.aggregate)
            unfinished.append(state)
            for start, end, keep_start, keep_end in window_plan(len(sequence), policy.window, overlap):
                yield (
                    state,
                    with_special_tokens(base_token_ids(classifier.tokenizer, sequence[start:end], record.source)),
                    keep_end - keep_start,
                )

    pad_id = model.config.pad_token_id
    with tqdm(total=total_bases, desc="predicting", unit="bp", unit_scale=True, disable=not progress) as bar:
        for batch in batches_by_length(
            windows(), batch_size, lambda item: len(item[1]), batch_size * READ_AHEAD_BATCHES
        ):
            input_ids, attention_mask = pad_batch([ids for _, ids, _ in batch], pad_id)
            logits = (
                model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device))
                .logits.float()
                .cpu()
                .numpy()
            )
            for (state, _, bases), scores in zip(batch, scores_from_logits(logits, classifier.problem_type)):
                state.add(scores)
                bar.update(bases)
            while unfinished and not unfinished[0].windows_left:
                yield unfinished.popleft().result()


def predict_file(
    model: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    batch_size: int = 32,
    sequence_column: str | None = None,
    id_column: str | None = None,
    long_inputs: str = "window",
    aggregate: str = "mean",
    window: int | None = None,
    stride: int | None = None,
    device: str | None = None,
    progress: bool = True,
) -> Path:
    """Predict every sequence of a FASTA/CSV/TSV file; write a CSV (or TSV for a .tsv/.txt output) with the
    record id, the prediction, the probabilities (regression: the predicted values) and the windows used."""
    output_path = Path(output_path)
    if output_path.is_dir():
        raise IsADirectoryError(f"{output_path} is a directory; the output is a .csv or .tsv file")
    summary = scan_sequences(input_path, sequence_column, id_column)  # a bad record fails now, before the model loads
    classifier = load_classifier(model, device)
    policy = LengthPolicy.for_lengths(classifier.training_lengths, long_inputs, aggregate, window, stride)
    if summary.longest > policy.window and policy.long_inputs == "refuse":
        raise ValueError(policy.refusal(summary.longest_source, summary.longest, str(model)))
    if summary.longest > policy.window and policy.trained is None and not policy.chosen:
        print(
            f"nucel predict: {model} does not record the lengths it was trained on; inputs longer than "
            f"{policy.window:,} bp are cut into {policy.describe()} (--window to choose)",
            file=sys.stderr,
        )
    records = with_unique_ids(iter_sequences(input_path, sequence_column, id_column))
    predictions = prediction_stream(classifier, records, policy, batch_size, progress, summary.bases)
    delimiter = "\t" if output_path.suffix.lower() in (".tsv", ".txt") else ","
    windowed = 0
    with atomic_file(output_path) as staging, open(staging, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(["id", *prediction_columns(classifier.problem_type, classifier.label_names), "windows"])
        for prediction in predictions:
            writer.writerow(
                [
                    prediction.record.id,
                    *prediction_row(prediction.scores, classifier.problem_type, classifier.label_names),
                    prediction.windows,
                ]
            )
            windowed += prediction.windows > 1
    if windowed:
        print(
            f"nucel predict: {windowed} of {summary.records} inputs are longer than {policy.window:,} bp and were "
            f"predicted from {policy.describe()} (the windows column gives the count)",
            file=sys.stderr,
        )
    return output_path


# ----------------------------------------------------------------------------------------------------------------
# Command line


def run_from_args(args: argparse.Namespace) -> None:
    with interruption_reported(args.output):
        path = predict_file(
            args.model,
            args.input,
            args.output,
            args.batch_size,
            args.sequence_column,
            args.id_column,
            args.long_inputs,
            args.aggregate,
            args.window,
            args.stride,
            args.device,
        )
    print(f"predictions written to {path}")
