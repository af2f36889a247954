"""The in-silico mutagenesis figure: what its marks and colours mean is on it, and N regions draw without warnings."""

import warnings

import numpy as np
import pytest
import torch

from nucel import NucELConfig, NucELGenerator
from nucel.cli import main
from nucel.core.models import save_model_folder
from nucel.core.mutagenesis import mutagenesis_figure
from nucel.core.plots import pyplot

SEQUENCE = "ACGTNNNNACGTAC"


def matrix_for(sequence: str, seed: int = 0) -> np.ndarray:
    """A mutagenesis matrix as `in_silico_mutagenesis` returns it: 0 at the reference base, NaN rows at N."""
    matrix = np.random.default_rng(seed).normal(size=(len(sequence), 4))
    for i, base in enumerate(sequence):
        if base in "ACGT":
            matrix[i, "ACGT".index(base)] = 0.0
        else:
            matrix[i] = np.nan
    return matrix


@pytest.mark.parametrize("score_name", ["llr", "embedding_distance"])
def test_ism_figure_explains_its_marks_and_draws_n_positions_grey_without_warnings(score_name):
    matrix = matrix_for(SEQUENCE)
    if score_name == "embedding_distance":
        matrix = np.abs(matrix)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any RuntimeWarning (All-NaN slice, invalid value) fails the test
        figure = mutagenesis_figure(matrix, SEQUENCE, score_name, first_position=1_001, title="ISM of chr7:1,001-1,014")
    try:
        axis, bar = figure.axes
        title = axis.get_title()
        assert title.startswith("ISM of chr7:1,001-1,014\n")
        assert ("log-likelihood ratio" in title) if score_name == "llr" else ("mean embedding" in title)
        assert bar.get_ylabel() == (
            "llr = ln P(alt) - ln P(ref)" if score_name == "llr" else "embedding distance (Euclidean)"
        )
        assert axis.get_xlabel() == "position (bp, 1-based)" and axis.get_ylabel() == "substituted base"
        assert axis.get_xticklabels()[0].get_text() == "1,001"
        legend = [text.get_text() for text in axis.get_legend().get_texts()]
        assert legend == [
            "reference base (score 0 by definition)",
            "not scored: 4 position(s) that are N or another non-ACGT code",
        ]
        image = axis.images[0]
        assert image.get_array().mask[:, 4:8].all() and not image.get_array().mask[:, :4].any()
        assert image.cmap.get_bad()[:3] == pytest.approx((0.827, 0.827, 0.827), abs=1e-3)  # lightgrey
        assert np.isfinite([image.norm.vmin, image.norm.vmax]).all()
        if score_name == "llr":  # symmetric around 0, set by the largest scored magnitude
            assert image.norm.vmax == pytest.approx(np.nanmax(np.abs(matrix))) and image.norm.vmin == -image.norm.vmax
    finally:
        pyplot().close(figure)


def test_ism_figure_of_an_all_n_region_has_no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figure = mutagenesis_figure(matrix_for("NNNNNN"), "NNNNNN", "llr")
    try:
        assert [text.get_text() for text in figure.axes[0].get_legend().get_texts()][-1].startswith("not scored: 6")
    finally:
        pyplot().close(figure)


def test_ism_command_on_a_sequence_with_n_runs_without_warnings(tmp_path, recwarn):
    torch.manual_seed(0)
    generator = save_model_folder(
        NucELGenerator(NucELConfig.from_preset("tiny-generator", restrict_to_bases=True)), tmp_path / "generator"
    )
    sequence = "ACGTTGCATTAGGC" + "N" * 6 + "GGATCCATTAGCAT"
    assert (
        main(
            [
                "ism",
                "--sequence",
                sequence,
                "--generator",
                str(generator),
                "-o",
                str(tmp_path / "ism"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    rows = (tmp_path / "ism" / "ism.tsv").read_text().splitlines()[1:]
    assert [row.split("\t")[2] for row in rows[14:20]] == ["nan"] * 6
    assert (tmp_path / "ism" / "ism.png").read_bytes()[:4] == b"\x89PNG"
    numeric = [w for w in recwarn.list if issubclass(w.category, RuntimeWarning) or "nan" in str(w.message).lower()]
    assert numeric == [], [str(w.message) for w in numeric]
