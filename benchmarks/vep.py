"""Zero-shot variant effects on real data: BRCA1 saturation genome editing (Findlay et al., Nature 2018).

    nucel vep --generator GENERATOR --model ENCODER --discriminator DISCRIMINATOR --window 256 [--reverse-complement]

Data (`--data`, default ../shared/data/vep beside the repository; its README): 3,893 SNVs of BRCA1, each with
a measured function score (lower = more damaging) and a class FUNC / INT / LOF, and a GRCh37 FASTA slice of
chr17 whose record is named `CHROM:START-END` (1-based, inclusive). Every SNV's REF is checked against the FASTA
before anything is scored: a mismatch is an error, or, with `--exclude-ref-mismatches`, counted and skipped.

Scores. Each becomes a "damage" score, higher = more damaging, for the metrics:
- llr, from a generator / masked LM (`--generator`, repeatable): log P(alt) - log P(ref) at the masked site of a
  `--window`-base window centred on the variant (nucel.core.variant_scores.log_likelihood_ratios). A more negative
  llr is more damaging: damage = -llr.
- embedding distance, from an encoder (`--model`, repeatable; any NucEL folder): Euclidean distance between the
  mean-pooled final-layer embeddings of the reference window and of the same window carrying the alternative
  base (nucel.core.variant_scores.embedding_distances). Larger = more damaging.
- replaced probability, from a discriminator exported with its RTD head (`--discriminator`, repeatable; pre-training
  writes it as export/discriminator_rtd): p_replaced(ALT) - p_replaced(REF), the discriminator's probability that
  the variant's base was replaced, from one unmasked forward pass on the window carrying the alternative base minus
  one on the reference window (nucel.core.variant_scores.replaced_probabilities). Higher = the ALT base looks more
  like a replacement = more damaging: damage = the score.
- `--reverse-complement` averages each over the two strands.
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

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score

from nucel.core.files import display_path
from nucel.core.identity import folder_identity
from nucel.core.models import is_repository_id, load_encoder
from nucel.core.records import read_pretraining_record
from nucel.core.regions import REGION
from nucel.core.sequences import read_fasta
from nucel.core.variant_scores import (
    Variant,
    embedding_distances,
    load_detector,
    load_generator,
    log_likelihood_ratios,
    make_variant,
    replaced_probabilities,
)

TABLE_NAME = "brca1_sge_findlay2018_snvs.tsv"
FASTA_NAME = "brca1_hg19_chr17_41180001-41300000.fa"
OUTPUT_NAME = "vep-brca1"  # OUTPUT/vep-brca1.{md,json,png}
REQUIRED_COLUMNS = ("chrom", "pos", "ref", "alt", "score", "class", "consequence", "cadd", "phylop_mammal")
CLASSES = ("FUNC", "INT", "LOF")
POSITIVE_CLASS = "LOF"
# The table's consequence values under plain names; a value not listed keeps its own name, lower-cased.
CONSEQUENCE_NAMES = {
    "Missense": "missense",
    "Synonymous": "synonymous",
    "Nonsense": "nonsense",
    "Canonical splice": "canonical splice",
    "Splice region": "splice region",
    "Intronic": "intronic",
    "5' UTR": "5' UTR",
}
BASELINES = (  # (name, column, what "higher" means)
    ("CADD", "cadd", "higher CADD (PHRED) = more deleterious"),
    ("phyloP (mammal)", "phylop_mammal", "higher phyloP = more conserved, taken as more damaging"),
)
LITERATURE = (
    {
        "name": "Evo 2 (1B base)",
        "auroc": 0.73,
        "source": "quoted from the literature, not run by us: the Evo 2 BRCA1 notebook (ArcInstitute/evo2, "
        "notebooks/brca1), evo2_1b_base, 8,192-bp windows, LOF vs FUNC + INT",
    },
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
        raise VepError(
            f"{path}: the record is named {name!r}; name it CHROM:START-END (1-based, inclusive) so that "
            "table positions can be placed in it"
        )
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


def load_sge_table(
    table_path: Path, fasta_path: Path, exclude_ref_mismatches: bool = False, max_variants: int | None = None
) -> SgeTable:
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
            message = (
                f"{source}: REF mismatch at {chrom}:{position} (1-based; FASTA index {index}): the table has "
                f"{ref}, the FASTA has {found}"
            )
            if not exclude_ref_mismatches:
                raise VepError(
                    f"{message}; check that both use the same genome build, or pass --exclude-ref-mismatches "
                    "to count and skip such rows"
                )
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
        raise VepError(
            f"{table_path}: every row was excluded for a REF mismatch; the table and FASTA do not belong together"
        )
    return SgeTable(
        variants,
        np.array(scores),
        classes,
        consequences,
        {column: np.array(values) for column, values in baselines.items()},
        first,
        len(rows),
        excluded,
    )


def check_window(table: SgeTable, window: int) -> None:
    """Every window must be centred on its variant: one shifted at the FASTA's end would put the variant elsewhere."""
    if window < 2:
        raise VepError(f"--window {window}: a window needs at least 2 bases (the variant and some context)")
    for variant in table.variants:
        start = variant.offset - window // 2
        if start < 0 or start + window > len(variant.context):
            room = 2 * min(variant.offset, len(variant.context) - 1 - variant.offset)
            raise VepError(
                f"--window {window} does not fit centred around {variant.name} ({variant.source}) in the "
                f"FASTA; use --window {room} or less"
            )


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


