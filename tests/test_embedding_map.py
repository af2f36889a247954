"""The 2-D map of per-sequence embeddings: scikit-learn's projections, labels read in the order of the records,
and the figure's legend or colour bar."""

import numpy as np
import pytest
from sklearn.decomposition import PCA

from nucel.core.plots import pyplot
from nucel.core.sequences import iter_sequences
from nucel.embedding_map import MAX_CATEGORIES, axis_labels, map_figure, project, read_labels, write_embedding_map

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _close_figures():
    """The figures a test inspects stay open until it ends (pyplot keeps every open figure)."""
    yield
    pyplot().close("all")


def clusters(labels: list[str], dim: int = 16, seed: int = 0) -> np.ndarray:
    """Embeddings (len(labels), dim) around one centre per label."""
    rng = np.random.default_rng(seed)
    centres = {label: rng.normal(scale=5, size=dim) for label in dict.fromkeys(labels)}
    return np.stack([centres[label] + rng.normal(size=dim) for label in labels]).astype(np.float32)


def legend_texts(figure) -> list[str]:
    return [text.get_text() for text in figure.axes[0].get_legend().get_texts()]


def test_pca_is_scikit_learns_up_to_the_sign_of_each_axis():
    embeddings = np.random.default_rng(1).normal(size=(40, 24)).astype(np.float16)
    points = project(embeddings, "pca")
    reference = PCA(n_components=2).fit_transform(embeddings.astype(np.float64))
    assert points.shape == (40, 2)
    for axis in range(2):
        sign = np.sign(points[0, axis] * reference[0, axis])
        np.testing.assert_allclose(points[:, axis], sign * reference[:, axis], atol=1e-8)
    shares = PCA(n_components=2).fit(embeddings.astype(np.float64)).explained_variance_ratio_
    assert axis_labels("pca", embeddings, points) == [
        f"PC{i + 1} ({100 * share:.1f} % of variance)" for i, share in enumerate(shares)
    ]


def test_tsne_is_seeded_and_maps_even_three_sequences():
    embeddings = clusters(["a"] * 10 + ["b"] * 10)
    np.testing.assert_array_equal(project(embeddings, "tsne", seed=3), project(embeddings, "tsne", seed=3))
    assert project(embeddings[:3], "tsne").shape == (3, 2)  # perplexity (3 - 1) / 3


def test_fewer_than_three_sequences_or_an_unknown_method_are_refused():
    with pytest.raises(ValueError, match=r"^2 sequence\(s\) embedded; a map needs at least 3 sequences$"):
        project(np.ones((2, 8)), "pca")
    with pytest.raises(ValueError, match="--map-method"):
        project(np.ones((5, 8)), "umap")


@pytest.mark.parametrize("suffix, delimiter", [(".csv", ","), (".tsv", "\t")])
def test_labels_follow_the_records_of_a_table(tmp_path, suffix, delimiter):
    rows = [("r1", "ACGT", "promoter"), ("r2", "GGCC", ""), ("r3", "TTAA", " enhancer "), ("r4", "ACGN", "promoter")]
    path = tmp_path / f"input{suffix}"
    lines = [delimiter.join(("name", "dna", "family"))] + [delimiter.join(row) for row in rows]
    path.write_text("\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\n")  # a blank line, skipped by both
    records = [record.id for record in iter_sequences(path, "dna", "name")]
    assert records == ["r1", "r2", "r3", "r4"]
    assert read_labels(path, "family", "dna", "name") == ["promoter", "(none)", "enhancer", "promoter"]

    with pytest.raises(ValueError) as error:
        read_labels(path, "class", "dna", "name")
    assert str(error.value) == f"{path}: no column 'class' (columns: name, dna, family); check --label-column"


def test_fasta_has_no_label_column(tmp_path):
    path = tmp_path / "input.fa"
    path.write_text(">a\nACGT\n")
    with pytest.raises(
        ValueError, match="^--label-column needs a CSV or TSV input; FASTA records have no label column$"
    ):
        read_labels(path, "family")


def test_the_png_is_written_with_a_legend_of_the_labels(tmp_path):
    labels = ["promoter"] * 6 + ["enhancer"] * 4 + ["(none)"] * 2
    output = write_embedding_map(clusters(labels), labels, tmp_path / "maps" / "map.png", label_name="family")
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [path.name for path in output.parent.iterdir()] == ["map.png"]  # no staging file left behind

    embeddings = clusters(labels)
    points = project(embeddings, "pca")
    figure = map_figure(points, labels, axis_labels("pca", embeddings, points), label_name="family")
    assert legend_texts(figure) == ["promoter (6)", "enhancer (4)", "(none) (2)"]
    assert figure.axes[0].get_legend().get_title().get_text() == "family"
    assert figure.axes[0].get_xlabel().startswith("PC1 (")


