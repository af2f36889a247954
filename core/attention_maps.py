"""Attention maps of a NucEL encoder, and the paper's motif signal-to-noise ratio.

    nucel attention --model MODEL --sequence ACGT... --layers 0,3 --motif TATAAT -o attention/
    nucel attention --model MODEL --region chr1:1001-1200 --reference genome.fa -o attention/   (chr1 axes)

Maps are computed on the eager path (`output_attentions=True`): fused kernels (SDPA, flash-attn) cannot return
attention weights. A map covers the real tokens `[CLS] bases` (index 0 is [CLS], base i is index i + 1);
row q holds how query q distributes its attention over the keys, so each row sums to one, and padding of a
batch never receives any.

Motif signal-to-noise ratio (SNR) of a layer: the attention each key position receives, averaged over heads
and over all real query positions, then averaged over the motif positions and divided by the same average over
the background (every other base; [CLS] is left out of both, since it acts as an attention sink).
SNR 1 means the layer attends to the motifs no more than to any other base.

The heatmap (attention.png) shows the bases only, on base-pair axes (1-based positions in the sequence, or genomic
coordinates with `--region`); the [CLS] row and column are left out of the picture (not of attention.npy), since
its attention-sink weights would set the colour scale. Each panel's colour scale is capped at its 99th percentile,
as the colour bar says, and motif occurrences are outlined and named in the legend.
"""

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from nucel.core.plots import pyplot, save_figure
from nucel.core.windows import base_token_ids, length_sorted_batches, pad_batch
from nucel.tokenization import TOKENS_AFTER_BASES, TOKENS_BEFORE_BASES, with_special_tokens

CLIP_PERCENTILE = 99  # each heatmap's colour scale stops here, so that a few large weights do not wash out the rest
MOTIF_COLOURS = ("red", "orange", "magenta", "cyan", "white")


def global_layers(config) -> list[int]:
    return [i for i in range(config.num_hidden_layers) if config.is_global_layer(i)]


def attention_memory_bytes(config, tokens: int, rows: int = 1) -> int:
    """Peak memory of one batch's maps: the eager path holds every layer's weights (rows, heads, tokens, tokens) in
    float32 at once, and each is copied out once more per sequence; a layer's scores need a second buffer while
    its softmax runs. So (2 × layers + 2) maps of heads × tokens² weights per row: quadratic in the length."""
    return (2 * config.num_hidden_layers + 2) * rows * config.num_attention_heads * tokens * tokens * 4


def available_memory_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (Linux); None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_attention_memory(config, tokens: int, rows: int = 1, available: int | None = None) -> None:
    """Refuse, before computing anything, maps that would not fit in the memory available, with the figure and
    the longest sequence that fits."""
    available = available_memory_bytes() if available is None else available
    needed = attention_memory_bytes(config, tokens, rows)
    if available is None or needed <= available:
        return
    per_token_pair = attention_memory_bytes(config, 1, rows)
    longest = int((available / per_token_pair) ** 0.5) - TOKENS_BEFORE_BASES - TOKENS_AFTER_BASES
    raise ValueError(
        f"attention maps of {tokens - TOKENS_BEFORE_BASES - TOKENS_AFTER_BASES:,} bp need about "
        f"{needed / 2**30:.1f} GiB "
        f"({config.num_hidden_layers} layers × {config.num_attention_heads} heads × {tokens:,}² weights, float32, held "
        f"at once by the eager path) and {available / 2**30:.1f} GiB is available: give at most {max(longest, 0):,} bp "
        "(a shorter --sequence or --region), or a machine with more memory"
    )


@torch.inference_mode()
def attention_batches(model, tokenizer, sequences: list[str], batch_size: int = 8, progress: bool = True):
    """Yield (sequence index, attentions) with one (heads, tokens, tokens) tensor per layer, real tokens only."""
    rows = [with_special_tokens(base_token_ids(tokenizer, s)) for s in sequences]
    device = next(model.parameters()).device
    batches = length_sorted_batches([len(r) for r in rows], batch_size)
    for batch in batches:  # every batch checked before the first is computed
        check_attention_memory(model.config, max(len(rows[i]) for i in batch), len(batch))
    for batch in tqdm(batches, desc="attention", unit="batch", disable=not progress):
        input_ids, attention_mask = pad_batch([rows[i] for i in batch], model.config.pad_token_id)
        outputs = model(
            input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), output_attentions=True
        )
        for row, index in enumerate(batch):
            length = len(rows[index])
            yield index, [layer[row, :, :length, :length].float().cpu() for layer in outputs.attentions]


