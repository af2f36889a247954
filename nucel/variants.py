"""`nucel score-variants` and `nucel ism`: variants scored from VCF/BCF/TSV files, in-silico mutagenesis of regions.

What the scores are: nucel/core/variant_scores.py. Reading variant files: nucel/variant_files.py; what
score-variants writes (TSV, VCF/BCF with INFO fields, tracks): nucel/variant_outputs.py.

    nucel score-variants --variants calls.vcf.gz --reference genome.bgz.fa.gz --generator GEN -o scores.vcf.gz
    nucel ism --region chr1:1001-1200 --reference genome.fa --generator GEN -o ism   (ism.tsv, ism.png, tracks)
    nucel ism --regions enhancers.bed --reference genome.fa --generator GEN -o ism
    nucel score-variants --variants v.vcf --reference genome.fa --discriminator RUN/export/discriminator_rtd -o s.tsv

Every output row has a `status` (ok, not_snv, missing_contig, outside_contig, ref_is_n, ref_mismatch) and a summary
counts them; `--strict` stops at the first row that is not `ok`. Chromosome names that differ by a `chr` prefix are
matched and reported. Inputs (variant file, reference, regions) are read and checked before any model loads.

In-silico mutagenesis writes ism.tsv (position, ref, A, C, G, T; with --regions also region and chrom first), a
figure per region, and with a reference the tracks ism.A/C/G/T (each substitution's score, 0 at the reference
base) and ism.mean (the mean over the three substitutions of each position) as bigWig + bedGraph. A region that is
all or mostly N (more than half) is refused; in a BED file it is skipped, and regions.tsv gives its status.
"""

import csv
import re
import shlex
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from nucel.core.errors import interruption_reported
from nucel.core.files import atomic_file
from nucel.core.identity import folder_identity
from nucel.core.models import load_encoder, resolve_model_folder
from nucel.core.mutagenesis import mutagenesis_chunks, plot_mutagenesis
from nucel.core.references import MOSTLY_N, GenomeRegion, Reference, command_regions, n_share, overlapping
from nucel.core.sequences import read_one_sequence
from nucel.core.tracks import write_track
from nucel.core.variant_scores import VariantError, load_detector, load_generator, scored_rows
from nucel.modeling_nucel.configuration_nucel import BASES
from nucel.variant_files import VcfInput, is_vcf, parse_regions, table_rows
from nucel.variant_outputs import (
    TrackCollector,
    output_kind,
    output_stem,
    status_summary,
    write_scored_table,
    write_scored_vcf,
)

MUTAGENESIS_COLUMNS = ["position", "ref", *BASES]


def mutagenesis_line(position: int, base: str, row: np.ndarray) -> list:
    return [position, base, *(f"{value:.6g}" for value in row)]


# ----------------------------------------------------------------------------------------------------------------
# Models


# Each model option and the score it gives, in the order of the output's columns.
SCORE_OPTIONS = (("generator", "llr"), ("model", "embedding_distance"), ("discriminator", "replaced_probability"))


def check_model_options(args) -> None:
    if not (args.generator or args.model or args.discriminator):
        raise VariantError(
            "give --generator (llr), --model (embedding distance), --discriminator (replaced "
            "probability), or several of them"
        )
    if args.window < 1 or args.batch_size < 1:
        raise VariantError(f"--window and --batch-size must be at least 1, got {args.window} and {args.batch_size}")


def load_models(args):
    """(generator, encoder, detector, tokenizer), None for each model not asked for; every NucEL model shares the
    one DNA tokenizer, so whichever loads last provides it."""
    check_model_options(args)
    generator = model = detector = tokenizer = None
    if args.generator:
        generator, tokenizer = load_generator(args.generator, args.device)
    if args.model:
        model, tokenizer = load_encoder(args.model, args.device)
    if args.discriminator:
        detector, tokenizer = load_detector(args.discriminator, args.device)
    return generator, model, detector, tokenizer


def model_description(name_or_path: str) -> str:
    """ "model NAME sha256 HASH" for a VCF header: the hash of the weights, config and tokenizer files."""
    folder = resolve_model_folder(name_or_path)
    return f"model {name_or_path} sha256 {folder_identity(folder)['sha256']}".replace('"', "'")


# ----------------------------------------------------------------------------------------------------------------
# score-variants


