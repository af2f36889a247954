"""Zero-shot variant effects on real data: BRCA1 saturation genome editing (Findlay et al., Nature 2018).

    nucel-benchmark --suite vep --generator GENERATOR --encoder ENCODER --window 256 [--reverse-complement]

Data (`--data`, default ../shared/data/vep beside the repository; its README): 3,893 SNVs of BRCA1, each with
a measured function score (lower = more damaging) and a class FUNC / INT / LOF, and a GRCh37 FASTA slice of
chr17 whose record is named `CHROM:START-END` (1-based, inclusive). Every SNV's REF is checked against the FASTA
before anything is scored: a mismatch is an error, or, with `--exclude-ref-mismatches`, counted and skipped.

Scores. Each becomes a "damage" score, higher = more damaging, for the metrics:
- llr, from a generator / masked LM (`--generator`, repeatable): log P(alt) - log P(ref) at the masked site of a
  `--window`-base window centred on the variant (nucel.variants.log_likelihood_ratios). A more negative llr is
  more damaging: damage = -llr.
- embedding distance, from an encoder (`--encoder`, repeatable; any NucEL folder): Euclidean distance between the
  mean-pooled final-layer embeddings of the reference window and of the same window carrying the alternative
  base (nucel.variants.embedding_distances). Larger = more damaging.
- `--reverse-complement` averages both over the two strands.
- baselines from the table itself: CADD (PHRED-scaled; higher = more deleterious) and phyloP (mammalian
  conservation; higher = more conserved, taken as more damaging); and Evo 2 (1B)'s published AUROC, quoted from
  the literature, not run here.
Metrics, LOF (positive) vs FUNC + INT: AUROC and AUPRC of the damage score, and Spearman's rho between the
function score and -damage (positive = the score orders variants as the assay does); overall, with a bootstrap
interval for AUROC, and per consequence (the table's `consequence` column, each value its own group, so the
groups partition the variants).

Output: OUTPUT.md (tables, the command, each model's identity), OUTPUT.json, OUTPUT.png (score distributions
per class, ROC and precision-recall curves); default OUTPUT = benchmarks/results/vep-brca1.
"""

import argparse
import csv
import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from nucel.core.plots import pyplot, save_figure
from nucel.core.files import file_sha256
from nucel.core.identity import folder_identity
from nucel.core.models import load_encoder
from nucel.core.sequences import read_fasta
from nucel.core.files import atomic_file, write_json_atomically
from nucel.core.regions import REGION
from nucel.core.variant_scores import embedding_distances, load_generator, log_likelihood_ratios, make_variant, Variant

REPOSITORY = Path(__file__).resolve().parent.parent
TABLE_NAME = "brca1_sge_findlay2018_snvs.tsv"
FASTA_NAME = "brca1_hg19_chr17_41180001-41300000.fa"
OUTPUT_NAME = "vep-brca1"  # OUTPUT/vep-brca1.{md,json,png}
REQUIRED_COLUMNS = ("chrom", "pos", "ref", "alt", "score", "class", "consequence", "cadd", "phylop_mammal")
CLASSES = ("FUNC", "INT", "LOF")
POSITIVE_CLASS = "LOF"
# The table's consequence values under plain names; a value not listed keeps its own name, lower-cased.
CONSEQUENCE_NAMES = {
    "Missense": "missense", "Synonymous": "synonymous", "Nonsense": "nonsense", "Canonical splice": "canonical splice",
    "Splice region": "splice region", "Intronic": "intronic", "5' UTR": "5' UTR",
}
BASELINES = (  # (name, column, what "higher" means)
    ("CADD", "cadd", "higher CADD (PHRED) = more deleterious"),
    ("phyloP (mammal)", "phylop_mammal", "higher phyloP = more conserved, taken as more damaging"),
)
LITERATURE = (
    {"name": "Evo 2 (1B base)", "auroc": 0.73,
     "source": "quoted from the literature, not run by us: the Evo 2 BRCA1 notebook (ArcInstitute/evo2, "
               "notebooks/brca1), evo2_1b_base, 8,192-bp windows, LOF vs FUNC + INT"},
)
BOOTSTRAP_SEED = 0
SMALL_MODEL_PARAMETERS = 10_000_000  # below this the report adds what a model of that size cannot be expected to show


