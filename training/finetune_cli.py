"""`nucel finetune`: fine-tune NucEL (or the CNN baseline) on labelled sequences from files or a `datasets` dataset.

    nucel finetune --model nucel-93m --train train.csv --validation dev.csv -o my-model
    nucel finetune --model ./pretrained --train data.tsv --validation-fraction 0.1 --method lora -o my-lora
    nucel finetune --model random:tiny --train train.csv --test test.csv -o no-pretraining

What each setting means: training/finetune_config.py (the options are generated from FinetuneSettings, so each
default is written once); the training code (torch, transformers) is imported when a run starts.
"""

import argparse
import dataclasses
import json

from nucel.core.options import add_device, add_output, add_threads, settings_options
from nucel.training.finetune_config import HEADS, METHODS, POOLINGS, PROBLEM_TYPES, FinetuneSettings

SETTINGS = tuple(field.name for field in dataclasses.fields(FinetuneSettings) if field.name != "label_names")
CHOICES = {"problem_type": PROBLEM_TYPES, "pooling": POOLINGS, "method": METHODS, "head": HEADS}


def add_arguments(parser) -> None:
    parser.description = __doc__.split("\n\nWhat each")[0]
    parser.add_argument(
        "--model", required=True, help="checkpoint folder, Hub id, or random:<preset> (e.g. random:tiny)"
    )
    add_output(parser, "folder", "folder for the best model")
    data = parser.add_argument_group("data (files, or a `datasets` dataset)")
    data.add_argument("--train", help="CSV/TSV/parquet file with the training rows")
    data.add_argument("--validation", help="validation file; without it, --validation-fraction of train is held out")
    data.add_argument("--test", help="test file, evaluated with the best model")
    data.add_argument("--dataset", help="a `datasets` dataset (Hub id or local folder) instead of files")
    data.add_argument("--train-split", default="train", help="dataset split for training")
    data.add_argument("--validation-split", help="dataset split for validation (default: carve from train)")
    data.add_argument("--test-split", help="dataset split for testing")
    data.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        help="share of train held out for validation, without --validation",
    )
    data.add_argument("--validation-seed", type=int, default=2024, help="seed of that hold-out")
    data.add_argument("--sequence-column", help="default: sequence or seq")
    data.add_argument(
        "--label-column",
        action="append",
        help="label column; repeat for multi-label or several regression targets (default: label)",
    )
    data.add_argument(
        "--label-names",
        nargs="+",
        help="single-label classes in id order (default: the distinct training labels, sorted)",
    )
    settings_options(
        parser.add_argument_group("task and training"), FinetuneSettings, choices=CHOICES, skip=("label_names",)
    )
    add_device(parser)
    add_threads(parser)
    parser.set_defaults(run="nucel.training.finetune_cli:run")


def run(args: argparse.Namespace) -> None:
    from nucel.training.finetune import finetune  # torch: only for a run
    from nucel.training.finetune_data import label_names_from

    if bool(args.train) == bool(args.dataset):
        raise ValueError("give either --train (files) or --dataset")
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
    settings = FinetuneSettings(label_names=label_names, **{name: getattr(args, name) for name in SETTINGS})
    train, validation, test = load_splits(args, settings, label_columns)
    result = finetune(args.model, train, validation, args.output, settings, test, args.device)
    print(
        f"best validation loss {result.best_validation_loss:.4f} at step {result.best_step} "
        f"({result.steps_trained} steps, {result.train_seconds:.0f} s); model saved to {result.output_dir}"
    )
    if result.test_metrics is not None:
        print("test:", json.dumps(result.test_metrics))


def load_splits(args: argparse.Namespace, settings, label_columns: list[str]) -> tuple:
    from nucel.core.tables import carve_validation
    from nucel.training.finetune_data import dataset_split, read_labelled_data

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