def run_score_variants(args) -> None:
    output = Path(args.output)
    kind = output_kind(output)
    check_model_options(args)
    reference = Reference(args.reference) if args.reference else None
    regions = parse_regions(args.regions) if args.regions else None
    if is_vcf(args.variants):
        if reference is None:
            raise VariantError(f"{args.variants}: a VCF needs the reference FASTA (--reference)")
        vcf = VcfInput(args.variants, regions)  # every record parsed now, before the models load

        def rows():
            return vcf.rows(reference, args.strict, keep_records=kind != "tsv")
    else:
        if regions is not None or kind != "tsv":
            raise VariantError(f"{args.variants}: --regions and VCF/BCF output need a VCF or BCF input; write a .tsv")

        def rows():
            return table_rows(args.variants, reference, args.strict)

    # Every row is checked now (--strict stops at the first that is not ok), before the models load.
    missing = sorted({row.chrom for row in rows() if row.status == "missing_contig"})
    if reference is not None:
        reference.renamed.clear()  # counted again by the scoring pass
    generator, model, detector, tokenizer = load_models(args)
    score_names = [name for option, name in SCORE_OPTIONS if getattr(args, option)]
    tracks = TrackCollector(score_names)
    scored = tracks.passing(
        scored_rows(rows(), generator, model, tokenizer, args.window, args.batch_size, detector=detector)
    )
    note = ""
    with interruption_reported(output):
        if kind == "tsv":
            counts = write_scored_table(output, scored, score_names)
        else:
            models = {
                name: model_description(getattr(args, option))
                for option, name in SCORE_OPTIONS
                if getattr(args, option)
            }
            # The command line as given to nucel (cli.main records it; not sys.argv, which may be another program's).
            command_line = shlex.join(["nucel", "score-variants", *getattr(args, "arguments", [])])
            counts, note = write_scored_vcf(output, vcf, scored, score_names, models, command_line)
        written = tracks.write(output_stem(output), reference) if reference is not None else []
    unscored = "; rows that are not ok have no scores, and their status says why" if set(counts) - {"ok"} else ""
    track_note = f"; tracks: {', '.join(path.name for path in written)}" if written else ""
    missing_note = ""
    if missing and reference is not None:
        missing_note = (
            f"; chromosome(s) {', '.join(missing[:5])} not in the reference: "
            f"{reference.missing_contig_hint(missing[0])}"
        )
    summary = status_summary(counts, reference)
    print(f"{counts['ok']} variants scored -> {output} ({summary}{unscored}{missing_note}{note}{track_note})")


# ----------------------------------------------------------------------------------------------------------------
# ism


def safe_name(name: str) -> str:
    """A region's name as part of a file name."""
    return re.sub(r"[^A-Za-z0-9._:+-]", "_", name)


def ism_regions(args) -> tuple[Reference | None, list[GenomeRegion], list[tuple[GenomeRegion, str]]]:
    """The reference, the regions to score, and every region with its status (ok, all_n, mostly_n). A single
    --region that is all or mostly N is refused; BED regions like it are skipped."""
    if not (args.region or args.regions):
        sequence = read_one_sequence(args.sequence, args.fasta, args.record)
        if n_share(sequence) > MOSTLY_N:
            raise VariantError(
                f"the sequence is {n_share(sequence):.0%} N (or other non-ACGT codes): too little DNA to mutate"
            )
        return None, [GenomeRegion("sequence", "", "", 0, len(sequence), sequence)], []
    reference, regions = command_regions(args.region, args.regions, args.reference)
    statuses = []
    for region in regions:
        share = n_share(region.sequence)
        status = "ok" if share <= MOSTLY_N else "all_n" if share == 1 else "mostly_n"
        if status != "ok" and args.region:
            raise VariantError(
                f"--region {region.name}: {share:.0%} of its {len(region.sequence):,} bases are N (or "
                "other non-ACGT codes), so there is too little DNA to mutate; choose a region with "
                "sequence"
            )
        statuses.append((region, status))
    pair = overlapping(regions)
    if pair:
        raise VariantError(
            f"{args.regions}: regions {pair[0].name!r} and {pair[1].name!r} overlap; a track holds one "
            "value per base: merge them (e.g. bedtools merge) or list them apart"
        )
    scored = [region for region, status in statuses if status == "ok"]
    if not scored:
        raise VariantError(f"{args.regions}: every region is all or mostly N; nothing to mutate")
    return reference, scored, statuses if args.regions else []