class VepError(ValueError):
    """Data or settings the benchmark cannot use; the message names the file, row or option and what to do."""


# ----------------------------------------------------------------------------------------------------------------
# Data


@dataclass
class SgeTable:
    """The scored SNVs, in table order, with their measurements and the table's own baseline columns."""

    variants: list[Variant]
    function_score: np.ndarray  # lower = more damaging
    classes: list[str]  # FUNC / INT / LOF
    consequences: list[str]  # plain names (CONSEQUENCE_NAMES)
    baselines: dict[str, np.ndarray]  # column -> values, NaN where the table has NA
    first_position: int  # 1-based chromosome position of the FASTA slice's first base
    ref_checked: int  # rows whose REF was compared with the FASTA
    excluded: list[str] = field(default_factory=list)  # REF mismatches skipped (only with exclude_ref_mismatches)

    @property
    def is_lof(self) -> np.ndarray:
        return np.array([c == POSITIVE_CLASS for c in self.classes])


def read_reference_slice(path: Path) -> tuple[str, int, str]:
    """(chrom, 1-based position of the first base, upper-case sequence) of a one-record FASTA named CHROM:START-END."""
    records = list(read_fasta(path))
    if len(records) != 1:
        raise VepError(f"{path}: expected one FASTA record (a slice of one chromosome), found {len(records)}")
    name, sequence = records[0]
    match = REGION.match(name)
    if not match or match["start"] is None:
        raise VepError(f"{path}: the record is named {name!r}; name it CHROM:START-END (1-based, inclusive) so that "
                       "table positions can be placed in it")
    start, end = int(match["start"].replace(",", "")), int(match["end"].replace(",", ""))
    if end - start + 1 != len(sequence):
        raise VepError(f"{path}: record {name} should hold {end - start + 1} bases but holds {len(sequence)}")
    return match["chrom"], start, sequence.upper()


def number(text: str, column: str, source: str, missing_ok: bool) -> float:
    text = (text or "").strip()
    if missing_ok and text in ("", "NA", "nan"):
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise VepError(f"{source}: column {column} holds {text!r}, not a number") from None


def evenly_spaced(count: int, keep: int | None) -> list[int]:
    """Indices of `keep` rows spread evenly over `count` (all of them when keep is None or not smaller)."""
    if keep is None or keep >= count:
        return list(range(count))
    return sorted({round(i * (count - 1) / max(keep - 1, 1)) for i in range(keep)})