def attention_maps(
    model,
    tokenizer,
    sequences: list[str],
    layers: list[int] | None = None,
    heads: list[int] | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> list[np.ndarray]:
    """Per sequence, an array (layers, heads, tokens, tokens) for the chosen layers and heads (default: all)."""
    layers = list(range(model.config.num_hidden_layers)) if layers is None else layers
    heads = list(range(model.config.num_attention_heads)) if heads is None else heads
    check_indices(layers, model.config.num_hidden_layers, "layer")
    check_indices(heads, model.config.num_attention_heads, "head")
    maps = [None] * len(sequences)
    for index, attentions in attention_batches(model, tokenizer, sequences, batch_size, progress):
        maps[index] = np.stack([attentions[layer][heads].numpy() for layer in layers])
    return maps


def check_indices(indices: list[int], count: int, what: str) -> None:
    bad = [i for i in indices if not 0 <= i < count]
    if bad:
        raise ValueError(f"{what} {bad[0]} does not exist: this model has {what}s 0..{count - 1}")


def received_attention(
    model, tokenizer, sequences: list[str], layers: list[int], batch_size: int = 8, progress: bool = True
) -> list[np.ndarray]:
    """Per sequence, an array (layers, tokens): attention received by each key, mean over heads and queries."""
    received = [None] * len(sequences)
    for index, attentions in attention_batches(model, tokenizer, sequences, batch_size, progress):
        received[index] = np.stack([attentions[layer].mean(dim=(0, 1)).numpy() for layer in layers])
    return received


def motif_snr(received: np.ndarray, motif_spans: list[tuple[int, int]]) -> np.ndarray:
    """SNR per layer from `received_attention` of one sequence; motif spans are [start, end) in 0-based bases."""
    number_of_bases = received.shape[-1] - TOKENS_BEFORE_BASES - TOKENS_AFTER_BASES
    is_motif = np.zeros(number_of_bases, dtype=bool)
    for start, end in motif_spans:
        is_motif[start:end] = True
    if is_motif.all() or not is_motif.any():
        raise ValueError("the SNR needs both motif and background bases")
    on_bases = received[:, TOKENS_BEFORE_BASES : TOKENS_BEFORE_BASES + number_of_bases]  # drop [CLS]
    return on_bases[:, is_motif].mean(axis=1) / on_bases[:, ~is_motif].mean(axis=1)


def snr_per_layer(
    model,
    tokenizer,
    sequences: list[str],
    motif_spans: list[list[tuple[int, int]]],
    layers: list[int] | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> np.ndarray:
    """Mean over sequences of `motif_snr`, one value per layer (default: the global layers)."""
    layers = global_layers(model.config) if layers is None else layers
    received = received_attention(model, tokenizer, sequences, layers, batch_size, progress)
    return np.mean([motif_snr(r, spans) for r, spans in zip(received, motif_spans)], axis=0)


def find_motif(sequence: str, motif: str) -> list[tuple[int, int]]:
    """[start, end) of every exact (possibly overlapping) occurrence of `motif` in `sequence`, case-insensitive."""
    sequence, motif = sequence.upper(), motif.upper()
    return [(i, i + len(motif)) for i in range(len(sequence) - len(motif) + 1) if sequence.startswith(motif, i)]


# ----------------------------------------------------------------------------------------------------------------
# Plots


def layer_label(layer: int, config=None) -> str:
    if config is None:
        return f"layer {layer}"
    return f"layer {layer} ({'global' if config.is_global_layer(layer) else 'local'})"


def position_label(axis_name: str, chrom: str) -> str:
    return f"{axis_name}: position on {chrom} (bp)" if chrom else f"{axis_name}: position in the sequence (bp)"


def attention_figure(
    maps: np.ndarray,
    layers: list[int],
    head_labels: list[str],
    config=None,
    motif_spans: list[tuple[int, int]] | dict[str, list[tuple[int, int]]] = (),
    title: str = "",
    first_position: int = 1,
    chrom: str = "",
):
    """Heatmaps of `maps` (layers, heads, tokens, tokens), bases only: one panel per layer and head, four a row.

    Axes are base-pair positions: base i of the sequence is `first_position + i` (on `chrom`, when given). Motif
    spans ([start, end) in 0-based bases; a dict names them, one legend entry each) are outlined. Each colour bar
    says what the colour is and where its scale was clipped.
    """
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    plt = pyplot()
    motifs = motif_spans if isinstance(motif_spans, dict) else ({"motif": list(motif_spans)} if motif_spans else {})
    bases = maps[
        ...,
        TOKENS_BEFORE_BASES : maps.shape[-2] - TOKENS_AFTER_BASES,
        TOKENS_BEFORE_BASES : maps.shape[-1] - TOKENS_AFTER_BASES,
    ]
    first, last = first_position, first_position + bases.shape[-1] - 1
    extent = (first - 0.5, last + 0.5, last + 0.5, first - 0.5)  # pixel i is centred on its base's coordinate
    coordinate = FuncFormatter(lambda value, _: f"{int(round(value)):,}")
    panels = [(layer, head, bases[r, c]) for r, layer in enumerate(layers) for c, head in enumerate(head_labels)]
    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.9 * columns, 3.5 * rows + 0.9), squeeze=False)
    for axis in axes.flat[len(panels) :]:
        axis.axis("off")
    for axis, (layer, head, panel) in zip(axes.flat, panels):
        clip = max(float(np.percentile(panel, CLIP_PERCENTILE)), 1e-6)
        image = axis.imshow(panel, cmap="viridis", vmin=0, vmax=clip, interpolation="nearest", extent=extent)
        axis.set_title(f"{layer_label(layer, config)}, head {head}", fontsize=9)
        for colour, spans in zip(MOTIF_COLOURS * len(motifs), motifs.values()):
            for start, end in spans:
                low, high = first + start - 0.5, first + end - 0.5
                axis.axvspan(low, high, fill=False, edgecolor=colour, linewidth=0.8)
                axis.axhspan(low, high, fill=False, edgecolor=colour, linewidth=0.8)
        axis.set_xlabel(position_label("key", chrom), fontsize=8)
        axis.set_ylabel(position_label("query", chrom), fontsize=8)
        for ticks in (axis.xaxis, axis.yaxis):
            ticks.set_major_locator(MaxNLocator(5, integer=True))
            ticks.set_major_formatter(coordinate)
        axis.tick_params(labelsize=7)
        colour_bar = figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, extend="max")
        colour_bar.set_label(
            f"attention weight (fraction of the query's attention)\nclipped at the {CLIP_PERCENTILE}th "
            f"percentile, {clip:.3g}",
            fontsize=7,
        )
        colour_bar.ax.tick_params(labelsize=6)
    if motifs:
        handles = [
            Patch(fill=False, edgecolor=colour, label=f"{name}: {len(spans)} occurrence(s), outlined as key and query")
            for colour, (name, spans) in zip(MOTIF_COLOURS * len(motifs), motifs.items())
        ]
        figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 3), fontsize=8, frameon=False)
    note = "row = a query base's attention over the key bases; [CLS] row and column not shown"
    figure.suptitle(f"{title}\n{note}" if title else note, fontsize=9, wrap=True)
    figure.tight_layout(rect=(0, 0.06 if motifs else 0, 1, 1))
    return figure


