"""What `nucel score-variants` writes, chosen by the output's extension, and the tracks beside it.

- `.tsv` (or any other name): id, chrom, position, ref, alt, status, the scores, reference_base (the reference's
  base where it differs from REF: ref_mismatch and ref_is_n rows).
- `.vcf`, `.vcf.gz`, `.bcf`: every input record as it was, with INFO fields added: NUCEL_LLR,
  NUCEL_EMBEDDING_DISTANCE, NUCEL_REPLACED_PROBABILITY and NUCEL_STATUS, one value per ALT (Number=A; `.` where
  an allele has no score), and NUCEL_REFERENCE_BASE where the reference's base differs from REF. The ##INFO lines
  name the model and its sha256 (core/identity.py). A .vcf.gz is bgzip-compressed and indexed (.tbi) when its
  records are sorted.
- Tracks (bigWig + bedGraph, core/tracks.py), one per score, at each scored variant's position in the reference's
  coordinates: `scores.llr.bw`, `scores.llr.bedgraph` beside `scores.tsv`. Several ALTs at one position are
  combined by their mean (the same summary as `nucel ism`'s mean track).
"""

import csv
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from nucel.core.files import atomic_file, ordinary_permissions
from nucel.core.references import Reference
from nucel.core.tracks import write_track
from nucel.core.variant_scores import STATUSES, VariantRow

VCF_OUTPUT_SUFFIXES = (".vcf", ".vcf.gz", ".bcf")
OUTPUT_SUFFIXES = (".tsv", *VCF_OUTPUT_SUFFIXES)
INFO_IDS = {
    "llr": "NUCEL_LLR",
    "embedding_distance": "NUCEL_EMBEDDING_DISTANCE",
    "replaced_probability": "NUCEL_REPLACED_PROBABILITY",
}
SCORE_MEANINGS = {
    "llr": "ln P(alt) - ln P(ref) of the masked variant base under the generator",
    "embedding_distance": "Euclidean distance between the mean-pooled embeddings of the reference and alternative "
    "contexts",
    "replaced_probability": "p_replaced(alt) - p_replaced(ref): the discriminator's probability that the variant "
    "base was replaced, in the alternative context minus in the reference context (higher: "
    "the alternative base looks more like a replacement, more damaging)",
}


def output_kind(path: str | Path) -> str:
    """ "vcf", "vcf.gz" or "bcf" by the output's extension; "tsv" for any other name."""
    name = str(path).lower()
    return next((suffix[1:] for suffix in VCF_OUTPUT_SUFFIXES if name.endswith(suffix)), "tsv")


def output_stem(path: str | Path) -> Path:
    """The output without its extension, where the tracks go: scores.vcf.gz -> scores."""
    path = Path(path)
    name = next((path.name[: -len(s)] for s in OUTPUT_SUFFIXES if path.name.lower().endswith(s)), path.stem)
    return path.with_name(name)


def formatted(scores: dict[str, float], name: str) -> str:
    return f"{scores[name]:.6g}" if name in scores else ""


def write_scored_table(
    path: str | Path, scored: Iterable[tuple[VariantRow, dict[str, float]]], score_names: list[str]
) -> Counter:
    """Write the rows as they come (TSV); returns rows per status."""
    counts = Counter()
    with atomic_file(path) as staging, open(staging, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "chrom", "position", "ref", "alt", "status", *score_names, "reference_base"])
        for row, scores in scored:
            writer.writerow(
                [
                    row.name,
                    row.chrom,
                    row.position,
                    row.ref,
                    row.alt,
                    row.status,
                    *(formatted(scores, name) for name in score_names),
                    row.reference_base,
                ]
            )
            counts[row.status] += 1
    return counts


def info_header_lines(score_names: list[str], models: dict[str, str]) -> list[str]:
    """The ##INFO lines of the scores; `models`: score name -> "model NAME sha256 HASH" (no double quotes)."""
    lines = [
        f'##INFO=<ID={INFO_IDS[name]},Number=A,Type=Float,Description="NucEL {name}: {SCORE_MEANINGS[name]}; '
        f'{models[name]}">'
        for name in score_names
    ]
    lines.append(
        '##INFO=<ID=NUCEL_STATUS,Number=A,Type=String,Description="NucEL status of each ALT: '
        f'{", ".join(STATUSES)} (only ok alleles have scores)">'
    )
    lines.append(
        '##INFO=<ID=NUCEL_REFERENCE_BASE,Number=1,Type=String,Description="The reference genome base at POS '
        'where it differs from REF (NucEL status ref_mismatch or ref_is_n)">'
    )
    return lines


def annotated_line(record_text: str, rows: list[tuple[VariantRow, dict[str, float]]], score_names: list[str]) -> str:
    """The record's VCF line with the NUCEL_ INFO fields (any earlier ones replaced)."""
    fields = record_text.rstrip("\n").split("\t")
    kept = [item for item in fields[7].split(";") if item not in (".", "") and not item.startswith("NUCEL_")]
    if fields[4] not in (".", ""):  # Number=A needs alleles: a record without ALT gets no NUCEL_ fields
        for name in score_names:
            kept.append(f"{INFO_IDS[name]}=" + ",".join(formatted(scores, name) or "." for _, scores in rows))
        kept.append("NUCEL_STATUS=" + ",".join(row.status for row, _ in rows))
        reference_base = next((row.reference_base for row, _ in rows if row.reference_base), "")
        if reference_base:
            kept.append(f"NUCEL_REFERENCE_BASE={reference_base}")
    fields[7] = ";".join(kept) or "."
    return "\t".join(fields) + "\n"


