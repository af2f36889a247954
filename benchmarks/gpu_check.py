"""The GPU check: NucEL's fast paths on one CUDA GPU, side by side with transformers' ModernBERT, in one run.

    python benchmarks/gpu_check.py     # about 8 minutes on one H100/H200; writes benchmarks/results/gpu.{md,json}

1. Parity in bf16 autocast. The 93M encoder (fp32 weights) runs a padded batch of 1024-bp rows forward and
   backward with each backend of ours (SDPA, FlexAttention, flash-attn 2 where installed; each also with compiled
   layers) and with transformers' ModernBERT (SDPA, flash-attn 2 where installed), all loaded with the same
   weights. Each is compared with transformers' ModernBERT in fp32 (TF32 off): the largest error of the hidden
   states on real tokens and the relative error of the gradients. Ours passes where its error is at most twice
   transformers' own bf16 error, plus 1e-3 (bf16 keeps 8 bits: both err; ours must not err more).
2. Speed, through `benchmarks/speed.py`'s rows (same weights, alternating calls, medians, peak memory, MFU): the
   93M RTD pre-training step (generator + discriminator, 1024 bp, the largest batch that fits ours, and the
   largest that fits the reference too) and inference at 1024 and 8192 bp, for each backend of ours compiled and
   not, each against transformers' ModernBERT assembled the same way. MFU is given against the GPU's nominal dense
   bf16 peak (H100/H200: 989 TFLOP/s) where the GPU is known, and against the measured matmul peak.
3. The goals: RTD step ≥ 1.3x transformers' ModernBERT and ≥ 40 % MFU (nominal) for the best backend.

Nothing is installed and nothing is fetched: what is missing (flash-attn, FlexAttention in an old torch, a GPU)
is skipped with the reason in the report. Rows stop when the time budget (`--budget-seconds`) runs out, and say so.
`--smoke` runs the same code on CPU with the tiny preset in fp32 (a test of the script, not of a GPU).
"""

import argparse
import copy
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import transformers
from transformers import ModernBertModel

from nucel.benchmarks import speed, speed_models, speed_report
from nucel.modeling_nucel import NucELConfig, NucELModel

RESULTS = Path(__file__).resolve().parent / "results"
NOMINAL_BF16_PEAK = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12, "L40S": 362e12}  # dense, FLOP/s
GOAL_SPEEDUP, GOAL_MFU = 1.3, 0.40