def test_many_categories_end_in_other_and_many_numbers_on_a_colour_bar():
    labels = [f"family{i}" for i in range(25) for _ in range(2)] + ["family0"]  # family0 the most frequent
    points = np.random.default_rng(0).normal(size=(len(labels), 2))
    texts = legend_texts(map_figure(points, labels, ["t-SNE 1", "t-SNE 2"]))
    assert len(texts) == MAX_CATEGORIES + 1 and texts[0] == "family0 (3)"
    assert texts[-1] == "other (10 in 5 labels)"

    few_numbers = [str(i % 3) for i in range(30)]
    assert legend_texts(map_figure(points[:30], few_numbers, ["x", "y"])) == ["0 (10)", "1 (10)", "2 (10)"]

    values = [f"{value:.3f}" for value in np.linspace(0, 1, len(labels))]
    figure = map_figure(points, values, ["x", "y"], label_name="GC content")
    assert figure.axes[0].get_legend() is None
    assert figure.axes[1].get_ylabel() == "GC content"  # the colour bar's axis


def test_labels_must_match_the_embeddings(tmp_path):
    with pytest.raises(ValueError, match="2 labels for 4 embedded sequences"):
        write_embedding_map(np.ones((4, 8)), ["a", "b"], tmp_path / "map.png")
    with pytest.raises(ValueError, match=r"\.png"):
        write_embedding_map(np.ones((4, 8)), None, tmp_path / "map.pdf")


def test_nucel_embed_draws_the_map_of_what_it_wrote(tmp_path, capsys):
    """`nucel embed --map` writes the map beside the embeddings; a per-base map, a label column without a map and
    a missing label column are refused before anything is written."""
    import torch

    from nucel import NucELConfig, NucELModel, cli
    from nucel.core.models import save_model_folder

    torch.manual_seed(0)
    encoder = save_model_folder(NucELModel(NucELConfig.from_preset("tiny")), tmp_path / "encoder")
    rng = np.random.default_rng(0)
    rows = [
        (f"s{i}", "".join(rng.choice(list("GC" if i % 2 else "AT"), size=40)), "gc" if i % 2 else "at")
        for i in range(12)
    ]
    table = tmp_path / "seqs.csv"
    table.write_text("id,sequence,family\n" + "".join(f"{name},{sequence},{label}\n" for name, sequence, label in rows))
    argv = ["embed", "--model", str(encoder), str(table), "-o", str(tmp_path / "e.npy"), "--device", "cpu"]
    assert cli.main([*argv, "--map", str(tmp_path / "map.png"), "--label-column", "family"]) == 0
    assert (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "map.png" in capsys.readouterr().out
    vectors = np.load(tmp_path / "e.npy")
    assert vectors.shape == (12, 64)
    assert read_labels(table, "family") == [label for _, _, label in rows]
    capsys.readouterr()
    for extra, message in (
        (["--per-base", "--map", str(tmp_path / "m2.png")], "leave out --per-base"),
        (["--label-column", "family"], "give --map PNG too"),
        (["--map", str(tmp_path / "m3.png"), "--label-column", "colour"], "colour"),
        (["--map", str(tmp_path / "m3.jpg")], "ending in .png"),
    ):
        assert cli.main([*argv, "--overwrite", *extra]) == 2  # e.npy exists: the option checks come next
        assert message in capsys.readouterr().err
    assert not (tmp_path / "m2.png").exists() and not (tmp_path / "m3.png").exists()
    # Too few sequences for a map: refused before the model runs, so no embeddings are written either.
    (tmp_path / "two.csv").write_text("id,sequence\na,ACGT\nb,GGCC\n")
    assert (
        cli.main(
            [
                "embed",
                "--model",
                str(encoder),
                str(tmp_path / "two.csv"),
                "-o",
                str(tmp_path / "two.npy"),
                "--device",
                "cpu",
                "--map",
                str(tmp_path / "two.png"),
            ]
        )
        == 2
    )
    assert "needs at least 3 sequences" in capsys.readouterr().err and not (tmp_path / "two.npy").exists()
