"""The `nucel` command: one entry point for using a trained NucEL.

    nucel embed MODEL sequences.fa -o embeddings.npy          per-sequence or per-base embeddings (+ a 2-D map)
    nucel predict MODEL sequences.fa predictions.tsv          a classifier's predictions (fine-tuned, released, Hub id)
    nucel score-variants --variants v.vcf --reference genome.fa --generator GEN -o scores.tsv
    nucel ism --sequence ACGT... --generator GEN -o ism       in-silico mutagenesis matrix + plot
    nucel attention MODEL --sequence ACGT... -o maps/         attention maps + heatmap, motif SNR
    nucel motif-order -o runs/motif_order                     the paper's motif-order experiment
    nucel release / nucel convert                             Hub release, ModernBERT import/export/migrate

Training has commands of its own: nucel-pretrain, nucel-finetune, nucel-benchmark, nucel-study.
`nucel COMMAND --help` describes each command's options.

This module holds only the options: each command's implementation is imported when the command runs, so that
`--help` answers at once instead of waiting for torch. The choices and defaults written here are the
implementations' own; tests/test_command_line.py checks that they agree.
"""

import argparse
import importlib
import sys
from pathlib import Path

from nucel.errors import add_debug_option, run_reporting_errors

DEVICE_HELP = "cpu, cuda, cuda:1 ... (default: cuda when available)"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (they hold examples), and every option's default shown unless it is empty."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


def add_overwrite_option(parser, *folder_options: str) -> None:
    """`--overwrite` for a command that writes a folder: without it an existing, non-empty folder is refused."""
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.set_defaults(output_folders=folder_options)


def refuse_existing_output_folders(args: argparse.Namespace) -> None:
    for option in getattr(args, "output_folders", ()):
        folder = getattr(args, option.lstrip("-").replace("-", "_"))
        if folder is not None:
            check_output_folder(option, Path(folder), args.overwrite)


def check_output_folder(option: str, folder: Path, overwrite: bool) -> None:
    """An output folder must be new or empty, unless `--overwrite`; a file in its place is refused either way."""
    if folder.is_file():
        raise NotADirectoryError(f"{option} {folder}: is a file; give a folder name")
    if not overwrite and folder.is_dir() and any(folder.iterdir()):
        raise FileExistsError(f"{option} {folder}: the folder exists and is not empty; pass --overwrite to replace "
                              "its contents, or choose another folder")


def model_argument(parser, help: str = "NucEL model folder or Hub id") -> None:
    parser.add_argument("model", help=help)


