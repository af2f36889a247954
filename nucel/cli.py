"""The `nucel` command: one entry point for using a trained NucEL.

    nucel embed MODEL sequences.fa -o embeddings.npy          per-sequence or per-base embeddings
    nucel score-variants --variants v.vcf --reference genome.fa --generator GEN -o scores.tsv
    nucel ism --sequence ACGT... --generator GEN -o ism       in-silico mutagenesis matrix + plot
    nucel attention MODEL --sequence ACGT... -o maps/         attention maps + heatmap, motif SNR
    nucel motif-order -o runs/motif_order                     the paper's motif-order experiment
    nucel predict MODEL_DIR sequences.fa predictions.tsv      a fine-tuned classifier's predictions
    nucel release / nucel convert                             Hub release, ModernBERT import/export

Each sub-command lives in its own module, which exposes `add_parser(subparsers)` and sets `func` on its parser.
"""

import argparse
import importlib
import importlib.util
import sys

from nucel.errors import add_debug_option, run_reporting_errors

# The modules that provide sub-commands, in the order `nucel --help` lists them. The training and release
# modules come with the full package; a trimmed installation without one of them simply lacks its command.
COMMAND_MODULES = (
    "nucel.embed",
    "nucel.variants",
    "nucel.attention_maps",
    "nucel.motif_order",
    "nucel.training.predict",
    "nucel.release",
    "nucel.convert",
)

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nucel", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).add_parser(subparsers)
    for subparser in subparsers.choices.values():
        add_debug_option(subparser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_reporting_errors(f"nucel {args.command}", lambda: args.func(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
