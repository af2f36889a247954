"""What the repository holds, as a reader of it meets it: no path of the machine it was written on, no citation of a
file the reader does not have, results as summaries, modules of a readable size, a README a newcomer reads in
minutes."""

import re
import subprocess
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
# Home and work folders of the machines the project is developed and tested on (written in pieces, so that this file
# does not match itself).
MACHINE_PATH = re.compile(
    "(?<![\\w.])/" + "(?:" + "|".join(["wo" + "rk", "ro" + "ot", "ho" + "me", "Us" + "ers"]) + ")/"
)
LARGEST_MODULE_LINES = 460  # "about 450": one concern a file
# The Hub-facing code, copied into every saved model folder: the model file (ModernBERT's ladder in one readable file)
# and its attention backends; splitting them would put more files into every checkpoint.
EXEMPT_MODULES = {"modeling_nucel/modeling_nucel.py", "modeling_nucel/attention_nucel.py"}
README_LINES = 200


def tracked_files() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files"], cwd=REPOSITORY, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files cannot be listed")
    return [REPOSITORY / name for name in names.splitlines() if (REPOSITORY / name).is_file()]


def text_of(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None  # a binary file (an image)
    return data.decode("utf-8", errors="replace")


def test_no_tracked_file_names_a_path_of_this_machine():
    found = []
    for path in tracked_files():
        text = text_of(path)
        for number, line in enumerate((text or "").splitlines(), start=1):
            if MACHINE_PATH.search(line):
                found.append(f"{path.relative_to(REPOSITORY)}:{number}: {line.strip()[:100]}")
    assert not found, "machine-local paths:\n" + "\n".join(found)


def test_nothing_cites_a_design_file_outside_the_repository():
    """The project's design document is docs/design.md; code and docs cite it, never a notes file a reader lacks."""
    design = "DE" + "SIGN"  # in pieces, so that this line does not cite it
    cited = re.compile(rf"(?<!docs/)\b{design}\.md|shared/{design}|notes/[A-Z_]+\.md")
    found = [
        f"{path.relative_to(REPOSITORY)}:{number}"
        for path in tracked_files()
        if path.suffix in (".py", ".md", ".yaml", ".toml")
        for number, line in enumerate((text_of(path) or "").splitlines(), start=1)
        if cited.search(line)
    ]
    assert not found, found
    assert (REPOSITORY / "docs" / "design.md").is_file()


def test_results_are_summaries_not_per_run_outputs():
    results = [path.relative_to(REPOSITORY) for path in tracked_files() if "results" in path.parts]
    per_run = [str(path) for path in results if "runs" in path.parts or path.name.endswith("_predictions.csv")]
    assert not per_run, per_run


def test_modules_stay_readable():
    sizes = {
        str(path.relative_to(REPOSITORY)): len(path.read_text().splitlines())
        for path in tracked_files()
        if path.suffix == ".py" and path.parts[len(REPOSITORY.parts)] != "tests"
    }
    too_long = {
        name: lines for name, lines in sizes.items() if lines > LARGEST_MODULE_LINES and name not in EXEMPT_MODULES
    }
    assert not too_long, f"modules over {LARGEST_MODULE_LINES} lines (split them by concern): {too_long}"


def test_readme_is_a_newcomers_page():
    readme = (REPOSITORY / "README.md").read_text()
    assert len(readme.splitlines()) <= README_LINES
    for command in ("make demo", "make test", "pip install", "FreakingPotato/NucEL", ".venv/bin"):
        assert command in readme, command
    linked = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert linked and all((REPOSITORY / link).is_file() for link in linked), linked


def test_the_readme_types_no_result_figures():
    """Figures live in the results files that the runs wrote: the README quotes them only in blocks generated from
    those files (benchmarks/readme_figures.py), and those blocks are what the files give."""
    from nucel.benchmarks.readme_figures import BLOCK, rendered

    text = (REPOSITORY / "README.md").read_text()
    assert rendered(text) == text, (
        "README.md's figures differ from the results: python -m nucel.benchmarks.readme_figures"
    )
    readme = BLOCK.sub("", text)
    figures = re.findall(r"(?<![\w.])0\.\d{2,}\b|\b\d+(?:\.\d+)? ?%|\b\d+(?:\.\d+)?×", readme)
    assert not figures, figures


def test_committed_reports_are_what_their_results_files_generate():
    import json

    from nucel.benchmarks.motif_order import results_markdown

    results = REPOSITORY / "benchmarks" / "results"
    assert (results / "motif_order.md").read_text() == results_markdown(
        json.loads((results / "motif_order.json").read_text())
    )
    from nucel.benchmarks.study_markdown import markdown

    study = json.loads((results / "pretraining_study.json").read_text())
    assert (results / "pretraining_study.md").read_text() == markdown(study)
