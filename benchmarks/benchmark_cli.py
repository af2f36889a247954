"""`nucel-benchmark`: fine-tune and score models on a benchmark suite as its paper does, or run the zero-shot
variant-effect benchmark.

    nucel-benchmark --suite gue --data ../shared/data/GUE --task tf/0 --model random:tiny --model cnn
    nucel-benchmark --suite genomic_benchmarks --data ../shared/data/genomic_benchmarks --model ./nucel-93m
    nucel-benchmark --suite vep --generator GENERATOR --encoder ENCODER     (`nucel-benchmark --suite vep --help`)

Protocols, averages and outputs: benchmarks/run.py (suites) and benchmarks/vep.py (variant effects). The options only
are defined here, so that `--help` answers at once; torch is imported when a run starts. The defaults written for
`--suite vep` are benchmarks/vep.py's; tests/test_command_line.py checks that they agree.
"""

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from nucel.benchmarks.registry import OPTION_TYPES, OVERRIDABLE, SUITES
from nucel.cli import HelpFormatter
from nucel.errors import add_debug_option, run_reporting_errors

PROG = "nucel-benchmark"
VEP_PROG = f"{PROG} --suite vep"
REPOSITORY = Path(__file__).resolve().parent.parent


def suite_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\nProtocols")[0], formatter_class=HelpFormatter)
    parser.add_argument("--suite", required=True, choices=(*SUITES, "vep"),
                        help=f"vep: zero-shot variant effects on BRCA1 (`{VEP_PROG} --help`)")
    parser.add_argument("--data", required=True, help="the suite's data root folder (NT: also a file or the Hub dataset id)")
    parser.add_argument("--model", action="append", help="checkpoint folder, Hub id, random:<preset>, or cnn; repeatable")
    parser.add_argument("--evaluate", metavar="FOLDER", help="score this fine-tuned folder on --task test splits, no training")
    parser.add_argument("--task", action="append", help="task name (repeatable; default: the whole suite)")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the registry's seeds (GUE, Genomic Benchmarks)")
    parser.add_argument("--folds", type=int, nargs="+", help="cross-validation folds to run (NT; default: all ten)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results"), help="results folder; finished runs in it are reused")
    parser.add_argument("--run-name", help="default: the suite name")
    parser.add_argument("--max-train-samples", type=int, help="cap: train on a fixed subsample of this many rows")
    parser.add_argument("--max-validation-samples", type=int, help="cap: select on a fixed subsample of validation")
    for key in OVERRIDABLE:
        parser.add_argument(f"--{key.replace('_', '-')}", type=OPTION_TYPES.get(key, int),
                            choices=("modernbert", "linear") if key == "head" else None,
                            help="override the registry's value, for every model")
    parser.add_argument("--torch-threads", type=int, help="torch.set_num_threads (1 is fastest on a busy shared CPU)")
    add_debug_option(parser)
    return parser


def vep_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=VEP_PROG, description="Zero-shot variant effects on BRCA1 saturation genome "
                                     "editing (Findlay et al. 2018): llr of generators, embedding distance of encoders, "
                                     "CADD and phyloP beside them (benchmarks/vep.py).", formatter_class=HelpFormatter)
    parser.add_argument("--suite", choices=("vep",), default="vep", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=REPOSITORY.parent / "shared/data/vep",
                        help="folder holding brca1_sge_findlay2018_snvs.tsv and brca1_hg19_chr17_41180001-41300000.fa")
    parser.add_argument("--generator", action="append", default=[], help="generator / masked-LM folder or Hub id: llr (repeatable)")
    parser.add_argument("--encoder", action="append", default=[], help="encoder folder or Hub id: embedding distance (repeatable)")
    parser.add_argument("--window", type=int, default=1024, help="bases per window, centred on the variant")
    parser.add_argument("--reverse-complement", action="store_true", help="average each score over both strands")
    parser.add_argument("--exclude-ref-mismatches", action="store_true",
                        help="count and skip rows whose REF disagrees with the FASTA (default: stop with an error)")
    parser.add_argument("--max-variants", type=int, help="score an evenly spaced subset of this many rows (quick checks)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the AUROC interval (0: none)")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per forward pass")
    parser.add_argument("--device", help="cpu, cuda ... (default: cuda when available)")
    parser.add_argument("--torch-threads", type=int, help="torch.set_num_threads (1 is fastest on a busy shared CPU)")
    parser.add_argument("--output", type=Path, default=REPOSITORY / "benchmarks/results/vep-brca1",
                        help="writes OUTPUT.md, OUTPUT.json and OUTPUT.png")
    add_debug_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The variant-effect suite is zero-shot (no fine-tuning, no registry): it has options of its own.
    suite_only = argparse.ArgumentParser(add_help=False)
    suite_only.add_argument("--suite")
    if suite_only.parse_known_args(argv)[0].suite == "vep":
        args = vep_parser().parse_args(argv)
        return run_reporting_errors(VEP_PROG, lambda: run_variant_effects(args, f"{PROG} {shlex.join(argv)}"), args.debug)
    parser = suite_parser()
    args = parser.parse_args(argv)
    if args.evaluate and not args.task:
        parser.error("--evaluate needs --task")
    if not (args.evaluate or args.model):
        parser.error("give --model (or --evaluate)")
    return run_reporting_errors(PROG, lambda: run_suite(args), args.debug)


def run_variant_effects(args: argparse.Namespace, command: str) -> None:
    from nucel.benchmarks.vep import report_scores, run  # torch: only for a run

    report_scores(run(args, command), args.output)


def run_suite(args: argparse.Namespace) -> None:
    import torch

    from nucel.benchmarks.run import evaluate_finetuned, run_benchmark

    # NT's data may also be a file or a Hub dataset id; GUE and Genomic Benchmarks are folders.
    if args.suite != "nucleotide_transformer" and not Path(args.data).is_dir():
        raise FileNotFoundError(f"--data {args.data}: no such folder (the {args.suite} data root; see ../shared/data/README.md)")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if args.evaluate:
        print(json.dumps(evaluate_finetuned(args.suite, args.data, args.evaluate, args.task), indent=2))
        return
    overrides = {key: getattr(args, key) for key in ("max_train_samples", "max_validation_samples", *OVERRIDABLE)}
    started = time.perf_counter()
    run_benchmark(args.suite, args.data, args.model, args.task, args.seeds, overrides, args.output,
                  args.run_name or args.suite, args.torch_threads, args.folds)
    print(f"done in {(time.perf_counter() - started) / 60:.1f} min; results under {args.output}")


if __name__ == "__main__":
    sys.exit(main())
