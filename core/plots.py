"""Figures written as PNG files, without a display."""

from pathlib import Path

from nucel.core.files import atomic_file


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: str | Path) -> None:
    with atomic_file(path) as staging:
        figure.savefig(staging, dpi=120, format="png")
    pyplot().close(figure)
