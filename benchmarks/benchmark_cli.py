"""`nucel benchmark`: fine-tune and score models on a benchmark suite as its paper does; `nucel vep`: the zero-shot
variant-effect benchmark.

    nucel benchmark --suite gue --data ../shared/data/GUE --task tf/0 --model random:tiny --model cnn
    nucel benchmark --suite genomic_benchmarks --data ../shared/data/genomic_benchmarks --model ./nucel-93m
    nucel vep --generator GENERATOR --model ENCODER --discriminator RUN/export/discriminator_rtd

Protocols, averages and outputs: benchmarks/run.py (suites) and benchmarks/vep.py (variant effects). The options only
are defined here, so that `--help` answers at once; torch is imported when a run starts. The defaults written for
`nucel vep` are benchmarks/vep.py's; tests/test_command_line.py checks that they agree.
"""

import argparse
import json
import shlex
import time
from pathlib import Path

from nucel.benchmarks.registry import OPTION_TYPES, OVERRIDABLE, SUITES
from nucel.core.files import REPOSITORY
from nucel.core.options import add_device, add_output, add_threads, add_window
from nucel.training.finetune_config import HEADS

RESULTS = Path("benchmarks/results")


def add_suite_arguments(parser) -> None:
    parser.description = __doc__.split("\n\nProtocols")[0]
    parser.add_argument("--suite", required=True, choices=SUITES, help="the benchmark suite")
    parser.add_argument(
        "--data", required=True, help="the suite's data root folder (NT: also a file or the Hub dataset id)"
    )
    parser.add_argument(
        "--model", action="append", help="checkpoint folder, Hub id, random:<preset>, or cnn; repeatable"
    )
    parser.add_argument(
        "--evaluate", metavar="FOLDER", help="score this fine-tuned folder on --task test splits, no training"
    )
    parser.add_argument("--task", action="append", help="task name (repeatable; default: the whole suite)")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the registry's seeds (GUE, Genomic Benchmarks)")
    parser.add_argument("--folds", type=int, nargs="+", help="cross-validation folds to run (NT; default: all ten)")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("runs/benchmarks"),
        help="results folder; finished runs in it are reused (summaries worth keeping go to benchmarks/results)",
    )
    parser.add_argument("--run-name", help="default: the suite name")
    parser.add_argument("--max-train-samples", type=int, help="cap: train on a fixed subsample of this many rows")
    parser.add_argument("--max-validation-samples", type=int, help="cap: select on a fixed subsample of validation")
    for key in OVERRIDABLE:
        parser.add_argument(
            f"--{key.replace('_', '-')}",
            type=OPTION_TYPES.get(key, int),
            choices=HEADS if key == "head" else None,
            help="override the registry's value, for every model",
        )
    add_device(parser)
    add_threads(parser)
    parser.set_defaults(run="nucel.benchmarks.benchmark_cli:run_suite")


def add_vep_arguments(parser) -> None:
    parser.description = (
        "Zero-shot variant effects on BRCA1 saturation genome editing (Findlay et al. 2018): llr of "
        "generators, embedding distance of encoders, replaced probability of discriminators with "
        "their RTD head, CADD and phyloP beside them (benchmarks/vep.py)."
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=REPOSITORY.parent / "shared/data/vep",
        help="folder holding brca1_sge_findlay2018_snvs.tsv and brca1_hg19_chr17_41180001-41300000.fa",
    )
    parser.add_argument(
        "--generator", action="append", default=[], help="generator / masked-LM folder or Hub id: llr (repeatable)"
    )
    parser.add_argument(
        "--model",
        "--encoder",
        dest="model",
        action="append",
        default=[],
        help="encoder folder or Hub id: embedding distance (repeatable)",
    )
    parser.add_argument(
        "--discriminator",
        metavar="FOLDER",
        action="append",
        default=[],
        help="a discriminator exported with its RTD head, e.g. runs/x/export/discriminator_rtd: "
        "replaced probability (repeatable)",
    )
    add_window(parser, 1024, "bases per window, centred on the variant")
    parser.add_argument("--reverse-complement", action="store_true", help="average each score over both strands")
    parser.add_argument(
        "--exclude-ref-mismatches",
        action="store_true",
        help="count and skip rows whose REF disagrees with the FASTA (default: stop with an error)",
    )
    parser.add_argument(
        "--max-variants", type=int, help="score an evenly spaced subset of this many rows (quick checks)"
    )
    parser.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples for the AUROC interval (0: none)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="windows per forward pass")
    add_device(parser)
    add_threads(parser)
    add_output(
        parser,
        "folder",
        "folder for vep-brca1.md, vep-brca1.json and vep-brca1.png (a folder that holds other "
        "results is fine: only these three files are replaced)",
        default=RESULTS,
    )
    parser.set_defaults(run="nucel.benchmarks.benchmark_cli:run_variant_effects", output_kind=None)


def run_variant_effects(args: argparse.Namespace) -> None:
    from nucel.benchmarks.vep_report import report_scores, run  # torch: only for a run

    report_scores(run(args, shlex.join(["nucel", "vep", *args.arguments])), args.output)


def run_suite(args: argparse.Namespace) -> None:
    from nucel.benchmarks.run import evaluate_finetuned, run_benchmark

    # NT's data may also be a file or a Hub dataset id; GUE and Genomic Benchmarks are folders.
    if args.suite != "nucleotide_transformer" and not Path(args.data).is_dir():
        raise FileNotFoundError(
            f"--data {args.data}: no such folder (the {args.suite} data root; see ../shared/data/README.md)"
        )
    if args.evaluate and not args.task:
        raise ValueError("--evaluate needs --task")
    if not (args.evaluate or args.model):
        raise ValueError("give --model (or --evaluate)")
    if args.evaluate:
        print(json.dumps(evaluate_finetuned(args.suite, args.data, args.evaluate, args.task), indent=2))
        return
    overrides = {key: getattr(args, key) for key in ("max_train_samples", "max_validation_samples", *OVERRIDABLE)}
    started = time.perf_counter()
    run_benchmark(
        args.suite,
        args.data,
        args.model,
        args.task,
        args.seeds,
        overrides,
        args.output,
        args.run_name or args.suite,
        args.threads,
        args.folds,
        args.device,
    )
    print(f"done in {(time.perf_counter() - started) / 60:.1f} min; results under {args.output}")
