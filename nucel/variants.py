"""`nucel score-variants` and `nucel ism`: variant files read and scored, mutagenesis tables and plots written.

What the scores are: nucel/core/variant_scores.py.

    nucel score-variants --variants variants.vcf --reference genome.fa --generator GEN --model MODEL -o scores.tsv
    nucel ism --region chr1:1001-1200 --reference genome.fa --generator GEN -o ism   (ism.tsv + ism.png)

Scores:
- `llr` (needs the generator, a masked LM): the variant's base is replaced by [MASK] in its reference
  context and llr = log P(alt) - log P(ref), with the generator's probabilities renormalised over A, C, G, T.
  Negative: the model finds the alternative allele less likely than the reference. The masked input is the
  same for ref and alt, so swapping them negates the score exactly.
- `embedding_distance` (needs the discriminator/encoder): the Euclidean distance between the mean-pooled
  final-layer embeddings of the reference context and the same context carrying the alternative allele.
The context is `context_length` bases centred on the variant where the sequence allows (shifted at its ends).
With `reverse_complement_average=True` each score is also computed on the reverse complement of that window
(complemented alleles) and the two are averaged: the llr of the two strands' scores, the distance between the
embeddings averaged over both strands (as `nucel embed --reverse-complement` averages them).

Input:
- TSV with columns `position`, `ref`, `alt`, an optional `id`, and either `sequence` (the DNA itself;
  `position` is 1-based in it) or `region` (`chr1:1001-2000` or `chr1`, in `--reference`; `position` is the
  1-based chromosome coordinate and must lie inside the region, which bounds the context the model sees).
- VCF(.gz) with `--reference`: CHROM, POS (1-based), ID, REF, ALT; one output row per ALT allele.
Every output row has a `status`: `ok` (scored), `not_snv` (an indel, a symbolic or `.` allele, ALT equal to REF),
`missing_contig` (the chromosome is not in the reference), `outside_contig` (the position is past the chromosome's
end, or outside the row's region), `ref_is_n` (REF is N, or the reference has N or another ambiguity code there) or
`ref_mismatch` (REF is not the reference base; soft-masked lowercase matches). Only `ok` rows have scores, and a
summary at the end counts each status; `--strict` stops instead at the first row that is not `ok`, naming its line.
Chromosome names that differ by a `chr` prefix (VCF `1`, reference `chr1`, or the reverse) are matched
automatically, and the summary says so. A line that is not a VCF/TSV row at all (too few columns, a POS that is
not a number) is an error.

Memory stays flat: variants are read lazily, the reference one chromosome at a time (a VCF sorted like its
reference costs one pass over the FASTA), and scores are written as they come, a few batches at a time.
"""

import csv
import gzip
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from nucel.core.errors import interruption_reported
from nucel.core.models import load_encoder
from nucel.core.regions import ReferenceGenome, read_region, region_bounds
from nucel.core.files import atomic_file
from nucel.core.sequences import read_one_sequence
from nucel.core.variant_scores import (
    STATUSES,
    VariantError,
    VariantRow,
    check_variant,
    load_generator,
    mutagenesis_chunks,
    plot_mutagenesis,
    scored_rows,
)
from nucel.modeling_nucel.configuration_nucel import BASES
from nucel.tokenization import validate_dna

# ----------------------------------------------------------------------------------------------------------------
# Reading variants


def open_text(path: Path):
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt") if gzipped else open(path)


def is_vcf(path: str | Path) -> bool:
    return str(path).lower().endswith((".vcf", ".vcf.gz"))


def check_input_file(path: Path) -> None:
    if path.is_dir():
        raise VariantError(f"{path} is a directory; --variants names a VCF or TSV file")
    if not path.is_file():
        raise VariantError(f"{path}: no such file")