def load_sge_table(table_path: Path, fasta_path: Path, exclude_ref_mismatches: bool = False,
                   max_variants: int | None = None) -> SgeTable:
    """Read the SNV table and check every row's REF against the FASTA (see the module docstring)."""
    chrom, first, sequence = read_reference_slice(fasta_path)
    if not Path(table_path).is_file():
        raise VepError(f"{table_path}: no such file")
    with open(table_path, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise VepError(f"{table_path}: missing column(s) {', '.join(missing)}; the header is {reader.fieldnames}")
        rows = list(enumerate(reader, start=2))  # line 1 is the header
    if not rows:
        raise VepError(f"{table_path}: no variants")
    rows = [rows[i] for i in evenly_spaced(len(rows), max_variants)]

    variants, scores, classes, consequences, excluded = [], [], [], [], []
    baselines = {column: [] for _, column, _ in BASELINES}
    for line, row in rows:
        source = f"{Path(table_path).name} line {line}"
        if any(row[column] is None for column in REQUIRED_COLUMNS):
            raise VepError(f"{source}: fewer tab-separated fields than the header's {len(reader.fieldnames)}")
        if row["chrom"] != chrom:
            raise VepError(f"{source}: chromosome {row['chrom']!r}, but the FASTA {fasta_path.name} holds {chrom}")
        if not row["pos"].strip().isdigit():
            raise VepError(f"{source}: pos {row['pos']!r} is not a positive integer")
        position = int(row["pos"])
        index = position - first  # the table's pos is 1-based; FASTA index 0 is 1-based position `first`
        last = first + len(sequence) - 1
        if not 0 <= index < len(sequence):
            raise VepError(f"{source}: {chrom}:{position} is outside the FASTA ({chrom}:{first}-{last})")
        ref, found = row["ref"].strip().upper(), sequence[index]
        if ref != found:
            message = (f"{source}: REF mismatch at {chrom}:{position} (1-based; FASTA index {index}): the table has "
                       f"{ref}, the FASTA has {found}")
            if not exclude_ref_mismatches:
                raise VepError(f"{message}; check that both use the same genome build, or pass --exclude-ref-mismatches "
                               "to count and skip such rows")
            excluded.append(message)
            continue
        if row["class"] not in CLASSES:
            raise VepError(f"{source}: class {row['class']!r} is not one of {', '.join(CLASSES)}")
        name = row.get("variant_id") or f"{chrom}:{position}:{ref}:{row['alt']}"
        variants.append(make_variant(name, chrom, position, ref, row["alt"], sequence, index, source))
        scores.append(number(row["score"], "score", source, missing_ok=False))
        classes.append(row["class"])
        consequences.append(CONSEQUENCE_NAMES.get(row["consequence"], row["consequence"].lower()))
        for _, column, _ in BASELINES:
            baselines[column].append(number(row[column], column, source, missing_ok=True))
    if not variants:
        raise VepError(f"{table_path}: every row was excluded for a REF mismatch; the table and FASTA do not belong together")
    return SgeTable(variants, np.array(scores), classes, consequences,
                    {column: np.array(values) for column, values in baselines.items()}, first, len(rows), excluded)


def check_window(table: SgeTable, window: int) -> None:
    """Every window must be centred on its variant: one shifted at the FASTA's end would put the variant elsewhere."""
    if window < 2:
        raise VepError(f"--window {window}: a window needs at least 2 bases (the variant and some context)")
    for variant in table.variants:
        start = variant.offset - window // 2
        if start < 0 or start + window > len(variant.context):
            room = 2 * min(variant.offset, len(variant.context) - 1 - variant.offset)
            raise VepError(f"--window {window} does not fit centred around {variant.name} ({variant.source}) in the "
                           f"FASTA; use --window {room} or less")


# ----------------------------------------------------------------------------------------------------------------
# Metrics


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None  # undefined for a constant
    return float(spearmanr(x, y).statistic)


def binary_metrics(is_lof: np.ndarray, damage: np.ndarray, function_score: np.ndarray) -> dict:
    """AUROC and AUPRC of LOF vs the rest by `damage` (higher = more damaging), and Spearman(function score,
    -damage). Variants without a score (NaN) are left out and `n` says how many remain; AUROC and AUPRC are
    None when only one class is present."""
    keep = np.isfinite(damage)
    labels, damage, function_score = is_lof[keep], damage[keep], function_score[keep]
    positives = int(labels.sum())
    both = 0 < positives < len(labels)
    return {
        "n": int(len(labels)),
        "n_lof": positives,
        "auroc": float(roc_auc_score(labels, damage)) if both else None,
        "auprc": float(average_precision_score(labels, damage)) if both else None,
        "spearman": spearman(-damage, function_score),
    }


def bootstrap_auroc(is_lof: np.ndarray, damage: np.ndarray, repeats: int, seed: int = BOOTSTRAP_SEED) -> list[float] | None:
    """95 % percentile interval of AUROC over variants resampled with replacement (fixed seed)."""
    keep = np.isfinite(damage)
    labels, damage = is_lof[keep], damage[keep]
    if repeats < 1 or not 0 < labels.sum() < len(labels):
        return None
    generator = np.random.default_rng(seed)
    values = []
    for _ in range(repeats):
        draw = generator.integers(0, len(labels), len(labels))
        if 0 < labels[draw].sum() < len(draw):
            values.append(roc_auc_score(labels[draw], damage[draw]))
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def site_parts(table: SgeTable, llr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An llr split in two: the mean over the alternatives at the variant's position (shared by them; it is mostly
    how surely the model predicts the reference base there) and the variant's deviation from that mean (which
    alternative the model finds least likely). The two add up to the llr."""
    _, site, count = np.unique([v.position for v in table.variants], return_inverse=True, return_counts=True)
    site_mean = (np.bincount(site, weights=llr) / count)[site]
    return site_mean, llr - site_mean


def llr_parts_auroc(table: SgeTable, llr: np.ndarray) -> dict:
    """AUROC (damage = minus each part) of the site part and of the within-site part of an llr."""
    site_mean, deviation = site_parts(table, llr)
    return {"site": binary_metrics(table.is_lof, -site_mean, table.function_score)["auroc"],
            "within_site": binary_metrics(table.is_lof, -deviation, table.function_score)["auroc"]}


def consequence_groups(consequences: list[str]) -> dict[str, np.ndarray]:
    """Each consequence's rows (boolean masks that partition the table), largest group first."""
    names = sorted(set(consequences), key=lambda name: (-consequences.count(name), name))
    values = np.array(consequences)
    return {name: values == name for name in names}


