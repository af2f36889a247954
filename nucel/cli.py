"""`nucel`: one program for every job. `nucel COMMAND --help` describes each command's options.

    nucel pretrain --config tiny_cpu                         RTD (or MLM) pre-training on genome FASTA
    nucel finetune --model M --train train.csv -o my-model   fine-tune on labelled sequences
    nucel benchmark --suite gue --data GUE --model M         a benchmark suite as its paper runs it
    nucel vep --generator GEN --model M                      zero-shot BRCA1 variant effects
    nucel study                                              the RTD-vs-MLM pre-training study
    nucel embed --model M sequences.fa -o embeddings.npy     per-sequence or per-base embeddings (+ a 2-D map)
    nucel predict --model CLASSIFIER sequences.fa -o predictions.tsv
    nucel score-variants --variants v.vcf --reference genome.fa --generator GEN -o scores.tsv
    nucel ism --sequence ACGT... --generator GEN -o ism/      in-silico mutagenesis matrix + plot
    nucel index genome.fa.gz                                 a bgzipped, indexed copy of a reference FASTA
    nucel attention --model M --sequence ACGT... -o maps/    attention maps + heatmap, motif SNR
    nucel motif-order -o runs/motif-order                    the paper's motif-order experiment
    nucel release / nucel convert                            Hub release, ModernBERT import/export/migrate

One vocabulary (core/options.py): -o/--output, --model, --window, --threads, --seed(s), --device, --overwrite,
--debug. The earlier programs nucel-pretrain, nucel-finetune, nucel-benchmark and nucel-study remain as aliases.

This module holds the command table and the options of the commands that live in nucel/; every implementation is
imported when its command runs, so that `--help` answers at once instead of waiting for torch.
"""

import argparse
import sys
from pathlib import Path

from nucel.benchmarks.benchmark_cli import add_suite_arguments, add_vep_arguments
from nucel.benchmarks.motif_order import ExperimentSettings
from nucel.benchmarks.pretraining_study import add_arguments as add_study_arguments
from nucel.core.options import (
    ArgumentParser,
    HelpFormatter,
    add_debug,
    add_device,
    add_model,
    add_output,
    add_threads,
    add_window,
    one_sequence_arguments,
    run_command,
    settings_options,
    table_arguments,
)
from nucel.training.finetune_cli import add_arguments as add_finetune_arguments
from nucel.training.train_rtd import add_arguments as add_pretrain_arguments

# The choices and defaults of the commands' implementations, which import torch: written here so that --help does
# not, and checked against the implementations by tests/test_command_line.py.
POOLINGS = ("cls", "mean", "max")  # core/embeddings.py
DEFAULT_WINDOW, DEFAULT_OVERLAP = 1024, 256  # core/windows.py
LONG_INPUTS, AGGREGATIONS = ("window", "refuse"), ("mean", "max")  # nucel/predict.py


def add_embed(parser) -> None:
    parser.description = (
        "Per-sequence (pooled) or per-base embeddings from a NucEL encoder, written as .npy (+ .ids.tsv) or "
        ".parquet. Records are streamed: memory does not grow with the input (a whole genome is fine). With --map, "
        "also a 2-D map (PCA or t-SNE) of the per-sequence embeddings, coloured by --label-column."
    )
    add_model(parser, "NucEL model folder or Hub id (encoder, generator, classifier or pre-training checkpoint)")
    parser.add_argument("input", nargs="?", help="FASTA(.gz), CSV or TSV with a 'sequence' column (or --regions)")
    parser.add_argument(
        "--regions",
        metavar="BED",
        help="embed these regions of --reference instead of an input file: "
        "one row per region, named by the BED's name column (BED is 0-based, end exclusive)",
    )
    parser.add_argument("--reference", help="reference FASTA (plain, or bgzip with .fai/.gzi), for --regions")
    add_output(parser, "file", "output file: .npy (with .ids.tsv beside it) or .parquet")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--pooling", choices=POOLINGS, default="mean", help="per-sequence pooling")
    how.add_argument("--per-base", action="store_true", help="one vector per base instead of one per sequence")
    parser.add_argument("--layer", type=int, help="hidden_states index (0 = embeddings; default: the final output)")
    parser.add_argument("--reverse-complement", action="store_true", help="average with the reverse complement strand")
    add_window(parser, DEFAULT_WINDOW, "longest piece the model sees, in bases")
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="overlap of consecutive windows, in bases")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    parser.add_argument(
        "--dtype", choices=("float32", "float16"), default="float32", help="stored precision of the vectors"
    )
    table_arguments(parser)
    picture = parser.add_argument_group("2-D map (per-sequence embeddings only)")
    picture.add_argument("--map", metavar="PNG", help="also draw the embeddings in two dimensions into this PNG")
    picture.add_argument("--map-method", choices=("pca", "tsne"), default="pca", help="scikit-learn's PCA or t-SNE")
    picture.add_argument("--label-column", help="CSV/TSV column whose values colour the map's points")
    add_device(parser)
    add_threads(parser)
    parser.set_defaults(run="nucel.embed:run")


