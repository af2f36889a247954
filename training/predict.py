"""Predictions from a fine-tuned NucEL folder: sequences in (CSV/TSV/FASTA), labels and probabilities out.

    nucel predict MODEL_DIR sequences.fa predictions.tsv
    python training/predict.py MODEL_DIR sequences.csv predictions.csv --batch-size 64

The folder is what `training/finetune.py` writes: a full model folder (full or frozen-backbone fine-tuning),
or LoRA adapters plus heads, which are put back on their base model.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch

from nucel.benchmarks.metrics import sigmoid, softmax
from nucel.folders import atomic_file
from nucel.modeling_nucel import NucELForSequenceClassification
from nucel.sequence_io import read_sequences
from nucel.tokenization import load_tokenizer, token_length

# Written by finetune.py into every output folder: how the model was trained and what its outputs mean.
FINETUNE_METADATA = "finetune.json"
ADAPTER_CONFIG = "adapter_config.json"


def load_finetuned(model_dir: str | Path):
    """(model in eval mode, tokenizer, metadata) from a fine-tuned folder, full or LoRA."""
    model_dir = Path(model_dir)
    metadata_path = model_dir / FINETUNE_METADATA
    if not metadata_path.is_file():
        raise FileNotFoundError(f"{metadata_path}: not a fine-tuned NucEL folder (written by training/finetune.py)")
    metadata = json.loads(metadata_path.read_text())
    tokenizer = load_tokenizer(model_dir)
    if (model_dir / ADAPTER_CONFIG).is_file():
        from peft import PeftModel

        base = NucELForSequenceClassification.from_pretrained(
            metadata["base_model"],
            id2label=dict(enumerate(metadata["label_names"])),
            problem_type=metadata["problem_type"],
            classifier_pooling=metadata["pooling"],
            ignore_mismatched_sizes=True,
        )
        model = PeftModel.from_pretrained(base, model_dir)
    else:
        model = NucELForSequenceClassification.from_pretrained(model_dir)
    return model.eval(), tokenizer, metadata


@torch.inference_mode()
def predict_logits(model, tokenizer, sequences: list[str], batch_size: int = 32, max_length_bp: int | None = None) -> np.ndarray:
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


def prediction_table(logits: np.ndarray, problem_type: str, label_names: list[str]) -> tuple[list[str], list[list]]:
    """(column names, rows): the predicted label and one score column per label."""
    if problem_type == "regression":
        return list(label_names), logits.tolist()
    if problem_type == "multi_label_classification":
        probabilities = sigmoid(logits)
        predicted = [";".join(name for name, p in zip(label_names, row) if p >= 0.5) for row in probabilities]
    else:
        probabilities = softmax(logits)
        predicted = [label_names[i] for i in probabilities.argmax(axis=-1)]
    columns = ["prediction"] + [f"probability_{name}" for name in label_names]
    return columns, [[label, *row] for label, row in zip(predicted, probabilities.tolist())]


def predict_file(
    model_dir: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    batch_size: int = 32,
    sequence_column: str | None = None,
    id_column: str | None = None,
) -> Path:
    """Predict every sequence of a FASTA/CSV/TSV file; write a CSV (or TSV for a .tsv/.txt output) with the
    record id, the prediction and the probabilities (regression: the predicted values)."""
    records = read_sequences(input_path, sequence_column=sequence_column, id_column=id_column)
    model, tokenizer, metadata = load_finetuned(model_dir)
    logits = predict_logits(model, tokenizer, [r.sequence for r in records], batch_size, metadata.get("max_length_bp"))
    columns, rows = prediction_table(logits, metadata["problem_type"], metadata["label_names"])
    output_path = Path(output_path)
    delimiter = "\t" if output_path.suffix.lower() in (".tsv", ".txt") else ","
    with atomic_file(output_path) as staging, open(staging, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(["id", *columns])
        for record, row in zip(records, rows):
            writer.writerow([record.id, *row])
    return output_path


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `predict` sub-command on the `nucel` console command's sub-parsers."""
    parser = subparsers.add_parser("predict", help="predict labels for sequences with a fine-tuned model", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="a folder written by training/finetune.py")
    parser.add_argument("input", help="FASTA(.gz), CSV or TSV file of sequences")
    parser.add_argument("output", help="predictions file (.csv, or .tsv for tab-separated)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sequence-column", help="CSV/TSV column holding the sequence (default: sequence or seq)")
    parser.add_argument("--id-column", help="CSV/TSV column holding the record id (default: id/name, else the row number)")
    parser.set_defaults(func=run_from_args)
    return parser


def run_from_args(args: argparse.Namespace) -> None:
    path = predict_file(args.model_dir, args.input, args.output, args.batch_size, args.sequence_column, args.id_column)
    print(f"predictions written to {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python training/predict.py")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["predict", *(sys.argv[1:] if argv is None else argv)])
    args.func(args)


if __name__ == "__main__":
    main()