def by_consequence(table: SgeTable, damage: np.ndarray) -> dict[str, dict]:
    return {name: binary_metrics(table.is_lof[rows], damage[rows], table.function_score[rows])
            for name, rows in consequence_groups(table.consequences).items()}


# ----------------------------------------------------------------------------------------------------------------
# Scores


@dataclass
class Score:
    name: str
    kind: str  # "llr", "embedding distance" or "baseline"
    orientation: str  # how the raw score becomes damage, in words
    raw: np.ndarray
    damage: np.ndarray
    provenance: dict


def display_path(path: str | Path) -> str:
    """A path as a reader of the repository can follow it: relative to the repository (or to its parent, for
    ../shared/data), absolute only outside both."""
    path = Path(path).resolve()
    for root, prefix in ((REPOSITORY, ""), (REPOSITORY.parent, "../")):
        if path.is_relative_to(root):
            return prefix + str(path.relative_to(root))
    return str(path)


def short_name(path: str) -> str:
    """The last three parts of a local folder (e.g. rtd/export/generator), a Hub id as it is."""
    parts = Path(path).parts
    return "/".join(parts[-3:]) if Path(path).exists() else path


def check_model_path(path: str, option: str) -> None:
    """A missing local folder is named as such (transformers would call it a malformed Hub id); a Hub id is
    OWNER/NAME."""
    if not Path(path).exists() and (path.startswith(("/", ".", "~")) or path.count("/") != 1):
        raise VepError(f"{option} {path}: no such model folder (give a saved NucEL folder or a Hub id OWNER/NAME)")


def training_record(folder: Path) -> dict | None:
    """What a `nucel-pretrain` run folder says about its training: its exports sit in RUN/export/NAME beside
    RUN/log.jsonl, whose first record has the planned steps and the windowed genome's size."""
    log = folder.parent.parent / "log.jsonl"
    if folder.parent.name != "export" or not log.is_file():
        return None
    with open(log) as handle:
        first = json.loads(handle.readline())
        last_step = first.get("step")
        for line in handle:
            last_step = json.loads(line).get("step", last_step)
    windows = first.get("windows") or {}
    return {"log": display_path(log), "planned_steps": first.get("max_steps"), "last_logged_step": last_step,
            "genome_bases": windows.get("bases"), "train_windows": windows.get("train_windows")}