def plot_attention(
    maps: np.ndarray,
    layers: list[int],
    head_labels: list[str],
    path: str | Path,
    config=None,
    motif_spans: list[tuple[int, int]] | dict[str, list[tuple[int, int]]] = (),
    title: str = "",
    first_position: int = 1,
    chrom: str = "",
) -> None:
    """`attention_figure` saved as a PNG at `path`."""
    save_figure(attention_figure(maps, layers, head_labels, config, motif_spans, title, first_position, chrom), path)


def plot_snr(series: dict[str, list[float]], layers: list[int], path: str | Path, config=None, title: str = "") -> None:
    """Grouped bars of SNR per layer for each named model (like the paper's Figure 4); a dashed line at 1."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(max(5.0, 1.1 * len(layers) * len(series) + 1.5), 3.6))
    width = 0.8 / len(series)
    positions = np.arange(len(layers))
    for k, (label, values) in enumerate(series.items()):
        bars = axis.bar(positions + (k - (len(series) - 1) / 2) * width, values, width, label=label)
        axis.bar_label(bars, fmt="%.2f", fontsize=7)
    axis.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="no enrichment (SNR = 1)")
    axis.set_xticks(positions, [layer_label(layer, config).replace(" (", "\n(") for layer in layers], fontsize=8)
    axis.set_ylabel("motif attention SNR")
    axis.set_title(title or "attention received at motif positions / background", fontsize=9, wrap=True)
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    save_figure(figure, path)
