"""The BRCA1 variant-effect report (`nucel vep`): scores every model given, then writes OUTPUT/vep-brca1.md (tables and
what they show), .json (every figure, the data's checksums, the models' identities) and .png (ROC curves and score
distributions). What is scored and how: benchmarks/vep.py.
"""

import argparse
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import precision_recall_curve, roc_curve

from nucel.benchmarks.vep import (
    BOOTSTRAP_SEED,
    CLASSES,
    FASTA_NAME,
    LITERATURE,
    OUTPUT_NAME,
    POSITIVE_CLASS,
    SMALL_MODEL_PARAMETERS,
    TABLE_NAME,
    Score,
    SgeTable,
    VepError,
    baseline_scores,
    check_model_path,
    check_window,
    evaluate,
    load_sge_table,
    model_score,
)
from nucel.core.files import atomic_file, display_path, file_sha256, write_json_atomically
from nucel.core.plots import pyplot, save_figure


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
    return (
        f"{training.get('last_logged_step')} steps (planned {training.get('planned_steps')}) on {bases:,} bases"
        if bases
        else f"{training.get('last_logged_step')} steps"
    ) + f" (run {training['run']})"


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
        lines.append(
            f"| {result['name']} | {result['kind']} | {result['orientation']} | {fmt(overall['auroc'])}{ci} | "
            f"{fmt(overall['auprc'])} | {fmt(overall['spearman'])} | {overall['n']:,} |"
        )
    for anchor in report["literature"]:
        lines.append(f"| {anchor['name']} | literature | {anchor['source']} | {fmt(anchor['auroc'], 2)} | – | – | – |")

    llrs = [result for result in results if "llr_parts_auroc" in result]
    if llrs:
        lines += [
            "",
            "llr in two parts (they add up to the llr): the site part is the mean llr over the alternatives "
            "at the variant's position, mostly how surely the model predicts the reference base there (sure = "
            "damaging); the within-site part says which alternative at a position the model finds least likely. "
            "AUROC of each, damage = minus the part:",
            "",
            "| score | AUROC, llr | AUROC, site part | AUROC, within-site part |",
            "|---|---|---|---|",
        ]
        for result in llrs:
            parts = result["llr_parts_auroc"]
            lines.append(
                f"| {result['name']} | {fmt(result['overall']['auroc'])} | {fmt(parts['site'])} | "
                f"{fmt(parts['within_site'])} |"
            )
    first = results[0]["by_consequence"] if results else {}
    header = " | ".join(f"{name} (n={first[name]['n']:,}, LOF {first[name]['n_lof']:,})" for name in groups)
    lines += [
        "",
        "## By consequence",
        "",
        "Groups are the table's `consequence` values; they partition the variants. – = undefined (one class only).",
        "",
    ]
    for metric, title in (
        ("auroc", "AUROC"),
        ("auprc", "AUPRC"),
        ("spearman", "Spearman ρ (function score vs −damage)"),
    ):
        lines += [f"### {title}", "", f"| score | all | {header} |", "|---|---" + "|---" * len(groups) + "|"]
        for result in results:
            cells = " | ".join(fmt(result["by_consequence"][name][metric]) for name in groups)
            lines.append(f"| {result['name']} | {fmt(result['overall'][metric])} | {cells} |")
        lines.append("")

    models = [result for result in results if result["kind"] != "baseline"]
    if models:
        lines += [
            "## Models",
            "",
            "| score | folder | class | layers × hidden | parameters "
            "| identity (sha256 of weights, config, tokenizer) | training |",
            "|---|---|---|---|---|---|---|",
        ]
    for result in models:
        p = result["provenance"]
        checksum = f"{p['sha256'][:16]}…" if p["sha256"] else "–"
        lines.append(
            f"| {result['name']} | `{p['path']}` | {p['class']} | {p['layers']} × {p['hidden_size']} | "
            f"{p['parameters']:,} | {checksum} | {training_text(p['training'])} |"
        )
    lines += ["", "## What these numbers can and cannot show", ""]
    for result in results:
        lines.append(
            f"- {result['name']}: AUROC {fmt(result['overall']['auroc'])}, "
            f"{verdict(result['overall']['auroc'], result['auroc_95ci'])}."
        )
    lines += [
        "",
        "A zero-shot score shows only what pre-training put into a model. The llr asks how surprising the alternative "
        "base is in its window; the embedding distance, how far one base moves the mean-pooled window vector (one "
        "base moves a mean over hundreds of bases very little, so this score is weak by construction); the replaced "
        "probability, how much more the discriminator takes the alternative base for a replacement than the "
        "reference base, with nothing masked (it reads what pre-training by replaced token detection taught). The "
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
                axes.hist(
                    values,
                    bins=bins,
                    density=True,
                    histtype="step",
                    color=colours[name],
                    label=f"{name} ({len(values)})",
                )
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
            raise VepError(
                f"{path}: no such file; --data must be the folder with {TABLE_NAME} and {FASTA_NAME} "
                "(../shared/data/vep beside the repository)"
            )
    table = load_sge_table(table_path, fasta_path, args.exclude_ref_mismatches, args.max_variants)
    for option, paths in (
        ("--generator", args.generator),
        ("--model", args.model),
        ("--discriminator", args.discriminator),
    ):
        for path in paths:
            check_model_path(path, option)
    if args.generator or args.model or args.discriminator:
        check_window(table, args.window)

    settings = (table, args.window, args.reverse_complement, args.batch_size, args.device)
    scores = [model_score("llr", path, *settings) for path in args.generator]
    scores += [model_score("embedding distance", path, *settings) for path in args.model]
    scores += [model_score("replaced probability", path, *settings) for path in args.discriminator]
    scores += baseline_scores(table)
    results = evaluate(table, scores, args.bootstrap)

    report = {
        "command": command,
        "written": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "minutes": (time.perf_counter() - started) / 60,
        "settings": {
            "window": args.window,
            "reverse_complement": args.reverse_complement,
            "max_variants": args.max_variants,
            "bootstrap": args.bootstrap,
            "batch_size": args.batch_size,
            "device": args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
            "torch_threads": torch.get_num_threads(),
        },
        "data": {
            "table": display_path(table_path),
            "table_sha256": file_sha256(table_path),
            "fasta": display_path(fasta_path),
            "fasta_sha256": file_sha256(fasta_path),
            "fasta_first_position": table.first_position,
            "variants": len(table.variants),
            "classes": {name: table.classes.count(name) for name in CLASSES},
            "positive_class": POSITIVE_CLASS,
            "ref_checked": table.ref_checked,
            "ref_excluded": table.excluded,
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
        print(
            f"{result['name']}: AUROC {fmt(result['overall']['auroc'])}, AUPRC {fmt(result['overall']['auprc'])}, "
            f"Spearman {fmt(result['overall']['spearman'])}"
        )
    print(f"written {output / OUTPUT_NAME}.md, .json, .png")
