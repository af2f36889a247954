"""Variant-effect scores for single-nucleotide variants, and in-silico mutagenesis of a region.

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

Input:
- TSV with columns `position`, `ref`, `alt`, an optional `id`, and either `sequence` (the DNA itself;
  `position` is 1-based in it) or `region` (`chr1:1001-2000` or `chr1`, in `--reference`; `position` is the
  1-based chromosome coordinate and must lie inside the region, which bounds the context the model sees).
- VCF(.gz) with `--reference`: CHROM, POS (1-based), ID, REF, ALT; each ALT allele of a multi-allelic line
  is scored; lines that are not single-nucleotide variants (indels, symbolic alleles) are skipped and counted.
A reference allele that differs from the sequence, a position outside the sequence, or a chromosome missing
from the reference is an error that names the variant and its line.
"""

import argparse
import csv
import gzip
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .attention_maps import pyplot, save_figure
from .embed import (
    DEFAULT_WINDOW,
    base_token_ids,
    embed_sequences,
    length_sorted_batches,
    load_checked,
    load_encoder,
    pad_batch,
)
from .fasta import read_fasta
from .folders import atomic_file
from .modeling_nucel import NucELGenerator
from .modeling_nucel.configuration_nucel import BASE_IDS, BASES, MASK_ID
from .sequence_io import add_one_sequence_arguments, read_one_sequence
from .tokenization import TOKENS_BEFORE_BASES, load_tokenizer, validate_dna, with_special_tokens

REGION = re.compile(r"^(?P<chrom>[^:\s]+)(?::(?P<start>[\d,]+)-(?P<end>[\d,]+))?$")


class VariantError(ValueError):
    """A variant that cannot be scored as given; the message names the variant and where it came from."""


@dataclass(frozen=True)
class Variant:
    name: str  # the user's id, or "chrom:position ref>alt"
    chrom: str  # chromosome or region name; empty for a sequence given inline
    position: int  # 1-based, in the user's coordinates
    ref: str
    alt: str
    context: str  # the sequence the variant sits in (inline sequence, reference region or whole chromosome)
    offset: int  # 0-based index of the variant in `context`
    source: str  # e.g. "variants.tsv line 4", for error messages


def make_variant(name, chrom, position, ref, alt, context, offset, source) -> Variant:
    """A checked single-nucleotide variant: alleles are bases, the position is inside the context, and the
    reference allele is the base there (case-insensitive: soft-masked reference is fine)."""
    ref, alt = ref.strip().upper(), alt.strip().upper()
    label = f"variant {name!r} ({source})"
    for allele, what in ((ref, "reference"), (alt, "alternative")):
        if allele not in BASES:
            raise VariantError(f"{label}: {what} allele {allele!r} is not a single base A, C, G or T")
    if alt == ref:
        raise VariantError(f"{label}: the alternative allele equals the reference allele ({ref})")
    if not 0 <= offset < len(context):
        first = position - offset
        raise VariantError(f"{label}: position {position} is outside the sequence ({first}..{first + len(context) - 1})")
    found = context[offset].upper()
    if found != ref:
        raise VariantError(f"{label}: reference allele {ref} does not match the sequence, which has {found} at position {position}")
    return Variant(name, chrom, position, ref, alt, context, offset, source)