def vcf_rows(path: str | Path, reference: ReferenceGenome, strict: bool = False) -> Iterator[VariantRow]:
    """The rows of a VCF(.gz), read lazily: one per ALT allele, checked against the reference (see the module
    docstring). `strict`: the first row that is not "ok" raises a VariantError naming its line."""
    path = Path(path)
    check_input_file(path)
    with open_text(path) as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.startswith("#") or not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            source = f"{path} line {line_number}"
            if len(fields) < 5:
                raise VariantError(f"{source}: expected tab-separated CHROM POS ID REF ALT, found {len(fields)} column(s)")
            chrom, position, variant_id, ref, alts = fields[:5]
            if not position.isdigit():
                raise VariantError(f"{source}: POS {position!r} is not a positive integer")
            context = reference.get(chrom)
            for alt in alts.split(","):
                name = variant_id if variant_id != "." else f"{chrom}:{position} {ref}>{alt}"
                row = check_variant(name, chrom, int(position), ref, alt, context, int(position) - 1, source)
                if strict and row.status != "ok":
                    raise VariantError(row.reason)
                yield row


def read_vcf(path: str | Path, reference_path: str | Path, strict: bool = False) -> list[VariantRow]:
    """All rows of a VCF (`vcf_rows`) in a list."""
    return list(vcf_rows(path, ReferenceGenome(reference_path), strict))


def table_rows(path: str | Path, reference: ReferenceGenome | None = None, strict: bool = False) -> Iterator[VariantRow]:
    """The rows of a variant TSV (see the module docstring for the columns), read lazily and checked like
    `vcf_rows`; `region` rows need the `reference`."""
    path = Path(path)
    check_input_file(path)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        columns = reader.fieldnames or []
        missing = [c for c in ("position", "ref", "alt") if c not in columns]
        if missing or not {"sequence", "region"} & set(columns):
            raise VariantError(f"{path}: needs columns position, ref, alt and sequence or region; the header is {columns}")
        empty = True
        for line_number, fields in enumerate(reader, start=2):
            empty = False
            source = f"{path} line {line_number}"
            name = fields.get("id") or f"line {line_number}"
            position_text = (fields["position"] or "").strip()
            if not position_text.lstrip("-").isdigit():
                raise VariantError(f"{source}: variant {name!r}: position {position_text!r} is not an integer")
            position = int(position_text)
            ref, alt = fields["ref"] or "", fields["alt"] or ""
            if fields.get("region"):
                if reference is None:
                    raise VariantError(f"{source}: the row gives a region, so a reference FASTA is needed (--reference)")
                chrom, start, end = region_bounds(fields["region"], source)
                sequence = reference.get(chrom)
                if sequence is not None and start is not None and not 1 <= start <= end <= len(sequence):
                    reason = f"{source}: region {fields['region']!r} is outside {chrom} (1..{len(sequence)}) or empty"
                    row = VariantRow(name, chrom, position, ref.upper(), alt.upper(), "outside_contig", source, None, reason)
                else:
                    first = start or 1
                    context = sequence if sequence is None or start is None else sequence[start - 1 : end]
                    row = check_variant(name, chrom, position, ref, alt, context, position - first, source)
            else:
                row = check_variant(name, "", position, ref, alt, validate_dna(fields.get("sequence") or "", source), position - 1, source)
            if strict and row.status != "ok":
                raise VariantError(row.reason)
            yield row
    if empty:
        raise VariantError(f"{path}: no variants")


def read_variant_table(path: str | Path, reference_path: str | Path | None = None, strict: bool = False) -> list[VariantRow]:
    """All rows of a variant TSV (`table_rows`) in a list."""
    return list(table_rows(path, ReferenceGenome(reference_path) if reference_path else None, strict))


# ----------------------------------------------------------------------------------------------------------------
# Writing


def write_scored_rows(path: str | Path, scored: Iterable[tuple[VariantRow, dict[str, float]]], score_names: list[str]) -> Counter:
    """Write the rows as they come (TSV: id, chrom, position, ref, alt, status, scores); returns rows per status."""
    counts = Counter()
    with atomic_file(path) as staging, open(staging, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "chrom", "position", "ref", "alt", "status", *score_names])
        for row, scores in scored:
            writer.writerow([row.name, row.chrom, row.position, row.ref, row.alt, row.status,
                             *(f"{scores[name]:.6g}" if name in scores else "" for name in score_names)])
            counts[row.status] += 1
    return counts


