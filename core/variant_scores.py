"""Variant-effect scores of single-nucleotide variants, and in-silico mutagenesis of a sequence.

Scores:
- `llr` (needs the generator, a masked LM): the variant's base is replaced by [MASK] in its reference
  context and llr = log P(alt) - log P(ref), with the generator's probabilities renormalised over A, C, G, T.
  Negative: the model finds the alternative allele less likely than the reference. The masked input is the
  same for ref and alt, so swapping them negates the score exactly.
- `embedding_distance` (needs the discriminator/encoder): the Euclidean distance between the mean-pooled
  final-layer embeddings of the reference context and the same context carrying the alternative allele.
- `replaced_probability` (needs the discriminator with its RTD head, as pre-training exports it in
  export/discriminator_rtd): the discriminator's probability that the variant's base was replaced, read from one
  forward pass on the window carrying the alternative allele minus that of one on the reference window (no
  masking): p_replaced(ALT) - p_replaced(REF). Higher: the ALT base looks more like a replacement than the REF
  base does in the same context, taken as more damaging. Swapping ref and alt negates it exactly.
The context is `context_length` bases centred on the variant where the sequence allows (shifted at its ends).
With `reverse_complement_average=True` each score is also computed on the reverse complement of that window
(complemented alleles) and the two are averaged: the llr and the replaced probability of the two strands' scores,
the distance between the embeddings averaged over both strands (as `nucel embed --reverse-complement` averages them).

Each checked row has a `status`: `ok` (scored), `not_snv` (an indel, a symbolic or `.` allele, ALT equal to REF),
`missing_contig` (the chromosome is not in the reference), `outside_contig` (the position is past the chromosome's
end, or outside the row's region), `ref_is_n` (REF is N, or the reference has N or another ambiguity code there) or
`ref_mismatch` (REF is not the reference base; soft-masked lowercase matches).
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

import numpy as np
import torch
from tqdm.auto import tqdm

from nucel.core.embeddings import READ_AHEAD_BATCHES, embed_sequences
from nucel.core.models import load_checked, resolve_model_folder
from nucel.core.regions import RegionError, other_spelling
from nucel.core.windows import DEFAULT_WINDOW, base_token_ids, length_sorted_batches, pad_batch
from nucel.modeling_nucel import NucELForReplacedTokenDetection, NucELGenerator
from nucel.modeling_nucel.configuration_nucel import BASE_IDS, BASES, MASK_ID
from nucel.tokenization import (
    TOKENS_BEFORE_BASES,
    load_tokenizer,
    reverse_complement,
    with_special_tokens,
)


class VariantError(RegionError):
    """A variant that cannot be scored as given; the message names the variant and where it came from."""


@dataclass(frozen=True)
class Variant:
    name: str  # the user's id, or "chrom:position ref>alt"
    chrom: str  # chromosome or region name; empty for a sequence given inline
    position: int  # 1-based, in the user's coordinates
    ref: str
    alt: str
    context: str  # the sequence the variant sits in (inline sequence, or a ReferenceSlice read on demand)
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
    reference_base: str = ""  # the reference's base where it differs from REF (ref_mismatch, ref_is_n), else ""


def check_variant(name, chrom, position, ref, alt, context: str | None, offset, source) -> VariantRow:
    """A row checked as a single-nucleotide variant in `context` (None: the chromosome is not in the reference):
    "ok" when the alleles are bases, the position is inside the context and the reference allele is the base
    there (case-insensitive: soft-masked reference is fine); otherwise the status that says why not."""
    ref, alt = ref.strip().upper(), alt.strip().upper()
    label = f"variant {name!r} ({source})"

    def row(status: str, reason: str = "", reference_base: str = "") -> VariantRow:
        variant = Variant(name, chrom, position, ref, alt, context, offset, source) if status == "ok" else None
        message = f"{label}: {reason}" if reason else ""
        return VariantRow(name, chrom, position, ref, alt, status, source, variant, message, reference_base)

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
        return row(
            "outside_contig", f"position {position} is outside the sequence ({first}..{first + len(context) - 1})"
        )
    found = context[offset].upper()
    if found != ref:
        reason = f"reference allele {ref} does not match the sequence, which has {found} at position {position}"
        return row("ref_mismatch" if found in BASES else "ref_is_n", reason, found)
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
    return Variant(
        variant.name,
        variant.chrom,
        variant.position,
        reverse_complement(variant.ref),
        reverse_complement(variant.alt),
        reverse_complement(window),
        len(window) - 1 - index,
        variant.source,
    )


# ----------------------------------------------------------------------------------------------------------------
# Scores


def load_generator(name_or_path: str, device: str | None = None):
    """The masked-LM generator (`NucELGenerator`) and tokenizer of a generator folder or Hub id."""
    return load_checked(NucELGenerator, name_or_path, device), load_tokenizer(resolve_model_folder(name_or_path))


def load_detector(name_or_path: str, device: str | None = None):
    """The discriminator with its RTD head (`NucELForReplacedTokenDetection`) and tokenizer of a folder or Hub id.
    A model without the head (a plain encoder such as the released NucEL-93M, a generator, a classifier) is refused:
    transformers would give it a random head, and with it meaningless scores."""
    try:
        detector = load_checked(NucELForReplacedTokenDetection, name_or_path, device)
    except ValueError as error:
        if "has no weights for" not in str(error):
            raise
        raise ValueError(
            f"{name_or_path} has no RTD head (rtd_head, rtd_classifier), so it cannot give the "
            "replaced_probability score: give the discriminator that pre-training exports with its head, "
            "export/discriminator_rtd of a nucel pretrain run"
        ) from None
    return detector, load_tokenizer(resolve_model_folder(name_or_path))


@torch.inference_mode()
def log_likelihood_ratios(
    generator,
    tokenizer,
    variants: list[Variant],
    context_length: int = DEFAULT_WINDOW,
    batch_size: int = 32,
    progress: bool = True,
    reverse_complement_average: bool = False,
) -> np.ndarray:
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
    for batch in tqdm(
        length_sorted_batches([len(r) for r in rows], batch_size), desc="llr", unit="batch", disable=not progress
    ):
        input_ids, attention_mask = pad_batch([rows[i] for i in batch], generator.config.pad_token_id)
        hidden = generator.model(
            input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)
        ).last_hidden_state
        at_mask = hidden[torch.arange(len(batch)), torch.tensor([masked_index[i] for i in batch])]
        logits = generator.logits(at_mask)[:, list(BASE_IDS)].double()
        base_log_probs[batch] = torch.log_softmax(logits, dim=-1).cpu().numpy()

    column = {base: i for i, base in enumerate(BASES)}
    return np.array(
        [
            base_log_probs[row, column[v.alt]] - base_log_probs[row, column[v.ref]]
            for v, row in zip(variants, variant_rows)
        ]
    )


def embedding_distances(
    model,
    tokenizer,
    variants: list[Variant],
    context_length: int = DEFAULT_WINDOW,
    batch_size: int = 32,
    progress: bool = True,
    reverse_complement_average: bool = False,
) -> np.ndarray:
    """Euclidean distance between mean-pooled embeddings of the reference and alternative contexts."""
    references, alternatives = [], []
    for variant in variants:
        window, index = variant_window(variant, context_length)
        references.append(window)
        alternatives.append(window[:index] + variant.alt + window[index + 1 :])
    unique_references = sorted(set(references))
    # Every window already fits in `context_length`: none is split, so the overlap plays no part.
    embeddings = embed_sequences(
        model,
        tokenizer,
        unique_references + alternatives,
        pooling="mean",
        window=context_length,
        overlap=0,
        batch_size=batch_size,
        progress=progress,
        reverse_complement_average=reverse_complement_average,
    )
    reference_row = {window: i for i, window in enumerate(unique_references)}
    reference_embeddings = embeddings[[reference_row[w] for w in references]]
    return np.linalg.norm(reference_embeddings - embeddings[len(unique_references) :], axis=1)


@torch.inference_mode()
def replaced_probabilities(
    detector,
    tokenizer,
    variants: list[Variant],
    context_length: int = DEFAULT_WINDOW,
    batch_size: int = 32,
    progress: bool = True,
    reverse_complement_average: bool = False,
) -> np.ndarray:
    """p_replaced(ALT) - p_replaced(REF) at the variant's token, per variant: the sigmoid of the RTD head's logit
    there, from one unmasked forward pass on the window carrying the alternative allele and one on the reference
    window. Higher: the ALT base looks more like a replacement, taken as more damaging (module docstring)."""
    if reverse_complement_average:
        both = [*variants, *(reverse_complement_variant(v, context_length) for v in variants)]
        scores = replaced_probabilities(detector, tokenizer, both, context_length, batch_size, progress)
        return (scores[: len(variants)] + scores[len(variants) :]) / 2
    # One forward pass per distinct window: the alleles of one site (multi-allelic sites, in-silico mutagenesis)
    # share their reference window.
    input_row, rows, token_index, pairs = {}, [], [], []

    def row_of(window: str, index: int, source: str) -> int:
        if (window, index) not in input_row:
            input_row[window, index] = len(rows)
            rows.append(with_special_tokens(base_token_ids(tokenizer, window, source)))
            token_index.append(TOKENS_BEFORE_BASES + index)  # [CLS] comes before the first base
        return input_row[window, index]

    for variant in variants:
        window, index = variant_window(variant, context_length)
        alternative = window[:index] + variant.alt + window[index + 1 :]
        pairs.append((row_of(window, index, variant.source), row_of(alternative, index, variant.source)))

    device = next(detector.parameters()).device
    probability = np.empty(len(rows), np.float64)
    batches = length_sorted_batches([len(r) for r in rows], batch_size)
    for batch in tqdm(batches, desc="replaced probability", unit="batch", disable=not progress):
        input_ids, attention_mask = pad_batch([rows[i] for i in batch], detector.config.pad_token_id)
        logits = detector(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
        at_variant = logits[torch.arange(len(batch)), torch.tensor([token_index[i] for i in batch])]
        probability[batch] = torch.sigmoid(at_variant.double()).cpu().numpy()
    return np.array([probability[alternative] - probability[reference] for reference, alternative in pairs])


def score_variants(
    variants,
    generator=None,
    model=None,
    tokenizer=None,
    context_length=DEFAULT_WINDOW,
    batch_size=32,
    progress=True,
    detector=None,
) -> dict[str, np.ndarray]:
    """{"llr": ..., "embedding_distance": ..., "replaced_probability": ...} for the models given (at least one)."""
    if generator is None and model is None and detector is None:
        raise ValueError(
            "scoring needs a generator (llr), an encoder (embedding_distance), a discriminator with its "
            "RTD head (replaced_probability), or several of them"
        )
    scores = {}
    if generator is not None:
        scores["llr"] = log_likelihood_ratios(generator, tokenizer, variants, context_length, batch_size, progress)
    if model is not None:
        scores["embedding_distance"] = embedding_distances(
            model, tokenizer, variants, context_length, batch_size, progress
        )
    if detector is not None:
        scores["replaced_probability"] = replaced_probabilities(
            detector, tokenizer, variants, context_length, batch_size, progress
        )
    return scores


def scored_rows(
    rows: Iterable[VariantRow],
    generator=None,
    model=None,
    tokenizer=None,
    context_length=DEFAULT_WINDOW,
    batch_size=32,
    progress=True,
    detector=None,
) -> Iterator[tuple[VariantRow, dict[str, float]]]:
    """Each row in input order with its scores ({} for rows that are not "ok"), scored a few batches at a time, so
    that memory does not grow with the number of variants."""
    rows = iter(rows)
    with tqdm(desc="scoring", unit="variant", unit_scale=True, disable=not progress) as bar:
        while chunk := list(islice(rows, batch_size * READ_AHEAD_BATCHES)):
            variants = [row.variant for row in chunk if row.status == "ok"]
            scores = (
                score_variants(variants, generator, model, tokenizer, context_length, batch_size, False, detector)
                if variants
                else {}
            )
            scored = iter(range(len(variants)))
            for row in chunk:
                index = next(scored) if row.status == "ok" else None
                yield row, {} if index is None else {name: float(values[index]) for name, values in scores.items()}
            bar.update(len(chunk))