def variant_window(variant: Variant, length: int) -> tuple[str, int]:
    """Up to `length` bases of context around the variant, and the variant's index in that window."""
    start = min(max(variant.offset - length // 2, 0), max(len(variant.context) - length, 0))
    return variant.context[start : start + length], variant.offset - start


# ----------------------------------------------------------------------------------------------------------------
# Reading variants


def other_spelling(chrom: str) -> str:
    """chr1 <-> 1: the two naming conventions of human references."""
    return chrom[3:] if chrom.startswith("chr") else f"chr{chrom}"


def load_reference(path: str | Path, names: set[str]) -> dict[str, str]:
    """The reference sequences named in `names`, or named in the other convention (for the error message
    that says so); the others are read past, not kept."""
    wanted = names | {other_spelling(name) for name in names}
    return {name: sequence for name, sequence in read_fasta(path) if name in wanted}


def reference_sequence(reference: dict[str, str], chrom: str, reference_path, source: str) -> str:
    if chrom in reference:
        return reference[chrom]
    other = other_spelling(chrom)
    hint = f" (it has {other!r}: the two files name chromosomes differently)" if other in reference else ""
    raise VariantError(f"{source}: chromosome {chrom!r} is not in the reference {reference_path}{hint}")


def open_text(path: Path):
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt") if gzipped else open(path)


def is_vcf(path: str | Path) -> bool:
    return str(path).lower().endswith((".vcf", ".vcf.gz"))


def read_vcf(path: str | Path, reference_path: str | Path) -> tuple[list[Variant], int]:
    """Single-nucleotide variants of a VCF, checked against the reference; returns (variants, lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise VariantError(f"{path}: no such file")
    rows, skipped = [], 0
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
            for alt in alts.split(","):
                if len(ref) != 1 or len(alt) != 1 or alt.upper() not in BASES or ref.upper() not in BASES:
                    skipped += 1
                    continue
                name = variant_id if variant_id != "." else f"{chrom}:{position} {ref}>{alt}"
                rows.append((name, chrom, int(position), ref, alt, source))
    reference = load_reference(reference_path, {row[1] for row in rows})
    variants = []
    for name, chrom, position, ref, alt, source in rows:
        sequence = reference_sequence(reference, chrom, reference_path, f"{source}: variant {name!r}")
        variants.append(make_variant(name, chrom, position, ref, alt, sequence, position - 1, source))
    return variants, skipped


def parse_region(region: str, reference: dict[str, str], reference_path, source: str) -> tuple[str, int, str]:
    """`chr1:1001-2000` (1-based, inclusive) or `chr1` -> (chrom, first position, sequence)."""
    match = REGION.match(region.strip())
    if not match:
        raise VariantError(f"{source}: region {region!r} is not CHROM or CHROM:START-END")
    chrom = match["chrom"]
    sequence = reference_sequence(reference, chrom, reference_path, source)
    if match["start"] is None:
        return chrom, 1, sequence
    start, end = int(match["start"].replace(",", "")), int(match["end"].replace(",", ""))
    if not 1 <= start <= end <= len(sequence):
        raise VariantError(f"{source}: region {region!r} is outside {chrom} (1..{len(sequence)}) or empty")
    return chrom, start, sequence[start - 1 : end]


def read_variant_table(path: str | Path, reference_path: str | Path | None = None) -> list[Variant]:
    """Variants from a TSV (see the module docstring for the columns)."""
    path = Path(path)
    if not path.is_file():
        raise VariantError(f"{path}: no such file")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        columns = reader.fieldnames or []
        missing = [c for c in ("position", "ref", "alt") if c not in columns]
        if missing or not {"sequence", "region"} & set(columns):
            raise VariantError(f"{path}: needs columns position, ref, alt and sequence or region; the header is {columns}")
        rows = [(line_number, row) for line_number, row in enumerate(reader, start=2)]
    regions = [row.get("region") for _, row in rows if row.get("region")]
    if regions and reference_path is None:
        raise VariantError(f"{path}: rows give a region, so a reference FASTA is needed (--reference)")
    chroms = {match["chrom"] for region in regions if (match := REGION.match(region.strip()))}
    reference = load_reference(reference_path, chroms) if regions else {}

    variants = []
    for line_number, row in rows:
        source = f"{path} line {line_number}"
        name = row.get("id") or f"line {line_number}"
        position_text = (row["position"] or "").strip()
        if not position_text.lstrip("-").isdigit():
            raise VariantError(f"{source}: variant {name!r}: position {position_text!r} is not an integer")
        position = int(position_text)
        if row.get("region"):
            chrom, first, context = parse_region(row["region"], reference, reference_path, source)
        else:
            chrom, first, context = "", 1, validate_dna(row.get("sequence") or "", source)
        variants.append(make_variant(name, chrom, position, row["ref"] or "", row["alt"] or "", context, position - first, source))
    if not variants:
        raise VariantError(f"{path}: no variants")
    return variants


# ----------------------------------------------------------------------------------------------------------------
# Scores


def load_generator(name_or_path: str, device: str | None = None):
    """The masked-LM generator (`NucELGenerator`) and tokenizer of a generator folder or Hub id."""
    return load_checked(NucELGenerator, name_or_path, device), load_tokenizer(name_or_path)


@torch.inference_mode()
def log_likelihood_ratios(generator, tokenizer, variants: list[Variant], context_length: int = DEFAULT_WINDOW,
                          batch_size: int = 32, progress: bool = True) -> np.ndarray:
    """log P(alt) - log P(ref) at the masked variant position, per variant (see the module docstring)."""
    # Variants at the same site share one masked input (multi-allelic sites, in-silico mutagenesis).
    site_rows, rows, masked_index, variant_rows = {}, [], [], []
    for variant in variants:
        window, index = variant_window(variant, context_length)
        if (window, index) not in site_rows:
            site_rows[window, index] = len(rows)
            ids = with_special_tokens(base_token_ids(tokenizer, window, variant.source))
            ids[TOKENS_BEFORE_BASES + index] = MASK_ID
            rows.append(ids)
            masked_index.append(TOKENS_BEFORE_BASES + index)
        variant_rows.append(site_rows[window, index])

    device = next(generator.parameters()).device
    base_log_probs = np.empty((len(rows), len(BASES)), np.float64)
    for batch in tqdm(length_sorted_batches([len(r) for r in rows], batch_size), desc="llr", unit="batch", disable=not progress):
        input_ids, attention_mask = pad_batch([rows[i] for i in batch], generator.config.pad_token_id)
        hidden = generator.model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).last_hidden_state
        at_mask = hidden[torch.arange(len(batch)), torch.tensor([masked_index[i] for i in batch])]
        logits = generator.logits(at_mask)[:, list(BASE_IDS)].double()
        base_log_probs[batch] = torch.log_softmax(logits, dim=-1).cpu().numpy()

    column = {base: i for i, base in enumerate(BASES)}
    return np.array([
        base_log_probs[row, column[v.alt]] - base_log_probs[row, column[v.ref]] for v, row in zip(variants, variant_rows)
    ])


def embedding_distances(model, tokenizer, variants: list[Variant], context_length: int = DEFAULT_WINDOW,
                        batch_size: int = 32, progress: bool = True) -> np.ndarray:
    """Euclidean distance between mean-pooled embeddings of the reference and alternative contexts."""
    references, alternatives = [], []
    for variant in variants:
        window, index = variant_window(variant, context_length)
        references.append(window)
        alternatives.append(window[:index] + variant.alt + window[index + 1 :])
    unique_references = sorted(set(references))
    # Every window already fits in `context_length`: none is split, so the overlap plays no part.
    embeddings = embed_sequences(
        model, tokenizer, unique_references + alternatives, pooling="mean",
        window=context_length, overlap=0, batch_size=batch_size, progress=progress,
    )
    reference_row = {window: i for i, window in enumerate(unique_references)}
    reference_embeddings = embeddings[[reference_row[w] for w in references]]
    return np.linalg.norm(reference_embeddings - embeddings[len(unique_references):], axis=1)


def score_variants(variants, generator=None, model=None, tokenizer=None, context_length=DEFAULT_WINDOW,
                   batch_size=32, progress=True) -> dict[str, np.ndarray]:
    """{"llr": ..., "embedding_distance": ...} for the models given (at least one)."""
    if generator is None and model is None:
        raise ValueError("scoring needs a generator (llr), an encoder (embedding_distance), or both")
    scores = {}
    if generator is not None:
        scores["llr"] = log_likelihood_ratios(generator, tokenizer, variants, context_length, batch_size, progress)
    if model is not None:
        scores["embedding_distance"] = embedding_distances(model, tokenizer, variants, context_length, batch_size, progress)
    return scores


def write_scores(path: str | Path, variants: list[Variant], scores: dict[str, np.ndarray]) -> None:
    with atomic_file(path) as staging, open(staging, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "chrom", "position", "ref", "alt", *scores])
        for i, v in enumerate(variants):
            writer.writerow([v.name, v.chrom, v.position, v.ref, v.alt, *(f"{scores[k][i]:.6g}" for k in scores)])


# ----------------------------------------------------------------------------------------------------------------
# In-silico mutagenesis


def in_silico_mutagenesis(sequence: str, generator=None, model=None, tokenizer=None, context_length=DEFAULT_WINDOW,
                          batch_size=32, progress=True, first_position: int = 1) -> np.ndarray:
    """Score every single-base substitution of `sequence`: a (length, 4) matrix, columns A, C, G, T.

    With a generator the score is the llr, with an encoder (`model`) the embedding distance. The entry of each
    position's own base is 0 (no change); rows of positions that are not A/C/G/T (N) are NaN.
    """
    if (generator is None) == (model is None):
        raise ValueError("in-silico mutagenesis scores with exactly one of: a generator (llr) or an encoder (embedding distance)")
    sequence = validate_dna(sequence, "the mutagenesis region")
    variants = [
        make_variant(f"{first_position + i}{ref}>{alt}", "", first_position + i, ref, alt, sequence, i, "in-silico mutagenesis")
        for i, ref in enumerate(sequence) if ref in BASES
        for alt in BASES if alt != ref
    ]
    scores = score_variants(variants, generator, model, tokenizer, context_length, batch_size, progress)
    matrix = np.full((len(sequence), len(BASES)), np.nan)
    for i, ref in enumerate(sequence):
        if ref in BASES:
            matrix[i, BASES.index(ref)] = 0.0
    for variant, score in zip(variants, next(iter(scores.values()))):
        matrix[variant.offset, BASES.index(variant.alt)] = score
    return matrix


def plot_mutagenesis(matrix: np.ndarray, sequence: str, path: str | Path, score_name: str, first_position: int = 1, title: str = "") -> None:
    """Heatmap: bases (rows) x positions (columns); the reference base is marked with a dot."""
    plt = pyplot()
    length = len(sequence)
    figure, axes = plt.subplots(figsize=(min(max(6.0, 0.12 * length + 2), 30.0), 2.6))
    if score_name == "llr":  # diverging: harmful (negative) in blue, favoured in red
        limit = np.nanmax(np.abs(matrix)) or 1.0
        image = axes.imshow(matrix.T, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    else:
        image = axes.imshow(matrix.T, aspect="auto", cmap="viridis", interpolation="nearest")
    references = [(i, BASES.index(base)) for i, base in enumerate(sequence.upper()) if base in BASES]
    axes.scatter([i for i, _ in references], [row for _, row in references], s=4, c="black", label="reference base")
    axes.set_yticks(range(len(BASES)), BASES)
    step = max(1, length // 20)
    axes.set_xticks(range(0, length, step), [str(first_position + i) for i in range(0, length, step)])
    axes.set_xlabel("position")
    axes.set_title(title or f"in-silico mutagenesis ({score_name})")
    figure.colorbar(image, ax=axes, label=score_name, fraction=0.03)
    figure.tight_layout()
    save_figure(figure, path)


def write_mutagenesis(path: str | Path, matrix: np.ndarray, sequence: str, first_position: int = 1) -> None:
    with atomic_file(path) as staging, open(staging, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["position", "ref", *BASES])
        for i, (base, row) in enumerate(zip(sequence, matrix)):
            writer.writerow([first_position + i, base, *(f"{value:.6g}" for value in row)])


# ----------------------------------------------------------------------------------------------------------------
# Command line


def add_parser(subparsers) -> None:
    score = subparsers.add_parser(
        "score-variants",
        help="variant-effect scores (generator llr, embedding distance) for a TSV or VCF",
        description=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    score.add_argument("--variants", required=True, help="TSV (position, ref, alt, sequence or region) or VCF(.gz)")
    score.add_argument("--reference", help="reference FASTA(.gz), for a VCF or TSV regions")
    add_model_arguments(score)
    score.add_argument("-o", "--output", required=True, help="output TSV")
    score.set_defaults(func=run_score_variants)

    ism = subparsers.add_parser(
        "ism",
        help="in-silico mutagenesis of a region: every base to every other base, as a matrix and a plot",
        description="Scores every substitution of a sequence with the generator (llr) or an encoder (embedding "
        "distance); writes OUTPUT.tsv (position, ref, A, C, G, T) and OUTPUT.png.",
    )
    where = add_one_sequence_arguments(ism)
    where.add_argument("--region", help="CHROM:START-END (1-based, inclusive) in --reference")
    ism.add_argument("--reference", help="reference FASTA(.gz), for --region")
    add_model_arguments(ism)
    ism.add_argument("-o", "--output", required=True, help="output prefix: writes OUTPUT.tsv and OUTPUT.png")
    ism.set_defaults(func=run_ism)


def add_model_arguments(parser) -> None:
    parser.add_argument("--generator", help="generator (masked LM) folder or Hub id: the llr score")
    parser.add_argument("--model", help="encoder folder or Hub id: the embedding_distance score")
    parser.add_argument("--context", type=int, default=DEFAULT_WINDOW, help="bases of context around each variant")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")


def load_models(args):
    if not (args.generator or args.model):
        raise VariantError("give --generator (llr), --model (embedding distance) or both")
    generator = model = tokenizer = None
    if args.generator:
        generator, tokenizer = load_generator(args.generator, args.device)
    if args.model:
        model, tokenizer = load_encoder(args.model, args.device)
    return generator, model, tokenizer


def run_score_variants(args) -> None:
    skipped = 0
    if is_vcf(args.variants):
        if not args.reference:
            raise VariantError(f"{args.variants}: a VCF needs the reference FASTA (--reference)")
        variants, skipped = read_vcf(args.variants, args.reference)
    else:
        variants = read_variant_table(args.variants, args.reference)
    generator, model, tokenizer = load_models(args)
    scores = score_variants(variants, generator, model, tokenizer, args.context, args.batch_size)
    write_scores(args.output, variants, scores)
    note = f" ({skipped} VCF allele(s) that are not single-nucleotide variants skipped)" if skipped else ""
    print(f"{len(variants)} variants scored -> {args.output}{note}")


def run_ism(args) -> None:
    chrom, first = "", 1
    if args.region:
        if not args.reference:
            raise VariantError("--region needs --reference")
        match = REGION.match(args.region.strip())
        reference = load_reference(args.reference, {match["chrom"]} if match else set())
        chrom, first, sequence = parse_region(args.region, reference, args.reference, "--region")
    else:
        sequence = read_one_sequence(args.sequence, args.fasta, args.record)
    if args.generator and args.model:
        raise VariantError("in-silico mutagenesis scores with one model: give --generator or --model, not both")
    generator, model, tokenizer = load_models(args)
    matrix = in_silico_mutagenesis(sequence, generator, model, tokenizer, args.context, args.batch_size, first_position=first)
    score_name = "llr" if generator is not None else "embedding_distance"
    title = f"in-silico mutagenesis of {chrom + ':' if chrom else ''}{first}-{first + len(sequence) - 1} ({score_name})"
    write_mutagenesis(f"{args.output}.tsv", matrix, sequence, first)
    plot_mutagenesis(matrix, sequence, f"{args.output}.png", score_name, first, title)
    print(f"{len(sequence)} positions x 3 substitutions scored -> {args.output}.tsv, {args.output}.png")
