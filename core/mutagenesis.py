"""In-silico mutagenesis: every substitution of every base of a sequence scored (llr, embedding distance or replaced
probability, as core/variant_scores.py defines them), in chunks for bounded memory, and its heatmap.
"""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from nucel.core.embeddings import READ_AHEAD_BATCHES
from nucel.core.plots import pyplot, save_figure
from nucel.core.variant_scores import make_variant, score_variants
from nucel.core.windows import DEFAULT_WINDOW
from nucel.modeling_nucel.configuration_nucel import BASES
from nucel.tokenization import (
    validate_dna,
)


def mutagenesis_chunks(
    sequence: str,
    generator=None,
    model=None,
    tokenizer=None,
    context_length=DEFAULT_WINDOW,
    batch_size=32,
    progress=True,
    first_position: int = 1,
    detector=None,
) -> Iterator[np.ndarray]:
    """The rows of `in_silico_mutagenesis`' matrix in order, a few batches of positions at a time."""
    if sum(given is not None for given in (generator, model, detector)) != 1:
        raise ValueError(
            "in-silico mutagenesis scores with exactly one of: a generator (llr), an encoder (embedding "
            "distance) or a discriminator with its RTD head (replaced probability)"
        )
    sequence = validate_dna(sequence, "the mutagenesis region")
    step = max(1, batch_size * READ_AHEAD_BATCHES // (len(BASES) - 1))  # positions per chunk: three variants each
    with tqdm(total=len(sequence), desc="mutagenesis", unit="bp", unit_scale=True, disable=not progress) as bar:
        for start in range(0, len(sequence), step):
            end = min(start + step, len(sequence))
            rows = np.full((end - start, len(BASES)), np.nan)
            variants = []
            for i in range(start, end):
                ref = sequence[i]
                if ref in BASES:
                    rows[i - start, BASES.index(ref)] = 0.0
                    variants += [
                        make_variant(
                            f"{first_position + i}{ref}>{alt}",
                            "",
                            first_position + i,
                            ref,
                            alt,
                            sequence,
                            i,
                            "in-silico mutagenesis",
                        )
                        for alt in BASES
                        if alt != ref
                    ]
            if variants:
                scores = next(
                    iter(
                        score_variants(
                            variants, generator, model, tokenizer, context_length, batch_size, False, detector
                        ).values()
                    )
                )
                for variant, score in zip(variants, scores):
                    rows[variant.offset - start, BASES.index(variant.alt)] = score
            bar.update(end - start)
            yield rows


def in_silico_mutagenesis(
    sequence: str,
    generator=None,
    model=None,
    tokenizer=None,
    context_length=DEFAULT_WINDOW,
    batch_size=32,
    progress=True,
    first_position: int = 1,
    detector=None,
) -> np.ndarray:
    """Score every single-base substitution of `sequence`: a (length, 4) matrix, columns A, C, G, T.

    With a generator the score is the llr, with an encoder (`model`) the embedding distance, with a discriminator
    with its RTD head (`detector`) the replaced probability p_replaced(alt) - p_replaced(ref). The entry of each
    position's own base is 0 (no change); rows of positions that are not A/C/G/T (N) are NaN.
    """
    return np.concatenate(
        list(
            mutagenesis_chunks(
                sequence, generator, model, tokenizer, context_length, batch_size, progress, first_position, detector
            )
        )
    )


# What each score means, for the colour bar (label) and the title (how to read the colours).
SCORE_LABELS = {
    "llr": (
        "llr = ln P(alt) - ln P(ref)",
        "llr: the generator's log-likelihood ratio of the substituted base at the masked position; "
        "blue < 0: less likely than the reference base, red > 0: more likely",
    ),
    "embedding_distance": (
        "embedding distance (Euclidean)",
        "embedding distance: how far the substitution moves the mean embedding of its context; "
        "0 = no change, brighter = larger change",
    ),
    "replaced_probability": (
        "p_replaced(alt) - p_replaced(ref)",
        "replaced probability: how much more the discriminator takes the substituted base for a "
        "replacement than the reference base; red > 0: more like a replacement (more damaging), "
        "blue < 0: less",
    ),
}
# Scores that are signed differences: drawn on a diverging scale around 0.
DIVERGING_SCORES = ("llr", "replaced_probability")


def mutagenesis_figure(matrix: np.ndarray, sequence: str, score_name: str, first_position: int = 1, title: str = ""):
    """Heatmap: substituted bases (rows) x positions (columns), positions on a base-pair axis from `first_position`.

    The reference base of each position is marked with a dot (its score is 0 by definition). Positions that are not
    A/C/G/T (N and other ambiguity codes) have no scores (NaN rows): they are drawn grey and named in the legend, with
    no NaN ever reaching a colour scale, so an N region draws without warnings.
    """
    from matplotlib.patches import Patch

    plt = pyplot()
    length = len(sequence)
    scored = np.isfinite(matrix)
    values = np.ma.masked_invalid(matrix.T)
    colour_label, reading = SCORE_LABELS.get(score_name, (score_name, score_name))
    figure, axes = plt.subplots(figsize=(min(max(6.0, 0.12 * length + 2), 30.0), 3.2))
    if score_name in DIVERGING_SCORES:  # diverging around 0: negative in blue, positive in red
        limit = float(np.abs(matrix[scored]).max()) if scored.any() else 0.0
        colour_map, low, high = "RdBu_r", -(limit or 1.0), limit or 1.0
    else:
        colour_map, low = "viridis", 0.0
        high = (float(matrix[scored].max()) if scored.any() else 0.0) or 1.0
    image = axes.imshow(
        values,
        aspect="auto",
        cmap=plt.get_cmap(colour_map).with_extremes(bad="lightgrey"),
        vmin=low,
        vmax=high,
        interpolation="nearest",
    )
    references = [(i, BASES.index(base)) for i, base in enumerate(sequence.upper()) if base in BASES]
    handles = [
        axes.scatter(
            [i for i, _ in references],
            [row for _, row in references],
            s=4,
            c="black",
            label="reference base (score 0 by definition)",
        )
    ]
    unscored = [i for i, base in enumerate(sequence.upper()) if base not in BASES]
    if unscored:
        handles.append(
            Patch(
                facecolor="lightgrey",
                edgecolor="none",
                label=f"not scored: {len(unscored)} position(s) that are N or another non-ACGT code",
            )
        )
    axes.set_yticks(range(len(BASES)), BASES)
    axes.set_ylabel("substituted base")
    step = max(1, length // 20)
    axes.set_xticks(range(0, length, step), [f"{first_position + i:,}" for i in range(0, length, step)])
    axes.set_xlabel("position (bp, 1-based)")
    axes.set_title(f"{title or f'in-silico mutagenesis ({score_name})'}\n{reading}", fontsize=9, wrap=True)
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, -0.28), ncol=2, fontsize=7, frameon=False)
    figure.colorbar(image, ax=axes, label=colour_label, fraction=0.03)
    figure.tight_layout()
    return figure


def plot_mutagenesis(
    matrix: np.ndarray, sequence: str, path: str | Path, score_name: str, first_position: int = 1, title: str = ""
) -> None:
    """`mutagenesis_figure` saved as a PNG at `path`."""
    save_figure(mutagenesis_figure(matrix, sequence, score_name, first_position, title), path)