def nominal_peak(device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((peak for model, peak in NOMINAL_BF16_PEAK.items() if model in name), None)


def backends(device) -> tuple[list[str], list[str], list[str]]:
    """Our attention implementations, the reference's, and the reasons for what is left out."""
    ours, reference, skipped = ["sdpa"], ["sdpa"], []
    if hasattr(torch.nn.attention, "flex_attention"):
        ours.append("flex_attention")
    else:
        skipped.append(f"flex_attention: torch {torch.__version__} has no FlexAttention (needs >= 2.5)")
    try:
        import flash_attn  # noqa: F401

        if device.type == "cuda":
            ours.append("flash_attention_2")
            reference.append("flash_attention_2")
        else:
            skipped.append("flash_attention_2: needs a CUDA GPU")
    except ImportError:
        skipped.append("flash_attention_2: the flash-attn package is not installed")
    return ours, reference, skipped


# ----------------------------------------------------------------------------------------------------------------
# 1. Parity


def forward_backward(model, batch, autocast_dtype, device):
    """Hidden states on real tokens and every parameter's gradient of a fixed loss."""
    model.zero_grad(set_to_none=True)
    real = batch["attention_mask"].bool()
    with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state[real]
    hidden.float().square().mean().backward()
    return hidden.detach().float(), {name: p.grad.float() for name, p in model.named_parameters() if p.grad is not None}


def parity(preset: str, ours_backends, reference_backends, device, autocast_dtype) -> list[dict]:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(speed_models.SEED)
    config = NucELConfig.from_preset(preset)
    ours = NucELModel(config).to(device).train()
    batch = {
        k: v.to(device)
        for k, v in speed_models.dna_batch(speed_models.Workload(preset, "inference", 1024, 4, "mixed")).items()
    }

    def reference(implementation):
        model = ModernBertModel(speed_models.reference_config(config, implementation)).to(device).train()
        model.load_state_dict(ours.state_dict())
        return model

    exact_hidden, exact_gradients = forward_backward(reference("sdpa"), batch, None, device)

    def errors(model):
        hidden, gradients = forward_backward(model, batch, autocast_dtype, device)
        squared = sum(((gradients[n] - exact_gradients[n]) ** 2).sum() for n in exact_gradients)
        norm = sum((exact_gradients[n] ** 2).sum() for n in exact_gradients)
        return (hidden - exact_hidden).abs().max().item(), (squared / norm).sqrt().item()

    rows, baseline = [], {}
    for implementation in reference_backends:
        hidden_error, gradient_error = errors(reference(implementation))
        baseline[implementation] = (hidden_error, gradient_error)
        rows.append(
            {
                "model": "transformers ModernBERT",
                "backend": implementation,
                "hidden_error": hidden_error,
                "gradient_error": gradient_error,
            }
        )
    allowed_hidden = 2 * min(error for error, _ in baseline.values()) + 1e-3
    allowed_gradient = 2 * min(error for _, error in baseline.values()) + 1e-3
    for implementation in ours_backends:
        for compiled in (False, True):
            model = copy.deepcopy(ours)
            model.set_attn_implementation(implementation)
            if compiled:
                model.compile_layers()
            hidden_error, gradient_error = errors(model)
            rows.append(
                {
                    "model": "NucEL",
                    "backend": implementation + ("+compile" if compiled else ""),
                    "hidden_error": hidden_error,
                    "gradient_error": gradient_error,
                    "passed": hidden_error <= allowed_hidden and gradient_error <= allowed_gradient,
                }
            )
    return rows


# ----------------------------------------------------------------------------------------------------------------
# 2. Speed


def fits(preset: str, batch: int, device, side: str) -> bool:
    """Does one RTD training step of `side` ("ours" or "reference") at this batch fit in memory?"""
    workload = speed_models.Workload(preset, "rtd_step", 1024, batch, "fixed")
    ours, reference, _ = speed_models.build_pair(preset, "rtd_step", "sdpa")
    model = (ours if side == "ours" else reference).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    data = {k: v.to(device) for k, v in speed_models.dna_batch(workload).items()}
    try:
        speed.run_once(model, workload, data, optimizer, device)
        return True
    except (RuntimeError, MemoryError) as error:
        if not speed.is_out_of_memory(error):
            raise
        return False
    finally:
        del model, ours, reference, optimizer, data
        if device.type == "cuda":
            torch.cuda.empty_cache()


def largest_batch(preset: str, device, side: str, candidates) -> int | None:
    return next((batch for batch in candidates if fits(preset, batch, device, side)), None)


def speed_rows(preset, ours_backends, device, args, peak, deadline, notes) -> list[dict]:
    candidates = (512, 256, 128, 64, 32, 16, 8, 4, 2, 1) if device.type == "cuda" else (2,)
    ours_batch = largest_batch(preset, device, "ours", candidates)
    both_batch = largest_batch(preset, device, "reference", [b for b in candidates if b <= (ours_batch or 0)])
    notes.append(
        f"RTD step batch: {ours_batch} (largest that fits ours), {both_batch} (largest that fits the reference)"
    )
    lengths = {"inference": [(1024, 64 if device.type == "cuda" else 2), (8192, 8 if device.type == "cuda" else 1)]}
    lengths["rtd_step"] = [(1024, batch) for batch in dict.fromkeys([ours_batch, both_batch]) if batch]
    variants = [variant for backend in ours_backends for variant in (backend, backend + "+compile")]
    rows = []
    for task in ("rtd_step", "inference"):
        for bp, batch in lengths[task]:
            for variant in variants:
                workload = speed_models.Workload(preset, task, bp, batch, "fixed", variant)
                if time.monotonic() > deadline:
                    notes.append(f"{workload.key}: not run, the time budget of {args.budget_seconds} s was spent")
                    continue
                row = speed.measure(workload, args, device, peak, run_number=1)
                row["mfu_nominal"] = None
                if args.nominal_peak and row["ours"]["status"] == "ok":
                    row["mfu_nominal"] = row["model_flops"] / row["ours"]["seconds"] / args.nominal_peak
                rows.append(row)
                print(f"{workload.key}: speed-up {speed_report.fmt(row.get('speedup'), '{:.2f}')}", flush=True)
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Report


def report(results: dict) -> str:
    lines = [
        "# NucEL on a GPU: parity and speed against transformers' ModernBERT",
        "",
        f"Written by `{results['command']}` at {results['started_at']} on {results['machine']}; method in the "
        "script's docstring.",
        "",
    ]
    lines += [
        "## Parity (bf16 autocast vs transformers' ModernBERT in fp32)",
        "",
        "| model | backend | max abs error, hidden states | relative error, gradients | passed |",
        "|---|---|---:|---:|---|",
    ]
    for row in results["parity"]:
        passed = {True: "yes", False: "**no**", None: "reference"}[row.get("passed")]
        lines.append(
            f"| {row['model']} | {row['backend']} | {row['hidden_error']:.2e} | "
            f"{row['gradient_error']:.2e} | {passed} |"
        )
    lines += ["", "## Speed", "", *speed_report.rows_table(results["rows"]), ""]
    if any(row.get("mfu_nominal") is not None for row in results["rows"]):
        lines += ["MFU of ours against the nominal bf16 peak:", ""]
        lines += [
            f"- {row['key']}: {row['mfu_nominal']:.1%}" for row in results["rows"] if row.get("mfu_nominal") is not None
        ]
        lines.append("")
    lines += [
        "## Goals",
        "",
        *[f"- {goal}" for goal in results["goals"]],
        "",
        "## Notes",
        "",
        *[f"- {note}" for note in results["notes"]],
    ]
    return "\n".join(lines) + "\n"


def goals(rows: list[dict]) -> list[str]:
    rtd = [row for row in rows if row["task"] == "rtd_step" and row.get("speedup")]
    if not rtd:
        return ["no RTD step was measured against the reference: goals not checked"]
    best = max(rtd, key=lambda row: row["speedup"])
    mfu = best.get("mfu_nominal") if best.get("mfu_nominal") is not None else best["ours"]["mfu"]
    return [
        f"RTD step ≥ {GOAL_SPEEDUP}× transformers' ModernBERT: "
        f"{'met' if best['speedup'] >= GOAL_SPEEDUP else 'NOT met'} "
        f"({best['speedup']:.2f}× with {best['variant']}, batch {best['batch']})",
        f"RTD step ≥ {GOAL_MFU:.0%} MFU: {'met' if mfu >= GOAL_MFU else 'NOT met'} ({mfu:.1%}, {best['variant']})",
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-seconds", type=float, default=420, help="stop starting speed rows after this long")
    parser.add_argument("--repeats", type=int, default=5, help="measured calls per implementation and row")
    parser.add_argument("--output", type=Path, default=RESULTS / "gpu", help="results prefix (.md and .json)")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny preset, fp32: checks the script itself")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if not torch.cuda.is_available() and not args.smoke:
        print("no CUDA GPU here: nothing to check (benchmarks/speed.py measures the CPU). Run this on a GPU machine.")
        return 0
    device = torch.device("cpu" if args.smoke else "cuda")
    preset = "tiny" if args.smoke else "nucel-93m"
    autocast_dtype = None if args.smoke else torch.bfloat16
    ours_backends, reference_backends, notes = backends(device)
    args.attn_implementation = "sdpa"  # the reference side of speed rows
    args.nominal_peak = nominal_peak(device)
    peak = speed.matmul_peak_flops(device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    machine = (
        torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})"
    )
    results = {
        "command": "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{machine}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"measured matmul peak {peak / 1e9:,.0f} GFLOP/s",
        "notes": notes,
    }
    print("parity ...", flush=True)
    results["parity"] = parity(preset, ours_backends, reference_backends, device, autocast_dtype)
    results["rows"] = speed_rows(preset, ours_backends, device, args, peak, started + args.budget_seconds, notes)
    results["goals"] = goals(results["rows"])
    for row in results["rows"]:  # tensors compared between the sides are not part of the record
        row.pop("compared", None)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    args.output.with_suffix(".md").write_text(report(results))
    print(report(results))
    print(f"wrote {args.output.with_suffix('.md')} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
