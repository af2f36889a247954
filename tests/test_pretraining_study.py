"""The pre-training study (benchmarks/pretraining_study.py): its pieces, and `--quick` end to end on real data."""

import json
from pathlib import Path

import pytest

from nucel.benchmarks import pretraining_study as study
from nucel.benchmarks import study_jobs, study_report
from nucel.cli import main as nucel_main

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FASTA = SHARED / "pretrain" / "human_hg38_chr2_1-2333275" / "chr2_1-2333275.fa.gz"
GUE = SHARED / "GUE"


def test_rises_needs_the_end_above_the_start_and_the_middle():
    series = lambda values: [{"step": i, "gain": v} for i, v in enumerate(values)]
    assert study_report.rises(series([0.0, 1.0, 2.0]), "gain") is True
    assert study_report.rises(series([0.0, 3.0, 1.0]), "gain") is False  # fell back below the middle
    assert study_report.rises(series([2.0, 1.0, 1.5]), "gain") is False
    assert study_report.rises(series([1.0]), "gain") is None


def test_choose_takes_the_highest_end_gain_and_acceptance_checks_every_bar():
    rows = [
        {"setting": "a", "gain_percent_end": 1.0, "auroc_end": 0.7, "gain_rises": True},
        {"setting": "b", "gain_percent_end": 3.5, "auroc_end": 0.6, "gain_rises": True},
        {"setting": "c", "gain_percent_end": None, "auroc_end": None, "gain_rises": None},
    ]
    best = study_report.choose(rows)
    assert best["setting"] == "b"
    verdict = study_report.acceptance(best)
    assert not verdict["met"] and list(verdict["checks"].values()) == [True, True, False]
    assert study_report.acceptance({"gain_percent_end": 3.0, "auroc_end": 0.62, "gain_rises": True})["met"]
    assert not study_report.acceptance(None)["met"]


def test_rtd_flops_count_the_generator_and_mlm_gets_the_same_total():
    weak = study_jobs.training_flops_per_step({"generator_preset": "tiny-generator-1x16"})
    strong = study_jobs.training_flops_per_step({"generator_preset": "tiny-generator"})
    mlm = study_jobs.training_flops_per_step({"objective": "mlm"})
    assert set(weak["networks"]) == {"generator", "discriminator"}
    assert weak["networks"]["discriminator"] == strong["networks"]["discriminator"]
    assert strong["networks"]["generator"] > weak["networks"]["generator"] > 0
    assert set(mlm["networks"]) == {"encoder"}
    # a discriminator-sized encoder costs about what the discriminator does: MLM gets a few % more steps
    assert 0.9 < mlm["per_step"] / weak["networks"]["discriminator"] < 1.1


def run_quick_study(output, work, *extra) -> int:
    paths = ["--fasta", str(FASTA), "--data", str(GUE), "--output", str(output), "--work-dir", str(work)]
    return nucel_main(["study", "--quick", *paths, *extra])


@pytest.mark.slow
@pytest.mark.skipif(
    not (FASTA.is_file() and (GUE / "tf" / "0").is_dir()),
    reason=f"needs the shared data ({FASTA} and {GUE}/tf/0), absent here",
)
def test_quick_study_writes_its_results(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    output, work = tmp_path / "results", tmp_path / "work"
    assert run_quick_study(output, work) == 0
    report = json.loads((output / "pretraining_study.json").read_text())
    assert (output / "pretraining_study.png").stat().st_size > 0
    markdown = (output / "pretraining_study.md").read_text()
    assert report["status"] == "finished" and "QUICK MODE" in markdown
    assert len(report["sweep"]) == len(study.QUICK.sweep) >= 3
    for row in report["sweep"]:
        assert row["steps"] == study.QUICK.sweep_steps and row["gain_percent_end"] is not None
    assert report["chosen"] == study_report.choose(report["sweep"])["setting"]
    rtd, mlm = report["pretraining"]["rtd"], report["pretraining"]["mlm"]
    assert rtd["steps"] == study.QUICK.pretrain_steps and mlm["objective"] == "mlm"
    assert abs(mlm["flops"] / rtd["flops"] - 1) < 0.01  # equal training compute, generator included
    cells = report["downstream"]["tf/0"]
    assert set(cells["finetune"]) == set(study_report.ARMS) and set(cells["probe"]) == set(study_report.PROBED_ARMS)
    assert all(-1 <= entry["mean"] <= 1 for kind in cells.values() for entry in kind.values())
    # a second run reuses every job
    assert run_quick_study(output, work) == 0
    assert json.loads((output / "pretraining_study.json").read_text())["downstream"] == report["downstream"]
    # --report-only rewrites the report from what has finished and runs nothing
    (work / "jobs" / "probe_random_tf_0_seed42.json").unlink()
    assert run_quick_study(output, work, "--report-only") == 0
    partial = json.loads((output / "pretraining_study.json").read_text())
    assert (
        partial["status"].startswith("stopped with") and not (work / "jobs" / "probe_random_tf_0_seed42.json").exists()
    )
    assert "random" not in partial["downstream"]["tf/0"]["probe"] and "--report-only" not in partial["command"]
