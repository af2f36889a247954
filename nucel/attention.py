"""`nucel attention`: attention maps of one sequence (arrays, heatmap) and the motif SNR per layer.

What is computed: core/attention_maps.py.
"""

import argparse
import json
import re
from pathlib import Path

import numpy as np

from nucel.core.attention_maps import (
    attention_maps,
    find_motif,
    global_layers,
    motif_snr,
    plot_attention,
    received_attention,
)
from nucel.core.files import atomic_file
from nucel.core.models import load_encoder
from nucel.core.references import GenomeRegion, command_regions
from nucel.core.sequences import read_one_sequence

# ----------------------------------------------------------------------------------------------------------------
# Command line


def parse_indices(text: str | None) -> list[int] | None:
    return None if text is None else [int(part) for part in text.split(",") if part.strip()]


def run(args: argparse.Namespace) -> None:
    """One sequence (--sequence, --fasta, --region: maps into the output folder) or every region of a BED file
    (--regions: one subfolder per region, named by the BED's name column). Every input is read and checked, and
    every motif found, before the model loads."""
    if args.region or args.regions:
        _, regions = command_regions(args.region, args.regions, args.reference)
    else:
        sequence = read_one_sequence(args.sequence, args.fasta, args.record)
        regions = [GenomeRegion("sequence", "", "", 0, len(sequence), sequence)]
    motifs = [{motif.upper(): find_motif(region.sequence, motif) for motif in args.motif} for region in regions]
    if args.motif and not any(span for found in motifs for spans in found.values() for span in spans):
        where = "the sequence" if len(regions) == 1 else "any of the regions"
        raise ValueError(f"none of the motifs {args.motif} occurs in {where}")
    model, tokenizer = load_encoder(args.model, args.device)
    layers = parse_indices(args.layers) or global_layers(model.config)
    heads = parse_indices(args.heads)
    output = Path(args.output)
    names = unique_folder_names([region.name for region in regions])
    for region, found, name in zip(regions, motifs, names):
        folder = output / name if args.regions else output
        write_maps(model, tokenizer, region, found, layers, heads, folder)


def unique_folder_names(names: list[str]) -> list[str]:
    safe = [re.sub(r"[^A-Za-z0-9._:+#-]", "_", name) for name in names]
    return [name if safe.index(name) == i else f"{name}#{safe[: i + 1].count(name)}" for i, name in enumerate(safe)]


def write_maps(model, tokenizer, region: GenomeRegion, motifs: dict, layers, heads, output: Path) -> None:
    """attention.npy, attention.json, attention.png (and snr.tsv with motifs) of one sequence into `output`."""
    sequence, chrom, first = region.sequence, region.chrom, region.first_position
    maps = attention_maps(model, tokenizer, [sequence], layers, heads, progress=False)[0]
    if heads is None:  # all heads were computed; show and save their mean
        maps, head_labels = maps.mean(axis=1, keepdims=True), ["mean"]
    else:
        head_labels = [str(h) for h in heads]
    spans = [span for motif_spans in motifs.values() for span in motif_spans]
    output.mkdir(parents=True, exist_ok=True)
    with atomic_file(output / "attention.npy") as staging, open(staging, "wb") as handle:
        np.save(handle, maps.astype(np.float32))
    description = {
        "axes": ["layer", "head", "query token", "key token"],
        "layers": layers,
        "heads": head_labels,
        "tokens": "[CLS], then base i at index i + 1",
        "length_bp": len(sequence),
        "chrom": chrom or None,
        "first_position": first,
        "positions": "base i is position first_position + i"
        + (f" on {chrom}" if chrom else " of the sequence")
        + " (1-based)",
    }
    if chrom:
        description["region"] = region.name
    with atomic_file(output / "attention.json") as staging:
        staging.write_text(json.dumps(description, indent=2) + "\n")
    where = f"{chrom}:{first:,}-{first + len(sequence) - 1:,}" if chrom else f"{len(sequence):,}-bp sequence"
    heads_shown = "mean over heads" if heads is None else f"head(s) {', '.join(head_labels)}"
    plot_attention(
        maps,
        layers,
        head_labels,
        output / "attention.png",
        model.config,
        {name: found for name, found in motifs.items() if found},
        f"attention of {where}, {heads_shown}",
        first_position=first,
        chrom=chrom,
    )
    print(f"attention of {len(layers)} layer(s) -> {output}/attention.npy, attention.png")
    if spans:
        received = received_attention(model, tokenizer, [sequence], layers, progress=False)[0]
        snr = motif_snr(received, spans)
        with atomic_file(output / "snr.tsv") as staging:
            staging.write_text(
                "layer\tglobal\tsnr\n"
                + "".join(
                    f"{layer}\t{model.config.is_global_layer(layer)}\t{value:.4f}\n"
                    for layer, value in zip(layers, snr)
                )
            )
        for layer, value in zip(layers, snr):
            print(f"layer {layer}: motif SNR {value:.3f}")