def add_predict(parser) -> None:
    parser.description = (
        "Labels and class probabilities of a NucEL classifier: a nucel finetune folder (full, frozen or LoRA), "
        "a released folder (also an adapter-only LoRA release) or a Hub id (from the local cache with "
        "HF_HUB_OFFLINE=1).\n\n"
        "An input longer than the classifier's longest training sequence (recorded by nucel finetune) is cut into "
        "windows whose probabilities are combined (--aggregate), or refused (--long-inputs refuse); the `windows` "
        "column "
        "says how many windows each prediction used. Inputs are streamed; the output appears only when complete."
    )
    add_model(parser, "a classifier: a nucel finetune folder, a released folder or a Hub id")
    parser.add_argument("input", help="FASTA(.gz), CSV or TSV file of sequences")
    add_output(parser, "file", "predictions file (.csv, or .tsv for tab-separated)")
    parser.add_argument(
        "--long-inputs",
        choices=LONG_INPUTS,
        default="window",
        help="inputs longer than the classifier's training sequences: cut into windows, or refuse",
    )
    add_window(parser, None, f"window length in bp (default: the longest training sequence, else {DEFAULT_WINDOW})")
    parser.add_argument("--stride", type=int, help="bp between window starts (default: half the window)")
    parser.add_argument(
        "--aggregate",
        choices=AGGREGATIONS,
        default="mean",
        help="combine the windows' probabilities per class by their mean or their maximum",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="windows per forward pass")
    table_arguments(parser)
    add_device(parser)
    add_threads(parser)
    parser.set_defaults(run="nucel.predict:run_from_args")


def variant_model_arguments(parser) -> None:
    parser.add_argument("--generator", help="generator (masked LM) folder or Hub id: the llr score")
    parser.add_argument("--model", help="encoder folder or Hub id: the embedding_distance score")
    parser.add_argument(
        "--discriminator",
        metavar="FOLDER",
        help="a discriminator exported with its RTD head, e.g. "
        "runs/x/export/discriminator_rtd: the replaced_probability score",
    )
    add_window(parser, DEFAULT_WINDOW, "bases of context around each variant", aliases=("--context",))
    parser.add_argument("--batch-size", type=int, default=32, help="model inputs per forward pass")
    add_device(parser)
    add_threads(parser)


