"""Attention maps: rows are distributions over real tokens, local layers stay in their window, motif SNR, and
figures a biologist can read (base-pair axes, genomic coordinates, labelled colour bars, a motif legend)."""

import json
import warnings

import numpy as np
import pytest
import torch

from nucel import NucELConfig, NucELModel
from nucel.cli import main
from nucel.core.attention_maps import (
    attention_figure,
    attention_maps,
    find_motif,
    global_layers,
    motif_snr,
    plot_attention,
    plot_snr,
    received_attention,
)
from nucel.core.models import load_encoder, save_model_folder
from nucel.core.plots import pyplot


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory):
    torch.manual_seed(0)
    return save_model_folder(NucELModel(NucELConfig.from_preset("tiny")), tmp_path_factory.mktemp("models") / "encoder")


@pytest.fixture(scope="module")
def encoder(encoder_folder):
    return load_encoder(str(encoder_folder), "cpu")


def random_dna(length: int, seed: int) -> str:
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), size=length))


def test_rows_sum_to_one_over_real_tokens_in_a_padded_batch(encoder):
    model, tokenizer = encoder
    sequences = [random_dna(200, 1), random_dna(37, 2), "ACGTNNacgt"]  # padded to 201 tokens together
    maps = attention_maps(model, tokenizer, sequences, progress=False)
    for sequence, array in zip(sequences, maps):
        tokens = len(sequence) + 1  # [CLS] and the bases
        assert array.shape == (4, 4, tokens, tokens)  # layers, heads, query, key
        np.testing.assert_allclose(array.sum(axis=-1), 1.0, atol=1e-5)
        assert (array >= 0).all()
    # The short sequence's maps are the same as when it runs alone: padding took no attention.
    alone = attention_maps(model, tokenizer, sequences[1:2], progress=False)[0]
    np.testing.assert_allclose(maps[1], alone, atol=1e-5)


def test_local_layers_attend_only_within_the_window(encoder):
    model, tokenizer = encoder
    array = attention_maps(model, tokenizer, [random_dna(300, 3)], layers=[0, 1], heads=[2], progress=False)[0]
    assert array.shape == (2, 1, 301, 301)
    distance = np.abs(np.arange(301)[:, None] - np.arange(301)[None, :])
    assert array[1, 0][distance > model.config.sliding_window].max() == 0.0  # layer 1 is local
    assert array[0, 0][distance > model.config.sliding_window].min() > 0.0  # layer 0 is global
    with pytest.raises(ValueError, match="head 4 does not exist"):
        attention_maps(model, tokenizer, ["ACGT"], heads=[4], progress=False)


def test_motif_snr_against_a_hand_computation():
    # 1 layer, tokens: [CLS], 6 bases; received attention made up by hand.
    received = np.array([[0.5, 0.1, 0.3, 0.3, 0.1, 0.1, 0.1]])
    snr = motif_snr(received, [(1, 3)])  # bases 1 and 2 (tokens 2 and 3)
    assert snr == pytest.approx([0.3 / 0.1])
    with pytest.raises(ValueError, match="both motif and background"):
        motif_snr(received, [(0, 6)])


def test_received_attention_is_the_mean_over_heads_and_queries(encoder):
    model, tokenizer = encoder
    sequence = random_dna(80, 4)
    full = attention_maps(model, tokenizer, [sequence], progress=False)[0]
    received = received_attention(model, tokenizer, [sequence], global_layers(model.config), progress=False)[0]
    np.testing.assert_allclose(received, full[global_layers(model.config)].mean(axis=(1, 2)), atol=1e-6)
    assert received.sum(axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)  # each query distributes one unit


def test_find_motif():
    assert find_motif("acgTATAATataat", "TATAAT") == [(3, 9), (8, 14)]
    assert find_motif("ACGT", "GGG") == []