def model_identity(path: str, model) -> dict:
    """Which model produced a score: the folder, a checksum of its weights, its shape and (when known) its training."""
    folder = Path(path)
    config = model.config
    return {
        "path": display_path(folder) if folder.exists() else path,
        # The benchmark runner's identity (weights, config and tokenizer checksums): one key for every result.
        "sha256": folder_identity(folder)["sha256"] if folder.is_dir() else None,
        "class": type(model).__name__,
        "layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "training": training_record(folder) if folder.exists() else None,
    }


def llr_score(path: str, table: SgeTable, window: int, reverse_complement: bool, batch_size: int, device: str | None) -> Score:
    generator, tokenizer = load_generator(path, device)
    llr = log_likelihood_ratios(generator, tokenizer, table.variants, window, batch_size,
                                reverse_complement_average=reverse_complement)
    return Score(f"{short_name(path)} · llr", "llr", "damage = -llr (a more negative llr is more damaging)",
                 llr, -llr, model_identity(path, generator))


def distance_score(path: str, table: SgeTable, window: int, reverse_complement: bool, batch_size: int, device: str | None) -> Score:
    encoder, tokenizer = load_encoder(path, device)
    distance = embedding_distances(encoder, tokenizer, table.variants, window, batch_size,
                                   reverse_complement_average=reverse_complement)
    return Score(f"{short_name(path)} · embedding distance", "embedding distance",
                 "damage = Euclidean distance of mean-pooled embeddings (larger is more damaging)",
                 distance, distance, model_identity(path, encoder))


def baseline_scores(table: SgeTable) -> list[Score]:
    return [Score(name, "baseline", f"damage = {column}: {meaning}", table.baselines[column], table.baselines[column],
                  {"path": f"the table's `{column}` column (Findlay et al. 2018, Supplementary Table 1)"})
            for name, column, meaning in BASELINES]


def evaluate(table: SgeTable, scores: list[Score], bootstrap: int) -> list[dict]:
    return [{
        "name": score.name, "kind": score.kind, "orientation": score.orientation,
        "overall": binary_metrics(table.is_lof, score.damage, table.function_score),
        "auroc_95ci": bootstrap_auroc(table.is_lof, score.damage, bootstrap),
        "by_consequence": by_consequence(table, score.damage),
        **({"llr_parts_auroc": llr_parts_auroc(table, score.raw)} if score.kind == "llr" else {}),
        "provenance": score.provenance,
    } for score in scores]


# ----------------------------------------------------------------------------------------------------------------
# Report


def fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def verdict(auroc: float | None, interval: list[float] | None) -> str:
    if auroc is None or interval is None:
        return "undefined"
    if interval[0] > 0.5:
        return "above chance"
    if interval[1] < 0.5:
        return "below chance (it ranks functional variants as more damaging)"
    return "not distinguishable from chance (the interval contains 0.5)"


def training_text(training: dict | None) -> str:
    if not training:
        return "–"
    bases = training.get("genome_bases")
    return (f"{training.get('last_logged_step')} steps (planned {training.get('planned_steps')}) on "
            f"{bases:,} bases" if bases else f"{training.get('last_logged_step')} steps") + f" ({training['log']})"