def add_score_variants(score) -> None:
    score.description = (
        "Scores single-nucleotide variants: llr = log P(alt) - log P(ref) from the generator at the "
        "masked position, the embedding distance between the reference and alternative contexts (encoder), and the "
        "replaced probability p_replaced(alt) - p_replaced(ref) from a discriminator's RTD head (higher: the "
        "alternative base looks more like a replacement, more damaging). Input: a VCF, VCF.gz or BCF with --reference, "
        "or a TSV "
        "(position, ref, alt and sequence or region; or chrom, pos, ref, alt). Every output row has a status (ok, "
        "not_snv, missing_contig, outside_contig, ref_is_n, ref_mismatch) and a summary counts them; chromosome names "
        "that differ by a 'chr' prefix are matched and reported. The output's extension chooses its format: .tsv, or "
        ".vcf/.vcf.gz/.bcf (every input record, the scores as INFO fields NUCEL_LLR, NUCEL_EMBEDDING_DISTANCE, "
        "NUCEL_REPLACED_PROBABILITY, NUCEL_STATUS); with a reference, each score is also written as a bigWig + "
        "bedGraph track beside it (OUTPUT.llr.bw, ...)."
    )
    score.add_argument(
        "--variants",
        required=True,
        help="VCF, VCF.gz or BCF; or TSV (position, ref, alt, sequence or region; or chrom, pos, ref, alt)",
    )
    score.add_argument(
        "--reference",
        help="reference FASTA, plain or bgzip (indexed on first use; plain gzip: run "
        "`nucel index` once), for a VCF or genomic TSV rows",
    )
    score.add_argument(
        "--regions",
        help="only the VCF records in CHROM:START-END[,...] (1-based, inclusive) or in a "
        "BED file; read by the VCF's index (.tbi/.csi) where it has one",
    )
    variant_model_arguments(score)
    score.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first row that is not 'ok' (default: give it a status and go on)",
    )
    add_output(score, "file", "output: .tsv, .vcf, .vcf.gz (bgzipped, indexed when sorted) or .bcf")
    score.set_defaults(run="nucel.variants:run_score_variants")


def add_ism(ism) -> None:
    ism.description = (
        "Scores every substitution of a sequence with the generator (llr), an encoder (embedding "
        "distance) or a discriminator with its RTD head (replaced probability); writes ism.tsv "
        "(position, ref, A, C, G, T) and ism.png into the output folder. With --region/--regions also "
        "the tracks ism.A/C/G/T (each substitution) and ism.mean (the mean over the three "
        "substitutions) as .bw and .bedgraph. A region more than half N is refused (--region) or "
        "skipped (--regions; regions.tsv says so)."
    )
    where = one_sequence_arguments(ism)
    where.add_argument("--region", help="CHROM:START-END (1-based, inclusive) in --reference")
    where.add_argument(
        "--regions",
        metavar="BED",
        help="every region of a BED file (0-based, end exclusive) in "
        "--reference; named by its name column, else chrom:start-end",
    )
    ism.add_argument("--reference", help="reference FASTA (plain, or bgzip with .fai/.gzi), for --region/--regions")
    variant_model_arguments(ism)
    add_output(ism, "folder", "folder for ism.tsv, the figures and the tracks")
    ism.set_defaults(run="nucel.variants:run_ism")


def add_attention(parser) -> None:
    parser.description = (
        "Attention maps of a NucEL encoder (eager attention), saved as attention.npy + attention.json and "
        "drawn as attention.png on base-pair axes (genomic coordinates with --region); with --motif, the motif "
        "signal-to-noise ratio of every layer (snr.tsv): the attention the motif positions receive over that of the "
        "other bases."
    )
    add_model(parser)
    where = one_sequence_arguments(parser)
    where.add_argument(
        "--region", help="CHROM:START-END (1-based, inclusive) in --reference; the axes show its coordinates"
    )
    where.add_argument(
        "--regions",
        metavar="BED",
        help="every region of a BED file (0-based, end exclusive) in "
        "--reference: one subfolder of maps per region, named by the BED's name column",
    )
    parser.add_argument("--reference", help="reference FASTA (plain, or bgzip with .fai/.gzi), for --region/--regions")
    parser.add_argument("--layers", help="comma-separated layer indices (default: the global layers)")
    parser.add_argument("--heads", help="comma-separated head indices (default: the mean over all heads)")
    parser.add_argument(
        "--motif",
        action="append",
        default=[],
        help="motif sequence whose positions are marked and scored (SNR); repeatable",
    )
    add_output(
        parser,
        "folder",
        "folder for attention.npy, attention.json, attention.png (and snr.tsv)",
        aliases=("--output-dir",),
    )
    add_device(parser)
    add_threads(parser)
    parser.set_defaults(run="nucel.attention:run")