def test_plots_are_png(tmp_path):
    maps = np.random.default_rng(0).dirichlet(np.ones(12), size=(2, 1, 12))
    plot_attention(maps, [0, 3], ["mean"], tmp_path / "attention.png", NucELConfig.from_preset("tiny"), [(2, 5)])
    plot_snr({"before": [1.0, 1.1], "after": [2.0, 3.5]}, [0, 3], tmp_path / "snr.png")
    for name in ("attention.png", "snr.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_attention_command(encoder_folder, tmp_path, capsys):
    sequence = random_dna(60, 5)[:20] + "TATAAT" + random_dna(60, 6)[:40]
    output = tmp_path / "maps"
    assert (
        main(
            [
                "attention",
                "--model",
                str(encoder_folder),
                "--sequence",
                sequence,
                "--motif",
                "TATAAT",
                "-o",
                str(output),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    array = np.load(output / "attention.npy")
    assert array.shape == (2, 1, 67, 67)  # the global layers 0 and 3, the mean over heads
    description = json.loads((output / "attention.json").read_text())
    assert description["layers"] == [0, 3] and description["heads"] == ["mean"]
    assert (output / "attention.png").read_bytes()[:4] == b"\x89PNG"
    assert (output / "snr.tsv").read_text().splitlines()[0] == "layer\tglobal\tsnr"
    assert "motif SNR" in capsys.readouterr().out


def colour_bars(figure) -> list:
    """The colour-bar axes of a figure: the axes matplotlib made for `figure.colorbar`."""
    return [axis for axis in figure.axes if axis.get_label() == "<colorbar>"]


def test_attention_figure_has_bp_axes_labelled_colour_bars_and_a_motif_legend():
    # 1 layer, 2 heads, [CLS] + 30 bases; the bases start at chr7:1,000,001.
    maps = np.random.default_rng(0).dirichlet(np.ones(31), size=(1, 2, 31))
    figure = attention_figure(
        maps,
        [3],
        ["0", "1"],
        NucELConfig.from_preset("tiny"),
        {"TATAAT": [(4, 10)], "CAAT": [(20, 24)]},
        "test",
        first_position=1_000_001,
        chrom="chr7",
    )
    try:
        panels = [axis for axis in figure.axes if axis.get_label() != "<colorbar>" and axis.images]
        assert len(panels) == 2
        for axis in panels:
            assert (
                axis.get_xlabel() == "key: position on chr7 (bp)"
                and axis.get_ylabel() == "query: position on chr7 (bp)"
            )
            # The image covers the bases only ([CLS] dropped), centred on their coordinates.
            image = axis.images[0]
            assert image.get_array().shape == (30, 30)
            assert image.get_extent() == [1_000_000.5, 1_000_030.5, 1_000_030.5, 1_000_000.5]
            # The colour scale stops at the panel's 99th percentile, and the colour bar says so.
            assert image.norm.vmax == pytest.approx(np.percentile(np.asarray(image.get_array()), 99))
        bars = colour_bars(figure)
        assert len(bars) == 2
        for bar, axis in zip(bars, panels):
            label = bar.get_ylabel()
            assert label.startswith("attention weight (fraction of the query's attention)")
            assert "clipped at the 99th percentile" in label and f"{axis.images[0].norm.vmax:.3g}" in label
        legend = figure.legends[0]
        assert [text.get_text() for text in legend.get_texts()] == [
            "TATAAT: 1 occurrence(s), outlined as key and query",
            "CAAT: 1 occurrence(s), outlined as key and query",
        ]
        assert "[CLS] row and column not shown" in figure._suptitle.get_text()
    finally:
        pyplot().close(figure)


def test_attention_figure_without_coordinates_counts_bases_from_one():
    maps = np.random.default_rng(1).dirichlet(np.ones(13), size=(1, 1, 13))
    figure = attention_figure(maps, [0], ["mean"])
    try:
        axis = figure.axes[0]
        assert axis.get_xlabel() == "key: position in the sequence (bp)"
        assert axis.images[0].get_extent() == [0.5, 12.5, 12.5, 0.5]
        assert not figure.legends  # no motifs, no legend
    finally:
        pyplot().close(figure)


def test_attention_command_with_a_region_labels_genomic_coordinates(encoder_folder, tmp_path):
    chromosome = random_dna(300, 7)
    reference = tmp_path / "genome.fa"
    reference.write_text(f">chr7\n{chromosome}\n")
    output = tmp_path / "maps"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert (
            main(
                [
                    "attention",
                    "--model",
                    str(encoder_folder),
                    "--region",
                    "chr7:101-160",
                    "--reference",
                    str(reference),
                    "--motif",
                    chromosome[110:116],
                    "-o",
                    str(output),
                    "--device",
                    "cpu",
                ]
            )
            == 0
        )
    description = json.loads((output / "attention.json").read_text())
    assert description["chrom"] == "chr7" and description["first_position"] == 101 and description["length_bp"] == 60
    assert np.load(output / "attention.npy").shape == (2, 1, 61, 61)
    assert (
        main(["attention", "--model", str(encoder_folder), "--region", "chr7:101-160", "-o", str(tmp_path / "x")]) != 0
    )  # no --reference


def test_maps_that_would_not_fit_are_refused_before_any_work():
    """A 12-kbp sequence on a tiny model needs tens of GiB on the eager path: refused with the figure and the
    longest length that fits, not a traceback after minutes."""
    from nucel.core.attention_maps import attention_memory_bytes, check_attention_memory
    from nucel.modeling_nucel import NucELConfig

    config = NucELConfig.from_preset("tiny")
    tokens = 12_001
    assert attention_memory_bytes(config, tokens) == (2 * 4 + 2) * 4 * tokens**2 * 4
    with pytest.raises(
        ValueError,
        match=r"attention maps of 12,000 bp need about 21\.5 GiB .* and 8\.0 GiB is "
        r"available: give at most 7,326 bp",
    ):
        check_attention_memory(config, tokens, available=8 << 30)
    check_attention_memory(config, 7_326 + 1, available=8 << 30)  # the length it names fits ([CLS] + bases) ...
    with pytest.raises(ValueError):
        check_attention_memory(config, 7_327 + 1, available=8 << 30)  # ... and one base more does not