def one_sequence_arguments(parser):
    """`--sequence` / `--fasta` (+ `--record`) for commands that take one sequence; returns the exclusive group so
    that a command can add another way to give it (`--region`). Read back with nucel.sequence_io.read_one_sequence."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--sequence", help="the DNA sequence itself")
    where.add_argument("--fasta", help="a FASTA file; its first record, or --record")
    parser.add_argument("--record", help="record name in --fasta")
    return where


def table_arguments(parser) -> None:
    parser.add_argument("--sequence-column", help="sequence column of a CSV/TSV (default: 'sequence' or 'seq')")
    parser.add_argument("--id-column", help="id column of a CSV/TSV (default: 'id', 'name' or 'sequence_id', else the row number)")


def add_embed(commands) -> None:
    parser = commands.add_parser(
        "embed", help="embeddings of sequences from a FASTA/CSV/TSV file, and a 2-D map of them",
        description="Per-sequence (pooled) or per-base embeddings from a NucEL encoder, written as .npy (+ .ids.tsv) or "
        ".parquet. Records are streamed: memory does not grow with the input (a whole genome is fine). With --map, "
        "also a 2-D map (PCA or t-SNE) of the per-sequence embeddings, coloured by --label-column.",
    )
    model_argument(parser, "NucEL model folder or Hub id (encoder, generator, classifier or pre-training checkpoint)")
    parser.add_argument("input", help="FASTA(.gz), CSV or TSV with a 'sequence' column")
    parser.add_argument("-o", "--output", required=True, help="output file: .npy or .parquet")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--pooling", choices=("cls", "mean", "max"), default="mean", help="per-sequence pooling")
    how.add_argument("--per-base", action="store_true", help="one vector per base instead of one per sequence")
    parser.add_argument("--layer", type=int, help="hidden_states index (0 = embeddings; default: the final output)")
    parser.add_argument("--reverse-complement", action="store_true", help="average with the reverse complement strand")
    parser.add_argument("--window", type=int, default=1024, help="longest piece the model sees, in bases")
    parser.add_argument("--overlap", type=int, default=256, help="overlap of consecutive windows, in bases")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="stored precision of the vectors")
    table_arguments(parser)
    picture = parser.add_argument_group("2-D map (per-sequence embeddings only)")
    picture.add_argument("--map", metavar="PNG", help="also draw the embeddings in two dimensions into this PNG")
    picture.add_argument("--map-method", choices=("pca", "tsne"), default="pca", help="scikit-learn's PCA or t-SNE")
    picture.add_argument("--label-column", help="CSV/TSV column whose values colour the map's points")
    parser.add_argument("--device", help=DEVICE_HELP)
    parser.set_defaults(run="nucel.embed:run")


def add_predict(commands) -> None:
    parser = commands.add_parser(
        "predict", help="predict labels for sequences with a fine-tuned or released classifier",
        description="Labels and class probabilities of a NucEL classifier: a nucel-finetune folder (full, frozen or LoRA), "
        "a released folder (also an adapter-only LoRA release) or a Hub id (from the local cache with HF_HUB_OFFLINE=1).\n\n"
        "An input longer than the classifier's longest training sequence (recorded by nucel-finetune) is cut into "
        "windows whose probabilities are combined (--aggregate), or refused (--long-inputs refuse); the `windows` column "
        "says how many windows each prediction used. Inputs are streamed; the output appears only when complete.",
    )
    model_argument(parser, "a classifier: a nucel-finetune folder, a released folder or a Hub id")
    parser.add_argument("input", help="FASTA(.gz), CSV or TSV file of sequences")
    parser.add_argument("output", help="predictions file (.csv, or .tsv for tab-separated)")
    parser.add_argument("--long-inputs", choices=("window", "refuse"), default="window",
                        help="inputs longer than the classifier's training sequences: cut into windows, or refuse")
    parser.add_argument("--window", type=int, help="window length in bp (default: the longest training sequence, else 1024)")
    parser.add_argument("--stride", type=int, help="bp between window starts (default: half the window)")
    parser.add_argument("--aggregate", choices=("mean", "max"), default="mean",
                        help="combine the windows' probabilities per class by their mean or their maximum")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per forward pass")
    table_arguments(parser)
    parser.add_argument("--device", help=DEVICE_HELP)
    parser.set_defaults(run="nucel.training.predict:run_from_args")


def variant_model_arguments(parser) -> None:
    parser.add_argument("--generator", help="generator (masked LM) folder or Hub id: the llr score")
    parser.add_argument("--model", help="encoder folder or Hub id: the embedding_distance score")
    parser.add_argument("--context", type=int, default=1024, help="bases of context around each variant")
    parser.add_argument("--batch-size", type=int, default=32, help="model inputs per forward pass")
    parser.add_argument("--device", help=DEVICE_HELP)


def add_variant_commands(commands) -> None:
    score = commands.add_parser(
        "score-variants", help="variant-effect scores (generator llr, embedding distance) for a TSV or VCF",
        description="Scores single-nucleotide variants: llr = log P(alt) - log P(ref) from the generator at the masked "
        "position, and the embedding distance between the reference and alternative contexts (encoder). Input: a VCF(.gz) "
        "with --reference, or a TSV (position, ref, alt and sequence or region). Every output row has a status (ok, "
        "not_snv, missing_contig, outside_contig, ref_is_n, ref_mismatch) and a summary counts them; chromosome names "
        "that differ by a 'chr' prefix are matched and reported.",
    )
    score.add_argument("--variants", required=True, help="TSV (position, ref, alt, sequence or region) or VCF(.gz)")
    score.add_argument("--reference", help="reference FASTA(.gz), for a VCF or TSV regions")
    variant_model_arguments(score)
    score.add_argument("--strict", action="store_true", help="stop at the first row that is not 'ok' (default: give it a status and go on)")
    score.add_argument("-o", "--output", required=True, help="output TSV")
    score.set_defaults(run="nucel.variants:run_score_variants")

    ism = commands.add_parser(
        "ism", help="in-silico mutagenesis of a region: every base to every other base, as a matrix and a plot",
        description="Scores every substitution of a sequence with the generator (llr) or an encoder (embedding "
        "distance); writes OUTPUT.tsv (position, ref, A, C, G, T) and OUTPUT.png.",
    )
    where = one_sequence_arguments(ism)
    where.add_argument("--region", help="CHROM:START-END (1-based, inclusive) in --reference")
    ism.add_argument("--reference", help="reference FASTA(.gz), for --region")
    variant_model_arguments(ism)
    ism.add_argument("-o", "--output", required=True, help="output prefix: writes OUTPUT.tsv and OUTPUT.png")
    ism.set_defaults(run="nucel.variants:run_ism")


def add_attention(commands) -> None:
    parser = commands.add_parser(
        "attention", help="attention maps of a sequence (arrays + heatmap PNG) and the motif SNR per layer",
        description="Attention maps of a NucEL encoder (eager attention), saved as attention.npy + attention.json and "
        "drawn as attention.png on base-pair axes (genomic coordinates with --region); with --motif, the motif "
        "signal-to-noise ratio of every layer (snr.tsv): the attention the motif positions receive over that of the "
        "other bases.",
    )
    model_argument(parser)
    where = one_sequence_arguments(parser)
    where.add_argument("--region", help="CHROM:START-END (1-based, inclusive) in --reference; the axes show its coordinates")
    parser.add_argument("--reference", help="reference FASTA(.gz), for --region")
    parser.add_argument("--layers", help="comma-separated layer indices (default: the global layers)")
    parser.add_argument("--heads", help="comma-separated head indices (default: the mean over all heads)")
    parser.add_argument("--motif", action="append", default=[], help="motif sequence whose positions are marked and scored (SNR); repeatable")
    parser.add_argument("-o", "--output-dir", required=True, help="folder for attention.npy, attention.json, attention.png (and snr.tsv)")
    add_overwrite_option(parser, "--output-dir")
    parser.add_argument("--device", help=DEVICE_HELP)
    parser.set_defaults(run="nucel.attention_maps:run")


def motif_data_arguments(parser) -> None:
    parser.add_argument("--length", type=int, default=64, help="sequence length in bases")
    parser.add_argument("--motif-a", default="TTAGGCAC", help="the motif that comes first in a positive sequence")
    parser.add_argument("--motif-b", default="CACGGATT", help="same bases as motif A, another order")
    parser.add_argument("--min-gap", type=int, default=0, help="fewest bases between the motifs")
    parser.add_argument("--max-gap", type=int, default=40, help="most bases between the motifs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data (and of the fine-tuning)")


def add_motif_order(commands) -> None:
    data = commands.add_parser(
        "motif-order-data", help="generate the synthetic motif-order data set (CSV)",
        description="Sequences that hold motif A and motif B once each (same bases, another order) in random "
        "background: label 1 when A comes first. Columns: sequence, label, a_start, b_start.",
    )
    data.add_argument("-o", "--output", required=True, help="output CSV (sequence, label, a_start, b_start)")
    data.add_argument("--size", type=int, default=2000, help="number of sequences")
    motif_data_arguments(data)
    data.set_defaults(run="nucel.motif_order:run_generate")

    experiment = commands.add_parser(
        "motif-order", help="fine-tune on the motif-order task; accuracy and motif attention SNR per layer",
        description="The paper's motif-order experiment: fine-tunes a model on the task, reports test accuracy and the "
        "motif signal-to-noise ratio of attention in every layer before and after fine-tuning; writes results.json, "
        "snr.png, attention.png and the fine-tuned model folder.",
    )
    experiment.add_argument("-o", "--output-dir", required=True, help="folder for the results and the fine-tuned model")
    add_overwrite_option(experiment, "--output-dir")
    experiment.add_argument("--model", default="random:tiny", help="NucEL folder / Hub id, or random:<preset>")
    experiment.add_argument("--train-size", type=int, default=2000, help="training sequences")
    experiment.add_argument("--validation-size", type=int, default=400, help="validation sequences")
    experiment.add_argument("--test-size", type=int, default=400, help="test sequences")
    experiment.add_argument("--epochs", type=float, default=12.0, help="fine-tuning epochs")
    experiment.add_argument("--learning-rate", type=float, default=2e-3, help="peak learning rate")
    experiment.add_argument("--batch-size", type=int, default=32, help="sequences per step")
    experiment.add_argument("--device", help=DEVICE_HELP)
    motif_data_arguments(experiment)
    experiment.set_defaults(run="nucel.motif_order:run_experiment_command")


def add_release(commands) -> None:
    parser = commands.add_parser(
        "release", help="assemble a Hub repository folder (weights, config, code, tokenizer, model card) and upload it",
        description="Writes a release folder (weights, config, model code, tokenizer, model card with the facts the "
        "run recorded) and uploads it. Token: HF_TOKEN or `hf auth login`; it is never written into the folder.",
    )
    parser.add_argument("source", type=Path, help="training output: a NucEL model folder (pre-training export or fine-tuned)")
    parser.add_argument("repo_id", help="Hub repository, owner/name")
    parser.add_argument("--part", choices=("discriminator", "generator"), help="for a pre-training model: which half to release")
    parser.add_argument("--out", type=Path, help="where to write the release folder (default: releases/<owner>--<name>)")
    add_overwrite_option(parser, "--out")
    parser.add_argument("--card-facts", type=Path, help="YAML with hardware, training_time, task, ... for the card")
    parser.add_argument("--results", type=Path, nargs="+", default=[],
                        help="nucel-benchmark results.json file(s) of this very model (checked by model identity) for the model-index")
    parser.add_argument("--pretraining-run", type=Path,
                        help="the nucel-pretrain output folder the model came from (default: found above <run>/export/<part>)")
    parser.add_argument("--label-names", nargs="+", help="classifier label names, in label-id order")
    parser.add_argument("--base-model", help="Hub id of the pre-trained model a fine-tune started from")
    parser.add_argument("--lora-adapter", action="store_true",
                        help="for a LoRA fine-tune: release the adapter alone (needs --base-model) instead of the merged model")
    parser.add_argument("--license", help="license id for the card (default: apache-2.0)")
    parser.add_argument("--dry-run", action="store_true", help="write the folder, upload nothing")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--revision", help="branch to push to (created if absent; default: main)")
    parser.add_argument("--commit-message", help="commit message (default: 'Release <name>')")
    parser.set_defaults(run="nucel.release:run")


def add_convert(commands) -> None:
    parser = commands.add_parser(
        "convert", help="import a ModernBERT checkpoint (e.g. the released NucEL-93M), export native ModernBERT, migrate old ids",
        description="nucel convert import|export|migrate SOURCE OUT",
    )
    directions = parser.add_subparsers(dest="direction", required=True, metavar="DIRECTION")
    for direction, help, source, out in (
        ("import", "ModernBERT folder on the released vocabulary -> dual-mode NucEL folder",
         "folder with config.json and the ModernBERT weights (e.g. a download of FreakingPotato/NucEL)", "NucEL folder to write"),
        ("export", "NucEL folder -> native ModernBERT folder (no remote code)", "NucEL model folder", "native ModernBERT folder to write"),
        ("migrate", "NucEL folder saved with the old ids (A, C, G, T = 7-10) -> the released ids (11-14)",
         "NucEL folder saved before the vocabulary change", "NucEL folder to write"),
    ):
        converter = directions.add_parser(direction, help=help, description=help, formatter_class=HelpFormatter)
        converter.add_argument("source", type=Path, help=source)
        converter.add_argument("out", type=Path, help=out)
        add_overwrite_option(converter, "out")
        add_debug_option(converter)
    parser.set_defaults(run="nucel.convert:run")


COMMANDS = (add_embed, add_predict, add_variant_commands, add_attention, add_motif_order, add_release, add_convert)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nucel", description=__doc__.split("\n\nThis module")[0], formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(commands)
    for command in commands.choices.values():
        command.formatter_class = HelpFormatter
        if command._subparsers is None:  # `nucel convert` gives --debug to each direction
            add_debug_option(command)
    return parser


def implementation(target: str):
    """The function "module:name" a command runs, imported now that it runs."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> None:
        refuse_existing_output_folders(args)
        implementation(args.run)(args)

    return run_reporting_errors(f"nucel {args.command}", run, args.debug)


if __name__ == "__main__":
    sys.exit(main())
