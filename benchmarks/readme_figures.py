"""The figures README.md quotes, generated from the results files the runs wrote: never typed by hand.

README.md marks each generated passage as `<!-- figures:NAME -->` ... `<!-- /figures:NAME -->`; this module renders
every passage from its results file, and rewrites README.md (`python -m nucel.benchmarks.readme_figures`) or checks
it (`--check`, what tests/test_repository.py does).

    demo   benchmarks/results/demo_pretraining.json: the pretraining.json that `make demo`'s discriminator export
           carries (copy it there after a run of the demo to refresh the figures).
    study  benchmarks/results/pretraining_study.json (`nucel study`): the verdict of each paired difference, from
           its interval.
"""

import argparse
import json
import re
import sys
from pathlib import Path

from nucel.core.files import REPOSITORY, write_text_atomically

RESULTS = REPOSITORY / "benchmarks" / "results"
BLOCK = re.compile(r"(<!-- figures:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /figures:(?P=name) -->)", re.S)


def demo(results: Path) -> str:
    record = json.loads((results / "demo_pretraining.json").read_text())
    series = record["validation_series"]
    first, last = series[0], series[-1]
    recipe = record["recipe"]
    genome = "the built-in synthetic genome" if any(f.get("builtin") for f in record["data"]) else "its FASTA"
    return (
        f"Its last recorded run ({record['steps']:,} steps of batch {recipe['global_batch_size']} on {genome}, seed "
        f"{recipe['seed']}; `benchmarks/results/demo_pretraining.json`) ended with a validation information gain of "
        f"**{last['information_gain_percent']:.2f} % of H(p)** over bases and **AUROC {last['auroc']:.3f}** for "
        f"replaced vs original bases (step {first['step']}: {first['information_gain_percent']:.2f} % and "
        f"{first['auroc']:.3f}), on {last['windows']} held-out windows.\n"
    )


def study(results: Path) -> str:
    report = json.loads((results / "pretraining_study.json").read_text())
    labels = {"rtd": "RTD", "mlm": "MLM", "control": "the uniform-replacement control", "random": "random init"}
    state = "finished" if report["status"] == "finished" else "in progress, not finished"
    lines = [
        f"Study status: **{state}** ({report['jobs_finished']} jobs, {report['cpu_hours']:.1f} CPU-hours so far; "
        f"`benchmarks/results/pretraining_study.md`). Chosen on dev: RTD recipe "
        f'"{report["chosen"].get("rtd") or "not yet"}", MLM recipe "{report["chosen"].get("mlm") or "not yet"}".',
    ]
    means = [entry for entry in report["paired_differences"] if entry["task"] == "mean"]
    if not means:
        lines.append("No paired difference has all its runs yet, so there is no verdict: none is claimed.")
    for entry in means:
        low, high = entry["ci95"]
        a, b = labels[entry["a"]], labels[entry["b"]]
        if low > 0 or high < 0:
            finding = f"{a if low > 0 else b} better"
        else:
            finding = "no difference (the interval contains 0)"
        scope = "all" if entry["all_tasks"] else "only"
        lines.append(
            f"- {entry['budget']} budget, {a} − {b}: {entry['difference']:+.3f} test MCC, 95 % interval "
            f"[{low:+.3f}, {high:+.3f}], {scope} {entry['tasks']} task(s): **{finding}**."
        )
    return "\n".join(lines) + "\n"


RENDERERS = {"demo": demo, "study": study}


def rendered(text: str, results: Path = RESULTS) -> str:
    """`text` with every figures block rendered from the results files; an unknown block name is an error."""

    def render(match: re.Match) -> str:
        name = match["name"]
        if name not in RENDERERS:
            raise ValueError(f"README.md: no renderer for figures block {name!r} (known: {sorted(RENDERERS)})")
        return match.group(1) + RENDERERS[name](results) + match.group(4)

    return BLOCK.sub(render, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md differs from its results files")
    args = parser.parse_args(argv)
    readme = REPOSITORY / "README.md"
    text = readme.read_text()
    new = rendered(text)
    if args.check:
        if new != text:
            print("README.md: its figures differ from the results files; run python -m nucel.benchmarks.readme_figures")
            return 1
        return 0
    write_text_atomically(readme, new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