def bootstrap_auroc(
    is_lof: np.ndarray, damage: np.ndarray, repeats: int, seed: int = BOOTSTRAP_SEED
) -> list[float] | None:
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
    return {
        "site": binary_metrics(table.is_lof, -site_mean, table.function_score)["auroc"],
        "within_site": binary_metrics(table.is_lof, -deviation, table.function_score)["auroc"],
    }


def consequence_groups(consequences: list[str]) -> dict[str, np.ndarray]:
    """Each consequence's rows (boolean masks that partition the table), largest group first."""
    names = sorted(set(consequences), key=lambda name: (-consequences.count(name), name))
    values = np.array(consequences)
    return {name: values == name for name in names}


def by_consequence(table: SgeTable, damage: np.ndarray) -> dict[str, dict]:
    return {
        name: binary_metrics(table.is_lof[rows], damage[rows], table.function_score[rows])
        for name, rows in consequence_groups(table.consequences).items()
    }


# ----------------------------------------------------------------------------------------------------------------
# Scores


@dataclass
class Score:
    name: str
    kind: str  # "llr", "embedding distance", "replaced probability" or "baseline"
    orientation: str  # how the raw score becomes damage, in words
    raw: np.ndarray
    damage: np.ndarray
    provenance: dict


def short_name(path: str) -> str:
    """The last three parts of a local folder (e.g. rtd/export/generator), a Hub id as it is."""
    parts = Path(path).parts
    return "/".join(parts[-3:]) if Path(path).exists() else path


def check_model_path(path: str, option: str) -> None:
    """A missing local folder is named as such (transformers would call it a malformed Hub id); a Hub id is
    OWNER/NAME."""
    if not Path(path).exists() and not is_repository_id(path):
        raise VepError(f"{option} {path}: no such model folder (give a saved NucEL folder or a Hub id OWNER/NAME)")


def training_record(folder: Path) -> dict | None:
    """What the model's pre-training record (pretraining.json, core/records.py) says about its training."""
    record = read_pretraining_record(folder)
    if record is None:
        return None
    windows = record.get("windows") or {}
    return {
        "run": record["run"],
        "planned_steps": record["max_steps"],
        "last_logged_step": record["steps"],
        "genome_bases": windows.get("bases"),
        "train_windows": windows.get("train_windows"),
    }


def model_identity(path: str, model) -> dict:
    """Which model produced a score: the folder, a checksum of its weights, its shape and (when known) its training."""
    folder = Path(path)
    config = model.config
    return {
        # as the user named it: a folder reached through a link (runs/x -> a scratch disk) keeps the link's name
        "path": display_path(folder, follow_links=False) if folder.exists() else path,
        # The benchmark runner's identity (weights, config and tokenizer checksums): one key for every result.
        "sha256": folder_identity(folder)["sha256"] if folder.is_dir() else None,
        "class": type(model).__name__,
        "layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "training": training_record(folder) if folder.exists() else None,
    }


# Each model score: how its model loads, how it scores variants, what its damage is (higher = more damaging).
MODEL_SCORES = {
    "llr": (load_generator, log_likelihood_ratios, "damage = -llr (a more negative llr is more damaging)", np.negative),
    "embedding distance": (
        load_encoder,
        embedding_distances,
        "damage = Euclidean distance of mean-pooled embeddings (larger is more damaging)",
        np.asarray,
    ),
    "replaced probability": (
        load_detector,
        replaced_probabilities,
        "damage = p_replaced(ALT) − p_replaced(REF) (the ALT base looking more like a replacement is more damaging)",
        np.asarray,
    ),
}


def model_score(
    kind: str, path: str, table: SgeTable, window: int, reverse_complement: bool, batch_size: int, device: str | None
) -> Score:
    """The `kind` score (a key of MODEL_SCORES) of the model at `path` on every variant of `table`."""
    load, compute, meaning, damage = MODEL_SCORES[kind]
    model, tokenizer = load(path, device)
    raw = compute(model, tokenizer, table.variants, window, batch_size, reverse_complement_average=reverse_complement)
    return Score(f"{short_name(path)} · {kind}", kind, meaning, raw, damage(raw), model_identity(path, model))


def baseline_scores(table: SgeTable) -> list[Score]:
    return [
        Score(
            name,
            "baseline",
            f"damage = {column}: {meaning}",
            table.baselines[column],
            table.baselines[column],
            {"path": f"the table's `{column}` column (Findlay et al. 2018, Supplementary Table 1)"},
        )
        for name, column, meaning in BASELINES
    ]


def evaluate(table: SgeTable, scores: list[Score], bootstrap: int) -> list[dict]:
    return [
        {
            "name": score.name,
            "kind": score.kind,
            "orientation": score.orientation,
            "overall": binary_metrics(table.is_lof, score.damage, table.function_score),
            "auroc_95ci": bootstrap_auroc(table.is_lof, score.damage, bootstrap),
            "by_consequence": by_consequence(table, score.damage),
            **({"llr_parts_auroc": llr_parts_auroc(table, score.raw)} if score.kind == "llr" else {}),
            "provenance": score.provenance,
        }
        for score in scores
    ]


# ----------------------------------------------------------------------------------------------------------------
# Report