def add_motif_order_data(data) -> None:
    data.description = (
        "Sequences that hold motif A and motif B once each (same bases, another order) in random "
        "background: label 1 when A comes first. Columns: sequence, label, a_start, b_start."
    )
    add_output(data, "file", "output CSV (sequence, label, a_start, b_start)")
    data.add_argument("--size", type=int, default=2000, help="number of sequences")
    settings_options(data, ExperimentSettings, names=ExperimentSettings.data_fields())
    data.set_defaults(run="nucel.benchmarks.motif_order:run_generate")


def add_motif_order(experiment) -> None:
    experiment.description = (
        "The paper's motif-order experiment: fine-tunes a model on the task, reports test accuracy and the "
        "motif signal-to-noise ratio of attention in every layer before and after fine-tuning; writes results.json, "
        "snr.png, attention.png and the fine-tuned model folder."
    )
    add_output(experiment, "folder", "folder for the results and the fine-tuned model", aliases=("--output-dir",))
    settings_options(experiment, ExperimentSettings)
    add_device(experiment)
    add_threads(experiment)
    experiment.set_defaults(run="nucel.benchmarks.motif_order:run_experiment_command")


def add_release(parser) -> None:
    parser.description = (
        "Writes a release folder (weights, config, model code, tokenizer, model card with the facts the "
        "run recorded) and uploads it. Token: HF_TOKEN or `hf auth login`; it is never written into the folder."
    )
    add_model(parser, "training output: a NucEL model folder (pre-training export or fine-tuned)", type=Path)
    parser.add_argument("--repo-id", required=True, help="Hub repository, owner/name")
    parser.add_argument(
        "--part", choices=("discriminator", "generator"), help="for a pre-training model: which half to release"
    )
    add_output(
        parser,
        "folder",
        "where to write the release folder (default: releases/<owner>--<name>)",
        required=False,
        aliases=("--out",),
    )
    parser.add_argument("--card-facts", type=Path, help="YAML with hardware, training_time, task, ... for the card")
    parser.add_argument(
        "--results",
        type=Path,
        nargs="+",
        default=[],
        help="nucel benchmark results.json file(s) of this very model (checked by model identity) for the model-index",
    )
    parser.add_argument(
        "--pretraining-run",
        type=Path,
        help="the nucel pretrain output folder the model came from, for a folder exported before models recorded "
        "their own pretraining.json (default: the run it sits in)",
    )
    parser.add_argument("--label-names", nargs="+", help="classifier label names, in label-id order")
    parser.add_argument("--base-model", help="Hub id of the pre-trained model a fine-tune started from")
    parser.add_argument(
        "--lora-adapter",
        action="store_true",
        help="for a LoRA fine-tune: release the adapter alone (needs --base-model) instead of the merged model",
    )
    parser.add_argument("--license", help="license id for the card (default: apache-2.0)")
    parser.add_argument("--dry-run", action="store_true", help="write the folder, upload nothing")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--revision", help="branch to push to (created if absent; default: main)")
    parser.add_argument("--commit-message", help="commit message (default: 'Release <name>')")
    parser.set_defaults(run="nucel.release:run")


def add_index(parser) -> None:
    parser.description = (
        "Writes a bgzip-compressed copy of a reference FASTA (plain, gzip or bgzip) with its .fai "
        "and .gzi indexes, so that score-variants, ism and attention read it by position. Needed once for a FASTA "
        "compressed with plain gzip, which cannot be read by position."
    )
    parser.add_argument("reference", help="FASTA file: plain, gzip or bgzip")
    add_output(parser, "file", "the indexed copy (default: beside the input, NAME.bgz.fa.gz)", required=False)
    parser.set_defaults(run="nucel.index:run")


