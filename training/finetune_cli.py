"""`nucel-finetune`: fine-tune NucEL (or the CNN baseline) on labelled sequences from files or a `datasets` dataset.

    nucel-finetune --model nucel-93m --train train.csv --validation dev.csv --output my-model
    nucel-finetune --model ./pretrained --train data.tsv --validation-fraction 0.1 --method lora --output my-lora
    nucel-finetune --model random:tiny --train train.csv --test test.csv --output no-pretraining

What each setting means: training/finetune.py. The options only are defined here, so that `--help` answers at once;
the training code (torch, transformers) is imported when a run starts. The defaults written here are
FinetuneSettings'; tests/test_command_line.py checks that they agree.
"""

import argparse
import json
import sys

from nucel.cli import HelpFormatter, add_overwrite_option, refuse_existing_output_folders
from nucel.errors import add_debug_option, run_reporting_errors

# FinetuneSettings fields that are plain options, with their defaults and types.
TRAINING_OPTIONS = {
    "learning_rate": (float, 3e-5, "peak learning rate"),
    "batch_size": (int, 32, "sequences per optimiser step"),
    "epochs": (float, 3.0, "passes over the training data (--max-steps wins)"),
    "max_steps": (int, None, "optimiser steps (overrides --epochs)"),
    "warmup_steps": (int, 0, "linear warm-up steps"),
    "weight_decay": (float, 0.01, "AdamW weight decay"),
    "eval_steps": (int, None, "steps between validations (default: once per epoch)"),
    "early_stopping_patience": (int, 5, "validations without improvement before stopping"),
    "max_length_bp": (int, None, "truncate longer sequences to this many bases (default: no truncation)"),
    "seed": (int, 42, "seed of the head's initialisation, the data order and dropout"),
    "lora_rank": (int, 8, "LoRA rank (--method lora)"),
    "lora_alpha": (int, 16, "LoRA alpha (--method lora)"),
    "lora_dropout": (float, 0.05, "LoRA dropout (--method lora)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nucel-finetune", description=__doc__.split("\n\nWhat each")[0], formatter_class=HelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint folder, Hub id, or random:<preset> (e.g. random:tiny)")
    parser.add_argument("--output", required=True, help="folder for the best model")
    add_overwrite_option(parser, "--output")
    data = parser.add_argument_group("data (files, or a `datasets` dataset)")
    data.add_argument("--train", help="CSV/TSV/parquet file with the training rows")
    data.add_argument("--validation", help="validation file; without it, --validation-fraction of train is held out")
    data.add_argument("--test", help="test file, evaluated with the best model")
    data.add_argument("--dataset", help="a `datasets` dataset (Hub id or local folder) instead of files")
    data.add_argument("--train-split", default="train", help="dataset split for training")
    data.add_argument("--validation-split", help="dataset split for validation (default: carve from train)")
    data.add_argument("--test-split", help="dataset split for testing")
    data.add_argument("--validation-fraction", type=float, default=0.1, help="share of train held out for validation, without --validation")
    data.add_argument("--validation-seed", type=int, default=2024, help="seed of that hold-out")
    data.add_argument("--sequence-column", help="default: sequence or seq")
    data.add_argument("--label-column", action="append", help="label column; repeat for multi-label or several regression targets (default: label)")
    data.add_argument("--label-names", nargs="+", help="single-label classes in id order (default: the distinct training labels, sorted)")
    task = parser.add_argument_group("task and training")
    task.add_argument("--problem-type", choices=("single_label_classification", "multi_label_classification", "regression"),
                      default="single_label_classification", help="what the labels are")
    task.add_argument("--pooling", choices=("cls", "mean"), default="cls", help="the vector the head reads")
    task.add_argument("--method", choices=("full", "lora", "frozen"), default="full",
                      help="full: train everything; lora: adapters; frozen: a linear probe of the fixed encoder")
    task.add_argument("--head", choices=("modernbert", "linear"),
                      help="linear: one linear layer on the pooled vector (the paper's); modernbert: dense -> activation "
                           "-> norm -> linear (default: linear for --method frozen, else modernbert)")
    task.add_argument("--compile", action="store_true", help="torch.compile the encoder layers (worth it for long runs, on GPU)")
    for name, (kind, default, help) in TRAINING_OPTIONS.items():
        task.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=help)
    add_debug_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.train) == bool(args.dataset):
        parser.error("give either --train (files) or --dataset")
    return run_reporting_errors("nucel-finetune", lambda: run(args), args.debug)


def run(args: argparse.Namespace) -> None:
    from nucel.training.finetune import FinetuneSettings, finetune, label_names_from  # torch: only for a run

    refuse_existing_output_folders(args)
    label_columns = args.label_column or ["label"]
    if args.problem_type == "single_label_classification":
        if args.label_names:
            label_names = args.label_names
        elif args.train:
            label_names = label_names_from(args.train, label_columns[0])
        else:
            raise ValueError("--label-names is required with --dataset for single-label classification")
    else:
        label_names = label_columns
    settings = FinetuneSettings(
        label_names=label_names, problem_type=args.problem_type, pooling=args.pooling, method=args.method, head=args.head,
        compile=args.compile, **{name: getattr(args, name) for name in TRAINING_OPTIONS},
    )
    train, validation, test = load_splits(args, settings, label_columns)
    result = finetune(args.model, train, validation, args.output, settings, test)
    print(f"best validation loss {result.best_validation_loss:.4f} at step {result.best_step} "
          f"({result.steps_trained} steps, {result.train_seconds:.0f} s); model saved to {result.output_dir}")
    if result.test_metrics is not None:
        print("test:", json.dumps(result.test_metrics))


def load_splits(args: argparse.Namespace, settings, label_columns: list[str]) -> tuple:
    from nucel.benchmarks.loaders import carve_validation
    from nucel.training.finetune import dataset_split, read_labelled_data

    if args.dataset:
        from datasets import load_dataset

        dataset = load_dataset(args.dataset)
        column = args.sequence_column or "sequence"
        pick = lambda name: dataset_split(dataset[name], settings, label_columns, column) if name else None
        train, validation, test = pick(args.train_split), pick(args.validation_split), pick(args.test_split)
    else:
        pick = lambda path: read_labelled_data(path, settings, label_columns, args.sequence_column) if path else None
        train, validation, test = pick(args.train), pick(args.validation), pick(args.test)
    if validation is None:
        train, validation, note = carve_validation(train, args.validation_fraction, args.validation_seed)
        print(note)
    return train, validation, test


if __name__ == "__main__":
    sys.exit(main())
