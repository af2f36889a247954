"""The speed benchmark's report: `speed.md` (tables of ratios, side by side) and `speed.json`, each written
atomically."""

import json
import os
import platform
from pathlib import Path

import torch
import transformers

from nucel.benchmarks.speed_models import DEFAULT_VARIANT
from nucel.core.files import write_text_atomically

# ----------------------------------------------------------------------------------------------------------------
# Output


def machine_description(device, peak_flops: float, args) -> dict:
    description = {
        "device": device.type,
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "attn_implementation": args.attn_implementation,
        "dtype": "bfloat16 autocast" if device.type == "cuda" else "float32",
        "matmul_peak_gflops": peak_flops / 1e9,
    }
    if device.type == "cuda":
        description["gpu"] = torch.cuda.get_device_name()
    else:
        description["memory_limit_gib"] = args.memory_limit_gib
    return description


def fmt(value, pattern: str) -> str:
    return "—" if value is None else pattern.format(value)


def markdown_table(results: dict) -> str:
    lines = [
        "# NucEL vs transformers' ModernBERT: speed and memory",
        "",
        "Written by `benchmarks/speed.py`; method in its docstring. Same weights, alternating calls; speed-up = "
        "reference time / our time; memory = extra peak over the resident weights and optimizer state.",
        "",
    ]
    for number, run in enumerate(results["runs"], start=1):
        machine = run["machine"]
        lines.append(
            f"- run {number}: `{run['command']}` at {run['started_at']}: {machine['device']} "
            f"({machine['cpu_count']} cores, torch on {machine['torch_threads']} "
            f"thread{'s' if machine['torch_threads'] != 1 else ''}), torch {machine['torch']}, "
            f"transformers {machine['transformers']}, {machine['dtype']}, {machine['attn_implementation']}, "
            f"matmul peak {machine['matmul_peak_gflops']:.0f} GFLOP/s"
            + (f", address-space limit {machine['memory_limit_gib']} GiB" if "memory_limit_gib" in machine else "")
        )
    return "\n".join(lines + ["", *rows_table(results["rows"])]) + "\n"


def rows_table(rows: list[dict]) -> list[str]:
    """The table of rows, and the out-of-memory errors under it."""
    lines = [
        "| preset | workload | bp | batch | ours as | padding | tokens/s ours | tokens/s ref | speed-up "
        "| peak MiB ours | peak MiB ref | MFU ours | MFU ref | max abs Δ | repeats | warm-up s | run | threads "
        "| load |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ours, reference = row["ours"], row["reference"]

        def side(values, field, pattern):
            return fmt(values.get(field), pattern) if values["status"] == "ok" else values["status"]

        lines.append(
            f"| {row['preset']} | {row['task']} | {row['bp']} | {row['batch_kind']} ×{row['batch']} | "
            f"{row.get('variant', DEFAULT_VARIANT)} | {row['padding_fraction']:.0%} | "
            f"{side(ours, 'tokens_per_second', '{:,.0f}')} | "
            f"{side(reference, 'tokens_per_second', '{:,.0f}')} | {fmt(row.get('speedup'), '{:.2f}×')} | "
            f"{side(ours, 'peak_mib', '{:,.0f}')} | {side(reference, 'peak_mib', '{:,.0f}')} | "
            f"{side(ours, 'mfu', '{:.1%}')} | {side(reference, 'mfu', '{:.1%}')} | "
            f"{fmt(row.get('max_abs_difference'), '{:.1e}')} | {row['repeats']} | "
            f"{fmt(row.get('warmup_seconds'), '{:.0f}')} | "
            f"{row['run']} | {row['threads']} | {row['load_average_1min']:.1f} |"
        )
    failures = [
        f"- {row['key']}, {side}: {row[side]['error']}"
        for row in rows
        for side in ("ours", "reference")
        if row[side]["status"] != "ok"
    ]
    if failures:
        lines += ["", "Out of memory (under the run's address-space limit):", "", *failures]
    return lines


def write_results(results: dict, output: Path) -> None:
    """output.json and output.md, each replaced in one rename."""
    for suffix, text in ((".json", json.dumps(results, indent=2) + "\n"), (".md", markdown_table(results))):
        write_text_atomically(output.with_suffix(suffix), text)


# ----------------------------------------------------------------------------------------------------------------
