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
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from nucel.attention_maps import pyplot, save_figure
from nucel.embed import (
    DEFAULT_WINDOW,
    READ_AHEAD_BATCHES,
    base_token_ids,
    embed_sequences,
    interruption_reported,
    length_sorted_batches,
    load_checked,
    load_encoder,
    pad_batch,
    resolve_model_folder,
)
from nucel.fasta import read_fasta
from nucel.folders import atomic_file
from nucel.modeling_nucel import NucELGenerator
from nucel.modeling_nucel.configuration_nucel import BASE_IDS, BASES, MASK_ID
from nucel.sequence_io import read_one_sequence
from nucel.tokenization import TOKENS_BEFORE_BASES, load_tokenizer, reverse_complement, validate_dna, with_special_tokens

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


STATUSES = ("ok", "not_snv", "missing_contig", "outside_contig", "ref_is_n", "ref_mismatch")


@dataclass(frozen=True)
class VariantRow:
    """One input row (one ALT allele of a VCF line) and what became of it: the `variant` to score when `status` is
    "ok", else `reason`, a sentence naming the row and what is wrong with it."""

    name: str
    chrom: str
    position: int
    ref: str  # upper-cased, as given otherwise (an indel's REF stays whole)
    alt: str
    status: str
    source: str
    variant: Variant | None = None
    reason: str = ""


def check_variant(name, chrom, position, ref, alt, context: str | None, offset, source) -> VariantRow:
    """A row checked as a single-nucleotide variant in `context` (None: the chromosome is not in the reference):
    "ok" when the alleles are bases, the position is inside the context and the reference allele is the base
    there (case-insensitive: soft-masked reference is fine); otherwise the status that says why not."""
    ref, alt = ref.strip().upper(), alt.strip().upper()
    label = f"variant {name!r} ({source})"

    def row(status: str, reason: str = "") -> VariantRow:
        variant = Variant(name, chrom, position, ref, alt, context, offset, source) if status == "ok" else None
        return VariantRow(name, chrom, position, ref, alt, status, source, variant, f"{label}: {reason}" if reason else "")

    if ref == "N" and alt in BASES:
        return row("ref_is_n", "the reference allele is N")
    for allele, what in ((ref, "reference"), (alt, "alternative")):
        if allele not in BASES:
            return row("not_snv", f"{what} allele {allele!r} is not a single base A, C, G or T")
    if alt == ref:
        return row("not_snv", f"the alternative allele equals the reference allele ({ref})")
    if context is None:
        return row("missing_contig", f"chromosome {chrom!r} is not in the reference (nor {other_spelling(chrom)!r})")
    if not 0 <= offset < len(context):
        first = position - offset
        return row("outside_contig", f"position {position} is outside the sequence ({first}..{first + len(context) - 1})")
    found = context[offset].upper()
    if found != ref:
        reason = f"reference allele {ref} does not match the sequence, which has {found} at position {position}"
        return row("ref_mismatch" if found in BASES else "ref_is_n", reason)
    return row("ok")


def make_variant(name, chrom, position, ref, alt, context, offset, source) -> Variant:
    """A checked single-nucleotide variant (`check_variant`); anything else is a VariantError naming it."""
    row = check_variant(name, chrom, position, ref, alt, context, offset, source)
    if row.status != "ok":
        raise VariantError(row.reason)
    return row.variant


