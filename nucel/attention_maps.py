"""Attention maps of a NucEL encoder, and the paper's motif signal-to-noise ratio.

    nucel attention MODEL --sequence ACGT... --layers 0,3 --motif TATAAT -o attention/

Maps are computed on the eager path (`output_attentions=True`): fused kernels (SDPA, flash-attn) cannot return
attention weights. A map covers the real tokens `[CLS] bases` (index 0 is [CLS], base i is index i + 1);
row q holds how query q distributes its attention over the keys, so each row sums to one, and padding of a
batch never receives any.

Motif signal-to-noise ratio (SNR) of a layer: the attention each key position receives, averaged over heads
and over all real query positions, then averaged over the motif positions and divided by the same average over
the background (every other base; [CLS] is left out of both, since it acts as an attention sink).
SNR 1 means the layer attends to the motifs no more than to any other base.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .embed import base_token_ids, length_sorted_batches, load_encoder, pad_batch
from .folders import atomic_file
from .sequence_io import add_one_sequence_arguments, read_one_sequence
from .tokenization import TOKENS_AFTER_BASES, TOKENS_BEFORE_BASES, with_special_tokens


def global_layers(config) -> list[int]:
    return [i for i in range(config.num_hidden_layers) if config.is_global_layer(i)]


@torch.inference_mode()
def attention_batches(model, tokenizer, sequences: list[str], batch_size: int = 8, progress: bool = True):
    """Yield (sequence index, attentions) with one (heads, tokens, tokens) tensor per layer, real tokens only."""
    rows = [with_special_tokens(base_token_ids(tokenizer, s)) for s in sequences]
    device = next(model.parameters()).device
    for batch in tqdm(length_sorted_batches([len(r) for r in rows], batch_size), desc="attention", unit="batch", disable=not progress):
        input_ids, attention_mask = pad_batch([rows[i] for i in batch], model.config.pad_token_id)
        outputs = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), output_attentions=True)
        for row, index in enumerate(batch):
            length = len(rows[index])
            yield index, [layer[row, :, :length, :length].float().cpu() for layer in outputs.attentions]


def attention_maps(model, tokenizer, sequences: list[str], layers: list[int] | None = None, heads: list[int] | None = None,
                   batch_size: int = 8, progress: bool = True) -> list[np.ndarray]:
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


def received_attention(model, tokenizer, sequences: list[str], layers: list[int], batch_size: int = 8, progress: bool = True) -> list[np.ndarray]:
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


def snr_per_layer(model, tokenizer, sequences: list[str], motif_spans: list[list[tuple[int, int]]], layers: list[int] | None = None,
                  batch_size: int = 8, progress: bool = True) -> np.ndarray:
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


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: str | Path) -> None:
    with atomic_file(path) as staging:
        figure.savefig(staging, dpi=120, format="png")
    pyplot().close(figure)


def layer_label(layer: int, config=None) -> str:
    if config is None:
        return f"layer {layer}"
    return f"layer {layer} ({'global' if config.is_global_layer(layer) else 'local'})"


def plot_attention(maps: np.ndarray, layers: list[int], head_labels: list[str], path: str | Path, config=None,
                   motif_spans: list[tuple[int, int]] = (), title: str = "") -> None:
    """Heatmaps of `maps` (layers, heads, tokens, tokens): one panel per layer and head, four panels a row.
    Motif rows and columns are outlined in red. The colour scale stops at the 99th percentile of each panel,
    so that a few large weights do not wash out the rest."""
    plt = pyplot()
    panels = [(layer, head, maps[r, c]) for r, layer in enumerate(layers) for c, head in enumerate(head_labels)]
    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 3.2 * rows + 0.5), squeeze=False)
    for axis in axes.flat[len(panels):]:
        axis.axis("off")
    for axis, (layer, head, panel) in zip(axes.flat, panels):
        image = axis.imshow(panel, cmap="viridis", vmin=0, vmax=max(float(np.quantile(panel, 0.99)), 1e-6), interpolation="nearest")
        axis.set_title(f"{layer_label(layer, config)}, head {head}", fontsize=9)
        for start, end in motif_spans:  # bases start..end-1 are tokens start+1..end ([CLS] is token 0)
            axis.axvspan(start + 0.5, end + 0.5, fill=False, edgecolor="red", linewidth=0.8)
            axis.axhspan(start + 0.5, end + 0.5, fill=False, edgecolor="red", linewidth=0.8)
        axis.set_xlabel("key token", fontsize=8)
        axis.set_ylabel("query token", fontsize=8)
        axis.tick_params(labelsize=7)
        figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    if title:
        figure.suptitle(title, fontsize=9, wrap=True)
    figure.tight_layout()
    save_figure(figure, path)


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


# ----------------------------------------------------------------------------------------------------------------
# Command line


def parse_indices(text: str | None) -> list[int] | None:
    return None if text is None else [int(part) for part in text.split(",") if part.strip()]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "attention",
        help="attention maps of a sequence (arrays + heatmap PNG) and the motif SNR per layer",
        description=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="NucEL model folder or Hub id")
    add_one_sequence_arguments(parser)
    parser.add_argument("--layers", help="comma-separated layer indices (default: the global layers)")
    parser.add_argument("--heads", help="comma-separated head indices (default: the mean over all heads)")
    parser.add_argument("--motif", action="append", default=[], help="motif sequence whose positions are marked and scored (SNR); repeatable")
    parser.add_argument("-o", "--output-dir", required=True, help="folder for attention.npy, attention.json, attention.png (and snr.tsv)")
    parser.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    sequence = read_one_sequence(args.sequence, args.fasta, args.record)
    model, tokenizer = load_encoder(args.model, args.device)
    layers = parse_indices(args.layers) or global_layers(model.config)
    heads = parse_indices(args.heads)
    maps = attention_maps(model, tokenizer, [sequence], layers, heads, progress=False)[0]
    if heads is None:  # all heads were computed; show and save their mean
        maps, head_labels = maps.mean(axis=1, keepdims=True), ["mean"]
    else:
        head_labels = [str(h) for h in heads]
    spans = [span for motif in args.motif for span in find_motif(sequence, motif)]
    if args.motif and not spans:
        raise ValueError(f"none of the motifs {args.motif} occurs in the sequence")

    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    with atomic_file(output / "attention.npy") as staging, open(staging, "wb") as handle:
        np.save(handle, maps.astype(np.float32))
    description = {"axes": ["layer", "head", "query token", "key token"], "layers": layers, "heads": head_labels,
                   "tokens": "[CLS], then base i at index i + 1", "length_bp": len(sequence)}
    with atomic_file(output / "attention.json") as staging:
        staging.write_text(json.dumps(description, indent=2) + "\n")
    plot_attention(maps, layers, head_labels, output / "attention.png", model.config, spans)
    print(f"attention of {len(layers)} layer(s) -> {output}/attention.npy, attention.png")
    if spans:
        received = received_attention(model, tokenizer, [sequence], layers, progress=False)[0]
        snr = motif_snr(received, spans)
        with atomic_file(output / "snr.tsv") as staging:
            staging.write_text("layer\tglobal\tsnr\n" + "".join(
                f"{layer}\t{model.config.is_global_layer(layer)}\t{value:.4f}\n" for layer, value in zip(layers, snr)))
        for layer, value in zip(layers, snr):
            print(f"layer {layer}: motif SNR {value:.3f}")
