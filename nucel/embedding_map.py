"""A 2-D map of per-sequence embeddings (scikit-learn's PCA or t-SNE), each point coloured by a label of its sequence.

    nucel embed --model MODEL sequences.csv -o embeddings.npy --map map.png --map-method tsne --label-column family

PCA axes say what share of the embeddings' variance they hold. t-SNE axes have no unit: only neighbourhoods mean
something, not the distances between clusters or their sizes. Labels come from a column of the CSV/TSV input, one
per record in the order the records are read (the order of the embeddings). Each of the 20 most frequent labels gets
a colour and a legend entry, the others are grey ("other"); numeric labels with more than 20 distinct values are
drawn on a continuous colour scale instead.
"""

from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from nucel.core.plots import pyplot, save_figure
from nucel.core.sequences import is_fasta, iter_sequences
from nucel.core.tables import table_rows

MAP_METHODS = ("pca", "tsne")
MAX_CATEGORIES = 20  # more colours than this cannot be told apart
NO_LABEL = "(none)"  # an empty label cell
OTHER = "other"


def check_map_output(output: Path) -> None:
    if Path(output).suffix.lower() != ".png":
        raise ValueError(f"{output}: the map is a PNG image; give a file name ending in .png (--map)")


def check_map_size(sequences: int) -> None:
    if sequences < 3:
        raise ValueError(f"{sequences} sequence(s) embedded; a map needs at least 3 sequences")


def project(embeddings: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """The (n, 2) map coordinates of `embeddings` (n, dim), one row per sequence."""
    if method not in MAP_METHODS:
        raise ValueError(f"map method must be one of {MAP_METHODS}, got {method!r} (--map-method)")
    embeddings = np.asarray(embeddings, dtype=np.float64)  # float16 outputs are fitted in full precision
    if embeddings.ndim != 2:
        raise ValueError(
            f"a map needs one vector per sequence, an (n, dim) array, got shape {embeddings.shape}: "
            "map pooled embeddings, not per-base ones"
        )
    check_map_size(len(embeddings))
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(embeddings)
    # t-SNE needs a perplexity below the number of points: scikit-learn's default 30, less for small inputs.
    perplexity = min(30.0, (len(embeddings) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(embeddings)


def axis_labels(method: str, embeddings: np.ndarray, points: np.ndarray) -> list[str]:
    """PCA: each component's share of the variance (scikit-learn's explained_variance_ratio_: the variance along
    the axis over the embeddings' total variance). t-SNE: the axes' names only, since they have no unit."""
    if method == "tsne":
        return ["t-SNE 1", "t-SNE 2"]
    shares = points.var(axis=0) / np.asarray(embeddings, dtype=np.float64).var(axis=0).sum()
    return [f"PC{axis + 1} ({100 * share:.1f} % of variance)" for axis, share in enumerate(shares)]


def read_labels(
    path: str | Path, label_column: str, sequence_column: str | None = None, id_column: str | None = None
) -> list[str]:
    """The `label_column` cell of each record of a CSV/TSV file, one per record `iter_sequences` reads, in its
    order (so one per embedding). Empty cells are "(none)"."""
    path = Path(path)
    if is_fasta(path):
        raise ValueError("--label-column needs a CSV or TSV input; FASTA records have no label column")
    columns, rows = table_rows(path)
    if label_column not in columns:
        raise ValueError(f"{path}: no column {label_column!r} (columns: {', '.join(columns)}); check --label-column")
    # Read beside the records themselves: the same rows, and the input's own checks (sequence column, DNA).
    records = iter_sequences(path, sequence_column, id_column)
    return [(row[label_column] or "").strip() or NO_LABEL for _, (_, row) in zip(records, rows, strict=True)]


def numeric_values(labels: list[str]) -> np.ndarray | None:
    """The labels as numbers when every one is a finite number, else None."""
    try:
        values = np.array([float(label) for label in labels])
    except ValueError:
        return None
    return values if np.isfinite(values).all() else None


def draw_categories(axis, points: np.ndarray, labels: list[str], size: float, label_name: str) -> None:
    """One colour per label, the most frequent first in the legend (numbers in their order); beyond
    MAX_CATEGORIES, the rarest labels are drawn grey, underneath, as one "other" entry."""
    counts = Counter(labels)
    shown = [label for label, _ in counts.most_common(MAX_CATEGORIES)]
    if numeric_values(shown) is not None:
        shown.sort(key=float)
    labels = np.asarray(labels)
    colours = pyplot().get_cmap("tab10" if len(shown) <= 10 else "tab20")
    style = {"s": size, "alpha": 0.8, "linewidths": 0}
    rest = ~np.isin(labels, shown)
    other = (
        axis.scatter(
            points[rest, 0],
            points[rest, 1],
            color="lightgrey",
            label=f"{OTHER} ({rest.sum():,} in {len(counts) - len(shown)} labels)",
            **style,
        )
        if rest.any()
        else None
    )
    handles = []
    for index, label in enumerate(shown):
        chosen = labels == label
        handles.append(
            axis.scatter(
                points[chosen, 0], points[chosen, 1], color=colours(index), label=f"{label} ({chosen.sum():,})", **style
            )
        )
    # Outside the axes, so that no point is hidden; legend markers at a readable size whatever the points' size.
    axis.legend(
        handles=handles + ([other] if other else []),
        title=label_name,
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        fontsize=8,
        frameon=False,
        markerscale=max(1.0, (30 / size) ** 0.5),
    )


def map_figure(
    points: np.ndarray, labels: list[str] | None, axis_names: list[str], title: str = "", label_name: str = "label"
):
    """The scatter plot of `points` (n, 2) coloured by `labels` (one per point; None: one colour). Categories get
    a legend titled `label_name`; many distinct numbers a colour bar labelled `label_name`."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(8, 6), layout="constrained")
    size = float(np.clip(4000 / len(points), 2, 30))  # smaller points when there are many, so that clusters show
    values = None if labels is None else numeric_values(labels)
    if labels is None:
        axis.scatter(points[:, 0], points[:, 1], s=size, alpha=0.8, linewidths=0)
    elif values is not None and len(set(values)) > MAX_CATEGORIES:
        drawn = axis.scatter(points[:, 0], points[:, 1], c=values, cmap="viridis", s=size, alpha=0.8, linewidths=0)
        figure.colorbar(drawn, ax=axis, label=label_name)
    else:
        draw_categories(axis, points, labels, size, label_name)
    axis.set_xlabel(axis_names[0])
    axis.set_ylabel(axis_names[1])
    axis.set_title(title)
    return figure


def write_embedding_map(
    embeddings: np.ndarray,
    labels: list[str] | None,
    output: Path,
    method: str = "pca",
    title: str = "",
    label_name: str = "label",
) -> Path:
    """Project `embeddings` (n, dim) with `method`, draw them coloured by `labels` (one per row, or None) and write
    the PNG `output` atomically. `label_name` titles the legend or colour bar (the label column's name)."""
    output = Path(output)
    check_map_output(output)
    embeddings = np.asarray(embeddings)
    if labels is not None and len(labels) != len(embeddings):
        raise ValueError(
            f"{len(labels)} labels for {len(embeddings)} embedded sequences; "
            "the label column needs one value per embedded sequence"
        )
    points = project(embeddings, method)
    name = "PCA" if method == "pca" else "t-SNE"
    figure = map_figure(
        points,
        labels,
        axis_labels(method, embeddings, points),
        title or f"{name} of {len(points):,} sequence embeddings",
        label_name,
    )
    save_figure(figure, output)
    return output
