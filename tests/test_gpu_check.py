"""benchmarks/gpu_check.py runs where there is no GPU: its --smoke mode (CPU, tiny preset, fp32) exercises the
parity check and the report, so the script a GPU user runs is not broken when they run it."""

import json

import pytest

from nucel.benchmarks import gpu_check


@pytest.mark.slow
def test_gpu_check_smoke_run_writes_a_report(tmp_path, capsys):
    assert gpu_check.main(["--smoke", "--budget-seconds", "0", "--output", str(tmp_path / "gpu")]) == 0
    results = json.loads((tmp_path / "gpu.json").read_text())
    ours = [row for row in results["parity"] if row["model"] == "NucEL"]
    assert {row["backend"] for row in ours} >= {"sdpa", "sdpa+compile", "flex_attention", "flex_attention+compile"}
    assert all(row["passed"] for row in ours)  # fp32 on CPU: every backend equals transformers' ModernBERT
    report = (tmp_path / "gpu.md").read_text()
    assert "## Parity" in report and "time budget" in report  # rows not run are listed, with the reason


def test_without_a_gpu_the_check_says_so_and_does_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--output", str(tmp_path / "gpu")]) == 0
    assert "no CUDA GPU" in capsys.readouterr().out and not (tmp_path / "gpu.md").exists()