def write_scored_vcf(
    path: str | Path,
    vcf_input,
    scored: Iterable[tuple[VariantRow, dict[str, float]]],
    score_names: list[str],
    models: dict[str, str],
    command_line: str,
) -> tuple[Counter, str]:
    """Every input record with its scores as INFO fields (see the module docstring); returns rows per status and a
    note on the index. `vcf_input`: the nucel.variant_files.VcfInput whose `rows(keep_records=True)` feed `scored`."""
    from pysam.libcbgzf import BGZFile

    kind = output_kind(path)
    header = [line for line in vcf_input.header_text.splitlines() if not line.startswith("##INFO=<ID=NUCEL_")]
    header[-1:-1] = [*info_header_lines(score_names, models), f"##nucel_command={command_line}"]
    if kind == "bcf" and not any(line.startswith("##INFO=<ID=END,") for line in header):
        # htslib's BCF writer adds INFO/END to records with symbolic alleles (<DEL>): undefined, they are unreadable.
        header.insert(-1, '##INFO=<ID=END,Number=1,Type=Integer,Description="End position of the variant">')
    counts = Counter()
    with atomic_file(path) as staging:
        text_path = staging.with_name(staging.name + ".vcf") if kind == "bcf" else staging
        try:
            with BGZFile(str(text_path), "wb") if kind == "vcf.gz" else open(text_path, "wb") as handle:
                handle.write(("\n".join(header) + "\n").encode())
                waiting = []
                for row, scores in scored:
                    counts[row.status] += 1
                    waiting.append((row, scores))
                    record, row_count = vcf_input.pending[0]
                    if len(waiting) == row_count:
                        vcf_input.pending.popleft()
                        handle.write(annotated_line(str(record), waiting, score_names).encode())
                        waiting = []
            if kind == "bcf":
                convert_to_bcf(text_path, staging)
        finally:
            if text_path != staging:
                text_path.unlink(missing_ok=True)
        note = index_vcf(staging, Path(path)) if kind == "vcf.gz" else ""
    return counts, note


def convert_to_bcf(text_vcf: Path, bcf: Path) -> None:
    import pysam

    with pysam.VariantFile(str(text_vcf)) as source, pysam.VariantFile(str(bcf), "wb", header=source.header) as target:
        for record in source:
            target.write(record)


def index_vcf(staging: Path, final: Path) -> str:
    """The .tbi of a bgzipped VCF, written beside its final name (the data file is renamed after it). An unsorted VCF
    cannot be indexed: it is written all the same, and the note says how to sort it."""
    import pysam

    index = Path(f"{final}.tbi")
    staged_index = index.with_name(f".{index.name}.partial")
    try:
        pysam.tabix_index(str(staging), preset="vcf", force=True, index=str(staged_index))
    except OSError:
        staged_index.unlink(missing_ok=True)
        index.unlink(missing_ok=True)  # an index of an earlier output would no longer match
        return (
            f"; {final} is not indexed: its records are not sorted by position (`bcftools sort` sorts it, "
            "`tabix -p vcf` then indexes it)"
        )
    ordinary_permissions(staged_index)
    os.replace(staged_index, index)
    return f"; indexed: {index}"


class TrackCollector:
    """Scores of the "ok" rows gathered by reference position (on the way to the writer) for the tracks."""

    def __init__(self, score_names: list[str]):
        self.score_names = score_names
        self.values: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))

    def passing(self, scored: Iterable[tuple[VariantRow, dict[str, float]]]):
        for row, scores in scored:
            context = row.variant.context if row.variant is not None else None
            if scores and hasattr(context, "name"):  # a position in the reference (not an inline sequence)
                site = self.values[context.name, context.start + row.variant.offset]
                for name, value in scores.items():
                    site[name].append(value)
            yield row, scores

    def write(self, stem: Path, reference: Reference) -> list[Path]:
        if not self.values:
            return []
        written = []
        for name in self.score_names:
            entries = [
                (chrom, start, sum(site[name]) / len(site[name])) for (chrom, start), site in self.values.items()
            ]
            written += write_track(
                f"{stem}.{name}",
                reference.lengths,
                entries,
                f"NucEL {name} at each scored variant (mean over the ALTs of a position)",
            )
        return written


def status_summary(counts: Counter, reference: Reference | None) -> str:
    """One line: rows per status, and the chromosome names matched across the `chr` prefix."""
    summary = f"{sum(counts.values()):,} rows: " + ", ".join(f"{counts[s]:,} {s}" for s in STATUSES if counts[s])
    if reference is not None and reference.renamed:
        pairs = reference.renamed.most_common()
        shown = ", ".join(f"{asked} -> {found} ({lines:,} lines)" for (asked, found), lines in pairs[:5])
        summary += (
            f"; chromosome names matched to the reference's across the chr prefix: {shown}"
            f"{', ...' if len(pairs) > 5 else ''}"
        )
    return summary