def write_markdown(path: Path, report: dict) -> None:
    data, settings, results = report["data"], report["settings"], report["results"]
    total = data["variants"]
    counts = data["classes"]
    prevalence = counts[POSITIVE_CLASS] / total
    groups = list(results[0]["by_consequence"]) if results else []
    lines = [
        "# Zero-shot variant effects on BRCA1 (saturation genome editing, Findlay et al. 2018)",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Written {report['written']} in {report['minutes']:.1f} min on {settings['device']} "
        f"({settings['torch_threads']} torch thread(s)).",
        "",
        f"Data: `{data['table']}` (sha256 {data['table_sha256'][:16]}…) and `{data['fasta']}` "
        f"(sha256 {data['fasta_sha256'][:16]}…), GRCh37. {total:,} SNVs scored: "
        + ", ".join(f"{name} {counts[name]:,}" for name in CLASSES)
        + (f" (an evenly spaced subset: --max-variants {settings['max_variants']})" if settings["max_variants"] else "")
        + ".",
        "",
        f"REF check: {data['ref_checked']:,} rows compared with the FASTA (1-based `pos` → FASTA index `pos − "
        f"{data['fasta_first_position']:,}`): {data['ref_checked'] - len(data['ref_excluded']):,} agree, "
        f"{len(data['ref_excluded'])} excluded as mismatches.",
        "",
        f"Task: LOF (positive) vs FUNC + INT. LOF prevalence {prevalence:.3f} (the AUPRC of a random score). "
        f"Window: {settings['window']} bases centred on the variant (index {settings['window'] // 2}), "
        f"reverse-complement averaging {'on' if settings['reverse_complement'] else 'off'}.",
        "",
        "Orientation: every score is turned into a damage score, higher = more damaging, before AUROC/AUPRC; "
        "Spearman ρ is between the function score and −damage, so for every row positive means agreement with "
        "the assay. The 95 % interval is a percentile bootstrap over variants "
        f"({settings['bootstrap']} resamples, seed {BOOTSTRAP_SEED}).",
        "",
        "## Overall",
        "",
        "| score | kind | damage orientation | AUROC [95 % CI] | AUPRC | Spearman ρ | n |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        overall, interval = result["overall"], result["auroc_95ci"]
        ci = f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""
        lines.append(f"| {result['name']} | {result['kind']} | {result['orientation']} | {fmt(overall['auroc'])}{ci} | "
                     f"{fmt(overall['auprc'])} | {fmt(overall['spearman'])} | {overall['n']:,} |")
    for anchor in report["literature"]:
        lines.append(f"| {anchor['name']} | literature | {anchor['source']} | {fmt(anchor['auroc'], 2)} | – | – | – |")

    llrs = [result for result in results if "llr_parts_auroc" in result]
    if llrs:
        lines += ["", "llr in two parts (they add up to the llr): the site part is the mean llr over the alternatives "
                  "at the variant's position, mostly how surely the model predicts the reference base there (sure = "
                  "damaging); the within-site part says which alternative at a position the model finds least likely. "
                  "AUROC of each, damage = minus the part:", "",
                  "| score | AUROC, llr | AUROC, site part | AUROC, within-site part |", "|---|---|---|---|"]
        for result in llrs:
            parts = result["llr_parts_auroc"]
            lines.append(f"| {result['name']} | {fmt(result['overall']['auroc'])} | {fmt(parts['site'])} | "
                         f"{fmt(parts['within_site'])} |")
    first = results[0]["by_consequence"] if results else {}
    header = " | ".join(f"{name} (n={first[name]['n']:,}, LOF {first[name]['n_lof']:,})" for name in groups)
    lines += ["", "## By consequence", "",
              "Groups are the table's `consequence` values; they partition the variants. – = undefined (one class only).", ""]
    for metric, title in (("auroc", "AUROC"), ("auprc", "AUPRC"), ("spearman", "Spearman ρ (function score vs −damage)")):
        lines += [f"### {title}", "", f"| score | all | {header} |", "|---|---" + "|---" * len(groups) + "|"]
        for result in results:
            cells = " | ".join(fmt(result["by_consequence"][name][metric]) for name in groups)
            lines.append(f"| {result['name']} | {fmt(result['overall'][metric])} | {cells} |")
        lines.append("")

    models = [result for result in results if result["kind"] != "baseline"]
    if models:
        lines += ["## Models", "", "| score | folder | class | layers × hidden | parameters | identity (sha256 of weights, config, tokenizer) | training |",
                  "|---|---|---|---|---|---|---|"]
    for result in models:
        p = result["provenance"]
        checksum = f"{p['sha256'][:16]}…" if p["sha256"] else "–"
        lines.append(f"| {result['name']} | `{p['path']}` | {p['class']} | {p['layers']} × {p['hidden_size']} | "
                     f"{p['parameters']:,} | {checksum} | {training_text(p['training'])} |")
    lines += ["", "## What these numbers can and cannot show", ""]
    for result in results:
        lines.append(f"- {result['name']}: AUROC {fmt(result['overall']['auroc'])}, "
                     f"{verdict(result['overall']['auroc'], result['auroc_95ci'])}.")
    lines += [
        "",
        "A zero-shot score shows only what pre-training put into a model. The llr asks how surprising the alternative "
        "base is in its window; the embedding distance, how far one base moves the mean-pooled window vector (one "
        "base moves a mean over hundreds of bases very little, so this score is weak by construction). The "
        "by-consequence tables say where a score works: overall AUROC rewards a score that merely tells nonsense and "
        "canonical-splice variants (nearly all LOF) from synonymous and intronic ones (nearly all functional); "
        "within missense variants (the largest group) it has to tell variants of the same kind apart. The CADD and "
        "phyloP rows are the bar a useful genomic language model must reach; the Evo 2 row is a "
        "1-billion-parameter model, quoted for scale, not run here. No setting was tuned on these labels.",
    ]
    largest = max((result["provenance"]["parameters"] for result in models), default=None)
    if largest is not None and largest < SMALL_MODEL_PARAMETERS:
        lines += [
            "",
            f"The models here are small (at most {largest:,} parameters; their training is in the table above). "
            "Models of this size, trained on as little sequence as that, learn mostly local composition (GC content, "
            "CpG, repeats), not codons, splice signals or protein constraint, which is what separates LOF variants "
            "here. An AUROC near 0.5 then says the model is too small or too briefly trained, not that the method "
            "fails; an AUROC somewhat away from 0.5, either way, can come from composition that happens to go with "
            "the class rather than from any knowledge of BRCA1. For example, a model that predicts the reference "
            "base best in repeats and low-complexity sequence (which small models learn first) and worst at "
            "conserved coding positions gives its most negative llr to harmless variants; a site part below 0.5 in "
            "the table above is consistent with that pattern, though not proof of it. These rows "
            "test the machinery on real data; they are not a measure of what NucEL can do at the paper's scale.",
        ]
    with atomic_file(path) as staging:
        staging.write_text("\n".join(lines) + "\n")


def plot(path: Path, table: SgeTable, scores: list[Score], results: list[dict]) -> None:
    """Top: each score's distribution per class; bottom: ROC and precision-recall curves of LOF vs the rest."""
    plt = pyplot()
    columns = max(len(scores), 2)
    figure = plt.figure(figsize=(3.3 * columns, 7.0))
    grid = figure.add_gridspec(2, columns)
    colours = {"FUNC": "tab:blue", "INT": "tab:orange", "LOF": "tab:red"}
    classes = np.array(table.classes)
    for i, (score, result) in enumerate(zip(scores, results)):
        axes = figure.add_subplot(grid[0, i])
        finite = np.isfinite(score.raw)
        bins = np.histogram_bin_edges(score.raw[finite], bins=40)
        for name in CLASSES:
            values = score.raw[finite & (classes == name)]
            if len(values):
                axes.hist(values, bins=bins, density=True, histtype="step", color=colours[name], label=f"{name} ({len(values)})")
        axes.set_title(f"{score.name}\nAUROC {fmt(result['overall']['auroc'])}", fontsize=8)
        axes.set_xlabel(score.kind if score.kind != "baseline" else score.name, fontsize=8)
        axes.tick_params(labelsize=7)
        axes.legend(fontsize=6)
    roc_axes, pr_axes = figure.add_subplot(grid[1, : columns // 2]), figure.add_subplot(grid[1, columns // 2 :])
    labels = table.is_lof
    for score, result in zip(scores, results):
        finite = np.isfinite(score.damage)
        if result["overall"]["auroc"] is None:
            continue
        fpr, tpr, _ = roc_curve(labels[finite], score.damage[finite])
        roc_axes.plot(fpr, tpr, label=f"{score.name} ({result['overall']['auroc']:.3f})")
        precision, recall, _ = precision_recall_curve(labels[finite], score.damage[finite])
        pr_axes.plot(recall, precision, label=f"{score.name} ({result['overall']['auprc']:.3f})")
    roc_axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance (0.5)")
    pr_axes.axhline(labels.mean(), color="grey", linestyle=":", label=f"chance ({labels.mean():.3f})")
    roc_axes.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC, LOF vs FUNC + INT")
    pr_axes.set(xlabel="recall", ylabel="precision", title="precision-recall, LOF vs FUNC + INT")
    for axes in (roc_axes, pr_axes):
        axes.legend(fontsize=6)
    figure.tight_layout()
    save_figure(figure, path)


# ----------------------------------------------------------------------------------------------------------------
# Command line


def run(args: argparse.Namespace, command: str) -> dict:
    started = time.perf_counter()
    if args.max_variants is not None and args.max_variants < 2:
        raise VepError(f"--max-variants {args.max_variants}: give at least 2 (or leave it out for all rows)")
    table_path, fasta_path = args.data / TABLE_NAME, args.data / FASTA_NAME
    for path in (table_path, fasta_path):
        if not path.is_file():
            raise VepError(f"{path}: no such file; --data must be the folder with {TABLE_NAME} and {FASTA_NAME} "
                           "(../shared/data/vep beside the repository)")
    table = load_sge_table(table_path, fasta_path, args.exclude_ref_mismatches, args.max_variants)
    for option, paths in (("--generator", args.generator), ("--model", args.model)):
        for path in paths:
            check_model_path(path, option)
    if args.generator or args.model:
        check_window(table, args.window)

    scores = [llr_score(path, table, args.window, args.reverse_complement, args.batch_size, args.device) for path in args.generator]
    scores += [distance_score(path, table, args.window, args.reverse_complement, args.batch_size, args.device) for path in args.model]
    scores += baseline_scores(table)
    results = evaluate(table, scores, args.bootstrap)

    report = {
        "command": command,
        "written": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "minutes": (time.perf_counter() - started) / 60,
        "settings": {
            "window": args.window, "reverse_complement": args.reverse_complement, "max_variants": args.max_variants,
            "bootstrap": args.bootstrap, "batch_size": args.batch_size,
            "device": args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
            "torch_threads": torch.get_num_threads(),
        },
        "data": {
            "table": display_path(table_path), "table_sha256": file_sha256(table_path),
            "fasta": display_path(fasta_path), "fasta_sha256": file_sha256(fasta_path), "fasta_first_position": table.first_position,
            "variants": len(table.variants), "classes": {name: table.classes.count(name) for name in CLASSES},
            "positive_class": POSITIVE_CLASS, "ref_checked": table.ref_checked, "ref_excluded": table.excluded,
        },
        "results": results,
        "literature": list(LITERATURE),
    }
    write_json_atomically(args.output / f"{OUTPUT_NAME}.json", report)
    write_markdown(args.output / f"{OUTPUT_NAME}.md", report)
    plot(args.output / f"{OUTPUT_NAME}.png", table, scores, results)
    return report


def report_scores(report: dict, output: Path) -> None:
    for result in report["results"]:
        print(f"{result['name']}: AUROC {fmt(result['overall']['auroc'])}, AUPRC {fmt(result['overall']['auprc'])}, "
              f"Spearman {fmt(result['overall']['spearman'])}")
    print(f"written {output / OUTPUT_NAME}.md, .json, .png")