def status_summary(counts: Counter, reference: ReferenceGenome | None) -> str:
    """One line: rows per status, and the chromosome names matched across the `chr` prefix."""
    summary = f"{sum(counts.values()):,} rows: " + ", ".join(f"{counts[status]:,} {status}" for status in STATUSES if counts[status])
    if reference is not None and reference.renamed:
        pairs = reference.renamed.most_common()
        shown = ", ".join(f"{asked} -> {found} ({lines:,} lines)" for (asked, found), lines in pairs[:5])
        summary += f"; chromosome names matched to the reference's across the chr prefix: {shown}{', ...' if len(pairs) > 5 else ''}"
    return summary


MUTAGENESIS_COLUMNS = ["position", "ref", *BASES]


def mutagenesis_line(position: int, base: str, row: np.ndarray) -> list:
    return [position, base, *(f"{value:.6g}" for value in row)]


# ----------------------------------------------------------------------------------------------------------------
# Command line


def load_models(args):
    if not (args.generator or args.model):
        raise VariantError("give --generator (llr), --model (embedding distance) or both")
    if args.window < 1 or args.batch_size < 1:
        raise VariantError(f"--window and --batch-size must be at least 1, got {args.window} and {args.batch_size}")
    generator = model = tokenizer = None
    if args.generator:
        generator, tokenizer = load_generator(args.generator, args.device)
    if args.model:
        model, tokenizer = load_encoder(args.model, args.device)
    return generator, model, tokenizer


def run_score_variants(args) -> None:
    output = Path(args.output)
    reference = ReferenceGenome(args.reference) if args.reference else None
    if is_vcf(args.variants):
        if reference is None:
            raise VariantError(f"{args.variants}: a VCF needs the reference FASTA (--reference)")
        rows = vcf_rows(args.variants, reference, args.strict)
    else:
        rows = table_rows(args.variants, reference, args.strict)
    generator, model, tokenizer = load_models(args)
    score_names = [name for name, given in (("llr", generator), ("embedding_distance", model)) if given is not None]
    with interruption_reported(output):
        counts = write_scored_rows(output, scored_rows(rows, generator, model, tokenizer, args.window, args.batch_size), score_names)
    unscored = "; rows that are not ok have no scores, and their status says why" if set(counts) - {"ok"} else ""
    print(f"{counts['ok']} variants scored -> {output} ({status_summary(counts, reference)}{unscored})")


def run_ism(args) -> None:
    chrom, first = "", 1
    if args.region:
        chrom, first, sequence = read_region(args.region, args.reference)
    else:
        sequence = read_one_sequence(args.sequence, args.fasta, args.record)
    if args.generator and args.model:
        raise VariantError("in-silico mutagenesis scores with one model: give --generator or --model, not both")
    generator, model, tokenizer = load_models(args)
    score_name = "llr" if generator is not None else "embedding_distance"
    title = f"in-silico mutagenesis of {chrom + ':' if chrom else ''}{first}-{first + len(sequence) - 1} ({score_name})"
    table, figure = Path(args.output) / "ism.tsv", Path(args.output) / "ism.png"
    chunks = []
    with interruption_reported(table), atomic_file(table) as staging, open(staging, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(MUTAGENESIS_COLUMNS)
        done = 0
        for rows in mutagenesis_chunks(sequence, generator, model, tokenizer, args.window, args.batch_size, first_position=first):
            writer.writerows(mutagenesis_line(first + done + i, sequence[done + i], row) for i, row in enumerate(rows))
            chunks.append(rows)
            done += len(rows)
    plot_mutagenesis(np.concatenate(chunks), sequence, figure, score_name, first, title)
    print(f"{len(sequence)} positions x 3 substitutions scored -> {table}, {figure}")