def add_convert(parser) -> None:
    parser.description = "nucel convert import|export|migrate SOURCE -o OUT"
    directions = parser.add_subparsers(dest="direction", required=True, metavar="DIRECTION")
    for direction, help, source, out in (
        (
            "import",
            "ModernBERT folder on the released vocabulary -> dual-mode NucEL folder",
            "folder with config.json and the ModernBERT weights (e.g. a download of FreakingPotato/NucEL)",
            "NucEL folder to write",
        ),
        (
            "export",
            "NucEL folder -> native ModernBERT folder (no remote code)",
            "NucEL model folder",
            "native ModernBERT folder to write",
        ),
        (
            "migrate",
            "NucEL folder saved with the old ids (A, C, G, T = 7-10) -> the released ids (11-14)",
            "NucEL folder saved before the vocabulary change",
            "NucEL folder to write",
        ),
    ):
        converter = directions.add_parser(direction, help=help, description=help, formatter_class=HelpFormatter)
        converter.add_argument("source", type=Path, help=source)
        add_output(converter, "folder", out)
        add_debug(converter)
        converter.set_defaults(run="nucel.convert:run")


COMMANDS = (  # name, options, summary for `nucel --help`
    ("pretrain", add_pretrain_arguments, "pre-train by replaced token detection (or MLM) on genome FASTA"),
    ("finetune", add_finetune_arguments, "fine-tune NucEL (or the CNN baseline) on labelled sequences"),
    ("benchmark", add_suite_arguments, "fine-tune and score models on GUE, Genomic Benchmarks or the NT tasks"),
    (
        "vep",
        add_vep_arguments,
        "zero-shot variant effects on BRCA1 (llr, embedding distance, replaced probability; CADD, phyloP beside)",
    ),
    ("study", add_study_arguments, "the RTD-vs-MLM pre-training study (resumable)"),
    ("embed", add_embed, "embeddings of sequences from a FASTA/CSV/TSV file, and a 2-D map of them"),
    ("predict", add_predict, "predict labels for sequences with a fine-tuned or released classifier"),
    (
        "score-variants",
        add_score_variants,
        "variant-effect scores (generator llr, embedding distance, replaced probability) for a TSV or VCF",
    ),
    ("ism", add_ism, "in-silico mutagenesis of a region: every base to every other base, as a matrix and a plot"),
    ("attention", add_attention, "attention maps of a sequence (arrays + heatmap PNG) and the motif SNR per layer"),
    ("motif-order", add_motif_order, "fine-tune on the motif-order task; accuracy and motif attention SNR per layer"),
    ("motif-order-data", add_motif_order_data, "generate the synthetic motif-order data set (CSV)"),
    ("index", add_index, "bgzip and index a reference FASTA so that it can be read by position"),
    ("release", add_release, "assemble a Hub repository folder (weights, config, code, tokenizer, card) and upload it"),
    (
        "convert",
        add_convert,
        "import a ModernBERT checkpoint (e.g. the released NucEL-93M), export native ModernBERT, migrate old ids",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="nucel", description=__doc__.split("\n\nThis module")[0], formatter_class=HelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, add_arguments, summary in COMMANDS:
        command = commands.add_parser(name, help=summary, formatter_class=HelpFormatter)  # an ArgumentParser too
        add_arguments(command)
        if command._subparsers is None:  # `nucel convert` gives --debug to each direction
            add_debug(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.arguments = argv[1:]  # as given after the command's name: what reports record as the command line
    return run_command(f"nucel {args.command}", args)


def alias(command: str):
    """An earlier program's name for a command (`nucel-pretrain` is `nucel pretrain`), kept for one release."""

    def run(argv: list[str] | None = None) -> int:
        argv = list(sys.argv[1:] if argv is None else argv)
        if command == "benchmark" and "vep" in argv and argv[argv.index("vep") - 1] == "--suite":
            position = argv.index("vep")  # `nucel-benchmark --suite vep ...` is `nucel vep ...`
            return main(["vep", *argv[: position - 1], *argv[position + 1 :]])
        return main([command, *argv])

    return run


pretrain_alias, finetune_alias, benchmark_alias, study_alias = map(
    alias, ("pretrain", "finetune", "benchmark", "study")
)

if __name__ == "__main__":
    sys.exit(main())