def variant_window(variant: Variant, length: int) -> tuple[str, int]:
    """Up to `length` bases of context around the variant, and the variant's index in that window."""
    start = min(max(variant.offset - length // 2, 0), max(len(variant.context) - length, 0))
    return variant.context[start : start + length], variant.offset - start


def reverse_complement_variant(variant: Variant, length: int) -> Variant:
    """The same variant read on the other strand: its window of `length` bases reverse-complemented, alleles
    complemented. Its own window of `length` bases is that whole reverse-complemented window."""
    window, index = variant_window(variant, length)
    return Variant(variant.name, variant.chrom, variant.position, reverse_complement(variant.ref),
                   reverse_complement(variant.alt), reverse_complement(window), len(window) - 1 - index, variant.source)


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


class ReferenceGenome:
    """The chromosomes of a reference FASTA(.gz), read on demand and one at a time. Reading goes on from where it
    stopped, so variants sorted like the reference cost one pass over it; a jump back costs a pass from the start.
    A name that is not in the reference is looked up in the other convention (chr1 <-> 1), counted in `renamed`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records = read_fasta(self.path)
        self.name = self.sequence = None  # the chromosome held now
        self.seen: set[str] = set()
        self.names: set[str] | None = None  # every record name, once a pass has reached the end
        self.renamed: Counter = Counter()  # (name asked for, name in the reference) -> lookups

    def get(self, chrom: str) -> str | None:
        """The sequence of `chrom` (or of its other spelling), None when the reference has neither."""
        for candidate in (chrom, other_spelling(chrom)):
            sequence = self._find(candidate)
            if sequence is not None:
                if candidate != chrom:
                    self.renamed[chrom, candidate] += 1
                return sequence
        return None

    def _find(self, name: str) -> str | None:
        if name == self.name:
            return self.sequence
        for _ in range(2):  # on from here to the end, then once more from the start
            if self.names is not None and name not in self.names:
                return None
            for record_name, sequence in self.records:
                self.seen.add(record_name)
                if record_name == name:
                    self.name, self.sequence = record_name, sequence
                    return sequence
            self.names = self.seen
            self.records = read_fasta(self.path)
        return None


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


def region_bounds(region: str, source: str) -> tuple[str, int | None, int | None]:
    """`chr1:1001-2000` (1-based, inclusive) -> ("chr1", 1001, 2000); `chr1` -> ("chr1", None, None)."""
    match = REGION.match(region.strip())
    if not match:
        raise VariantError(f"{source}: region {region!r} is not CHROM or CHROM:START-END")
    if match["start"] is None:
        return match["chrom"], None, None
    return match["chrom"], int(match["start"].replace(",", "")), int(match["end"].replace(",", ""))


def parse_region(region: str, reference: dict[str, str], reference_path, source: str) -> tuple[str, int, str]:
    """`chr1:1001-2000` (1-based, inclusive) or `chr1` -> (chrom, first position, sequence)."""
    chrom, start, end = region_bounds(region, source)
    sequence = reference_sequence(reference, chrom, reference_path, source)
    if start is None:
        return chrom, 1, sequence
    if not 1 <= start <= end <= len(sequence):
        raise VariantError(f"{source}: region {region!r} is outside {chrom} (1..{len(sequence)}) or empty")
    return chrom, start, sequence[start - 1 : end]


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
# Scores


def load_generator(name_or_path: str, device: str | None = None):
    """The masked-LM generator (`NucELGenerator`) and tokenizer of a generator folder or Hub id."""
    return load_checked(NucELGenerator, name_or_path, device), load_tokenizer(resolve_model_folder(name_or_path))


@torch.inference_mode()
def log_likelihood_ratios(generator, tokenizer, variants: list[Variant], context_length: int = DEFAULT_WINDOW,
                          batch_size: int = 32, progress: bool = True, reverse_complement_average: bool = False) -> np.ndarray:
    """log P(alt) - log P(ref) at the masked variant position, per variant (see the module docstring)."""
    if reverse_complement_average:
        both = [*variants, *(reverse_complement_variant(v, context_length) for v in variants)]
        scores = log_likelihood_ratios(generator, tokenizer, both, context_length, batch_size, progress)
        return (scores[: len(variants)] + scores[len(variants) :]) / 2
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
                        batch_size: int = 32, progress: bool = True, reverse_complement_average: bool = False) -> np.ndarray:
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
        reverse_complement_average=reverse_complement_average,
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


def scored_rows(rows: Iterable[VariantRow], generator=None, model=None, tokenizer=None, context_length=DEFAULT_WINDOW,
                batch_size=32, progress=True) -> Iterator[tuple[VariantRow, dict[str, float]]]:
    """Each row in input order with its scores ({} for rows that are not "ok"), scored a few batches at a time, so
    that memory does not grow with the number of variants."""
    rows = iter(rows)
    with tqdm(desc="scoring", unit="variant", unit_scale=True, disable=not progress) as bar:
        while chunk := list(islice(rows, batch_size * READ_AHEAD_BATCHES)):
            variants = [row.variant for row in chunk if row.status == "ok"]
            scores = score_variants(variants, generator, model, tokenizer, context_length, batch_size, False) if variants else {}
            scored = iter(range(len(variants)))
            for row in chunk:
                index = next(scored) if row.status == "ok" else None
                yield row, {} if index is None else {name: float(values[index]) for name, values in scores.items()}
            bar.update(len(chunk))


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


# ----------------------------------------------------------------------------------------------------------------
# In-silico mutagenesis


def mutagenesis_chunks(sequence: str, generator=None, model=None, tokenizer=None, context_length=DEFAULT_WINDOW,
                       batch_size=32, progress=True, first_position: int = 1) -> Iterator[np.ndarray]:
    """The rows of `in_silico_mutagenesis`' matrix in order, a few batches of positions at a time."""
    if (generator is None) == (model is None):
        raise ValueError("in-silico mutagenesis scores with exactly one of: a generator (llr) or an encoder (embedding distance)")
    sequence = validate_dna(sequence, "the mutagenesis region")
    step = max(1, batch_size * READ_AHEAD_BATCHES // (len(BASES) - 1))  # positions per chunk: three variants each
    with tqdm(total=len(sequence), desc="mutagenesis", unit="bp", unit_scale=True, disable=not progress) as bar:
        for start in range(0, len(sequence), step):
            end = min(start + step, len(sequence))
            rows = np.full((end - start, len(BASES)), np.nan)
            variants = []
            for i in range(start, end):
                ref = sequence[i]
                if ref in BASES:
                    rows[i - start, BASES.index(ref)] = 0.0
                    variants += [make_variant(f"{first_position + i}{ref}>{alt}", "", first_position + i, ref, alt, sequence, i,
                                              "in-silico mutagenesis") for alt in BASES if alt != ref]
            if variants:
                scores = next(iter(score_variants(variants, generator, model, tokenizer, context_length, batch_size, False).values()))
                for variant, score in zip(variants, scores):
                    rows[variant.offset - start, BASES.index(variant.alt)] = score
            bar.update(end - start)
            yield rows


def in_silico_mutagenesis(sequence: str, generator=None, model=None, tokenizer=None, context_length=DEFAULT_WINDOW,
                          batch_size=32, progress=True, first_position: int = 1) -> np.ndarray:
    """Score every single-base substitution of `sequence`: a (length, 4) matrix, columns A, C, G, T.

    With a generator the score is the llr, with an encoder (`model`) the embedding distance. The entry of each
    position's own base is 0 (no change); rows of positions that are not A/C/G/T (N) are NaN.
    """
    return np.concatenate(list(mutagenesis_chunks(sequence, generator, model, tokenizer, context_length, batch_size, progress,
                                                  first_position)))


# What each score means, for the colour bar (label) and the title (how to read the colours).
SCORE_LABELS = {
    "llr": ("llr = ln P(alt) - ln P(ref)",
            "llr: the generator's log-likelihood ratio of the substituted base at the masked position; "
            "blue < 0: less likely than the reference base, red > 0: more likely"),
    "embedding_distance": ("embedding distance (Euclidean)",
                           "embedding distance: how far the substitution moves the mean embedding of its context; "
                           "0 = no change, brighter = larger change"),
}


def mutagenesis_figure(matrix: np.ndarray, sequence: str, score_name: str, first_position: int = 1, title: str = ""):
    """Heatmap: substituted bases (rows) x positions (columns), positions on a base-pair axis from `first_position`.

    The reference base of each position is marked with a dot (its score is 0 by definition). Positions that are not
    A/C/G/T (N and other ambiguity codes) have no scores (NaN rows): they are drawn grey and named in the legend, with
    no NaN ever reaching a colour scale, so an N region draws without warnings.
    """
    from matplotlib.patches import Patch

    plt = pyplot()
    length = len(sequence)
    scored = np.isfinite(matrix)
    values = np.ma.masked_invalid(matrix.T)
    colour_label, reading = SCORE_LABELS.get(score_name, (score_name, score_name))
    figure, axes = plt.subplots(figsize=(min(max(6.0, 0.12 * length + 2), 30.0), 3.2))
    if score_name == "llr":  # diverging around 0: disfavoured (negative) in blue, favoured in red
        limit = float(np.abs(matrix[scored]).max()) if scored.any() else 0.0
        colour_map, low, high = "RdBu_r", -(limit or 1.0), limit or 1.0
    else:
        colour_map, low = "viridis", 0.0
        high = (float(matrix[scored].max()) if scored.any() else 0.0) or 1.0
    image = axes.imshow(values, aspect="auto", cmap=plt.get_cmap(colour_map).with_extremes(bad="lightgrey"),
                        vmin=low, vmax=high, interpolation="nearest")
    references = [(i, BASES.index(base)) for i, base in enumerate(sequence.upper()) if base in BASES]
    handles = [axes.scatter([i for i, _ in references], [row for _, row in references], s=4, c="black",
                            label="reference base (score 0 by definition)")]
    unscored = [i for i, base in enumerate(sequence.upper()) if base not in BASES]
    if unscored:
        handles.append(Patch(facecolor="lightgrey", edgecolor="none",
                             label=f"not scored: {len(unscored)} position(s) that are N or another non-ACGT code"))
    axes.set_yticks(range(len(BASES)), BASES)
    axes.set_ylabel("substituted base")
    step = max(1, length // 20)
    axes.set_xticks(range(0, length, step), [f"{first_position + i:,}" for i in range(0, length, step)])
    axes.set_xlabel("position (bp, 1-based)")
    axes.set_title(f"{title or f'in-silico mutagenesis ({score_name})'}\n{reading}", fontsize=9, wrap=True)
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, -0.28), ncol=2, fontsize=7, frameon=False)
    figure.colorbar(image, ax=axes, label=colour_label, fraction=0.03)
    figure.tight_layout()
    return figure


def plot_mutagenesis(matrix: np.ndarray, sequence: str, path: str | Path, score_name: str, first_position: int = 1, title: str = "") -> None:
    """`mutagenesis_figure` saved as a PNG at `path`."""
    save_figure(mutagenesis_figure(matrix, sequence, score_name, first_position, title), path)


MUTAGENESIS_COLUMNS = ["position", "ref", *BASES]


def mutagenesis_line(position: int, base: str, row: np.ndarray) -> list:
    return [position, base, *(f"{value:.6g}" for value in row)]


def write_mutagenesis(path: str | Path, matrix: np.ndarray, sequence: str, first_position: int = 1) -> None:
    with atomic_file(path) as staging, open(staging, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(MUTAGENESIS_COLUMNS)
        for i, (base, row) in enumerate(zip(sequence, matrix)):
            writer.writerow(mutagenesis_line(first_position + i, base, row))

# ----------------------------------------------------------------------------------------------------------------
# Command line


def load_models(args):
    if not (args.generator or args.model):
        raise VariantError("give --generator (llr), --model (embedding distance) or both")
    if args.context < 1 or args.batch_size < 1:
        raise VariantError(f"--context and --batch-size must be at least 1, got {args.context} and {args.batch_size}")
    generator = model = tokenizer = None
    if args.generator:
        generator, tokenizer = load_generator(args.generator, args.device)
    if args.model:
        model, tokenizer = load_encoder(args.model, args.device)
    return generator, model, tokenizer


def run_score_variants(args) -> None:
    output = Path(args.output)
    if output.is_dir():
        raise VariantError(f"{output} is a directory; -o/--output names the TSV file to write")
    reference = ReferenceGenome(args.reference) if args.reference else None
    if is_vcf(args.variants):
        if reference is None:
            raise VariantError(f"{args.variants}: a VCF needs the reference FASTA (--reference)")
        rows = vcf_rows(args.variants, reference, args.strict)
    else:
        rows = table_rows(args.variants, reference, args.strict)
    generator, model, tokenizer = load_models(args)
    score_names = [name for name, given in (("llr", generator), ("embedding_distance", model)) if given is not None]
    with interruption_reported("score-variants", output):
        counts = write_scored_rows(output, scored_rows(rows, generator, model, tokenizer, args.context, args.batch_size), score_names)
    unscored = "; rows that are not ok have no scores, and their status says why" if set(counts) - {"ok"} else ""
    print(f"{counts['ok']} variants scored -> {output} ({status_summary(counts, reference)}{unscored})")


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
    score_name = "llr" if generator is not None else "embedding_distance"
    title = f"in-silico mutagenesis of {chrom + ':' if chrom else ''}{first}-{first + len(sequence) - 1} ({score_name})"
    table = Path(f"{args.output}.tsv")
    chunks = []
    with interruption_reported("ism", table), atomic_file(table) as staging, open(staging, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(MUTAGENESIS_COLUMNS)
        done = 0
        for rows in mutagenesis_chunks(sequence, generator, model, tokenizer, args.context, args.batch_size, first_position=first):
            writer.writerows(mutagenesis_line(first + done + i, sequence[done + i], row) for i, row in enumerate(rows))
            chunks.append(rows)
            done += len(rows)
    plot_mutagenesis(np.concatenate(chunks), sequence, f"{args.output}.png", score_name, first, title)
    print(f"{len(sequence)} positions x 3 substitutions scored -> {table}, {args.output}.png")