def run_ism(args) -> None:
    if sum(bool(getattr(args, option)) for option, _ in SCORE_OPTIONS) > 1:
        raise VariantError(
            "in-silico mutagenesis scores with one model: give one of --generator, --model or --discriminator"
        )
    check_model_options(args)
    reference, regions, statuses = ism_regions(args)
    generator, model, detector, tokenizer = load_models(args)
    score_name = next(name for option, name in SCORE_OPTIONS if getattr(args, option))
    several = bool(statuses)
    output = Path(args.output)
    with removed_if_left_empty(output):
        table = output / "ism.tsv"
        matrices = []
        with interruption_reported(table), atomic_file(table) as staging, open(staging, "w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["region", "chrom", *MUTAGENESIS_COLUMNS] if several else MUTAGENESIS_COLUMNS)
            matrices = [
                mutagenesis_of(region, (generator, model, detector), tokenizer, args, writer, several)
                for region in regions
            ]
        written = [table]
        for region, matrix in zip(regions, matrices):
            where = f"{region.chrom + ':' if region.chrom else ''}{region.first_position}-{region.end}"
            figure = output / (f"ism.{safe_name(region.name)}.png" if several else "ism.png")
            plot_mutagenesis(
                matrix,
                region.sequence,
                figure,
                score_name,
                region.first_position,
                f"in-silico mutagenesis of {where}{f' ({region.name})' if several else ''} ({score_name})",
            )
            written.append(figure)
        if reference is not None:
            written += write_ism_tracks(output, reference, regions, matrices, score_name)
        if several:
            written.append(write_region_statuses(output / "regions.tsv", statuses))
    skipped = sum(status != "ok" for _, status in statuses)
    bases = sum(len(region.sequence) for region in regions)
    print(
        f"{bases} positions x 3 substitutions scored in {len(regions)} region(s)"
        f"{f' ({skipped} skipped as all or mostly N: see regions.tsv)' if skipped else ''} -> "
        f"{', '.join(str(path) for path in written[:3])}{', ...' if len(written) > 3 else ''}"
    )


@contextmanager
def removed_if_left_empty(folder: Path):
    """A folder this run creates is removed again if the run stops before writing anything into it."""
    created = not folder.exists()
    try:
        yield
    except BaseException:
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise


def mutagenesis_of(region: GenomeRegion, models: tuple, tokenizer, args, writer, several: bool) -> np.ndarray:
    """Score every substitution of one region with `models` (generator, encoder, detector: one of them given),
    writing its rows as they come; returns its matrix."""
    generator, model, detector = models
    chunks, done, first = [], 0, region.first_position
    prefix = [region.name, region.chrom] if several else []
    for rows in mutagenesis_chunks(
        region.sequence,
        generator,
        model,
        tokenizer,
        args.window,
        args.batch_size,
        first_position=first,
        detector=detector,
    ):
        writer.writerows(
            prefix + mutagenesis_line(first + done + i, region.sequence[done + i], row) for i, row in enumerate(rows)
        )
        chunks.append(rows)
        done += len(rows)
    return np.concatenate(chunks)


def write_ism_tracks(
    output: Path, reference: Reference, regions: list[GenomeRegion], matrices: list[np.ndarray], score_name: str
) -> list[Path]:
    """ism.A/C/G/T (each substitution's score: the TSV's values, 0 at the reference base) and ism.mean (the mean over
    the three substitutions of a position) on the reference's coordinates; N positions have no value."""
    entries = {track: [] for track in (*BASES, "mean")}
    for region, matrix in zip(regions, matrices):
        mean = matrix.sum(axis=1) / (len(BASES) - 1)  # the reference base's 0 left out of the mean; NaN stays NaN
        for offset, start in enumerate(range(region.start, region.end)):
            for column, base in enumerate(BASES):
                entries[base].append((region.reference_name, start, float(matrix[offset, column])))
            entries["mean"].append((region.reference_name, start, float(mean[offset])))
    written = []
    for track, values in entries.items():
        meaning = "mean over the three substitutions" if track == "mean" else f"substitution to {track}"
        written += write_track(output / f"ism.{track}", reference.lengths, values, f"NucEL ISM {score_name}, {meaning}")
    return written


def write_region_statuses(path: Path, statuses: list[tuple[GenomeRegion, str]]) -> Path:
    with atomic_file(path) as staging:
        staging.write_text(
            "region\tchrom\tstart\tend\tstatus\tn_share\n"
            + "".join(
                f"{region.name}\t{region.chrom}\t{region.start}\t{region.end}\t{status}\t{n_share(region.sequence):.3f}\n"
                for region, status in statuses
            )
        )
    return path
