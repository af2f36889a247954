"""Speed and memory of NucEL against transformers' ModernBERT: same machine, same weights, side by side.

    python benchmarks/speed.py                      # every row, both presets (93M rows take about an hour on 2 cores)
    python benchmarks/speed.py --quick              # smoke test: tiny preset, short sequences, one repeat
    python benchmarks/speed.py --presets nucel-93m --lengths 8192 32768 --merge   # some rows, kept beside the rest
    python benchmarks/speed.py --variants flex_attention sdpa+compile --merge       # our other paths, same reference

Each row runs one workload with our model and with the reference built from the same configuration and loaded
with the same weights, alternating the two call by call so that a busy machine slows both alike:

- `inference`: encoder forward pass, NucELModel vs ModernBertModel.
- `mlm_step`: training step (forward, backward, AdamW) of NucELGenerator vs ModernBertForMaskedLM.
- `rtd_step`: replaced-token-detection training step of NucELForPreTraining (generator + discriminator) vs the
  same objective assembled from ModernBertForMaskedLM and ModernBertModel (`ReferenceRTD`).

`--variants` chooses how our side runs: its attention implementation ("sdpa", "flex_attention", ...), with
"+compile" for `compile_layers()` (torch.compile of every encoder layer). The reference always runs the run's
default implementation, uncompiled. A variant that compiles gets one unmeasured warm-up call on both sides (the
compilation; its seconds are recorded as `warmup_seconds`) before the first measured call. FlexAttention has no
backward pass on CPU, so flex training rows are not run there.

Batches are `[CLS] bases`: "fixed" has every row full; "mixed" has rows of 100/70/45/25 % of the length,
right-padded (about 40 % padding). Tokens/s counts real tokens. Training steps include AdamW, whose state is
allocated before any measured call. Each row starts with one call per implementation that measures peak memory
and compares the outputs (max |Δ| on real tokens, fp32; the weights are still identical); times are medians of
the repeats that follow, alternating the implementations. Rows longer than LONG_SEQUENCE tokens are timed on that
first call alone.

Peak memory is the extra memory at the peak of a call over what was resident before it (weights and optimizer
state are, and are excluded; gradients are freed between steps, and count), taken on the first call. On CPU: the
process's resident-set high-water mark (VmHWM, reset through /proc/self/clear_refs), after malloc_trim has
returned the heap's free pages so that memory kept from earlier work is not counted as already resident; on GPU:
torch's allocator peak.

MFU is model FLOPs (matmuls on real tokens; attention over the keys each query may see:
its whole sequence in global layers, at most 2·window + 1 in local ones; x3 for a training step) per second over
the machine's matmul peak measured at the start of the run (fp32 on CPU, bf16 on GPU).

On CPU the process runs under an address-space limit (`--memory-limit-gib`); an implementation that exceeds it
is recorded as out of memory. With CUDA present (and not `--cpu`) the run uses the GPU in bf16 autocast, with
flash-attn 2 for both implementations when it is installed.
"""

import argparse
import contextlib
import ctypes
import ctypes.util
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from nucel.benchmarks.flops import (
    BACKWARD_FACTOR,
    discriminator_flops,
    encoder_flops,
    masked_lm_flops,
)
from nucel.benchmarks.speed_models import (
    DEFAULT_VARIANT,
    SEED,
    ReferenceRTD,
    Workload,
    build_pair,
    dna_batch,
)
from nucel.benchmarks.speed_report import (
    fmt,
    machine_description,
    markdown_table,
    write_results,
)
from nucel.modeling_nucel import NucELConfig
from nucel.tokenization import token_length

RESULTS = Path(__file__).resolve().parent / "results"
LONG_SEQUENCE = 4096  # tokens; longer rows are measured once (a single call takes from seconds to minutes)
LIBC = ctypes.CDLL(ctypes.util.find_library("c"))


FULL_GRID = [
    # task, bp, batch, batch kind
    ("inference", 512, 4, "fixed"),
    ("inference", 1024, 2, "fixed"),
    ("inference", 8192, 1, "fixed"),
    ("inference", 32768, 1, "fixed"),
    ("inference", 1024, 4, "mixed"),
    ("mlm_step", 1024, 2, "fixed"),
    ("rtd_step", 512, 4, "fixed"),
    ("rtd_step", 1024, 2, "fixed"),
    ("rtd_step", 8192, 1, "fixed"),
    ("rtd_step", 1024, 4, "mixed"),
]
QUICK_GRID = [
    ("inference", 512, 4, "fixed"),
    ("inference", 1024, 4, "mixed"),
    ("mlm_step", 512, 2, "fixed"),
    ("rtd_step", 512, 2, "fixed"),
    ("rtd_step", 1024, 4, "mixed"),
]


# ----------------------------------------------------------------------------------------------------------------
# One call of a workload


def run_once(model, workload: Workload, batch, optimizer, device) -> torch.Tensor:
    """One inference call or training step; returns the output compared between implementations (real tokens)."""
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    )
    torch.manual_seed(SEED)  # the RTD step samples replacements: both implementations draw the same ones
    real = batch["attention_mask"].bool()
    if workload.task == "inference":
        with torch.inference_mode(), autocast:
            return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state[real]
    optimizer.zero_grad(set_to_none=True)
    with autocast:
        if workload.task == "mlm_step":
            output = model(**batch)
            loss, compared = output.loss, output.logits[real]
        elif isinstance(model, ReferenceRTD):
            loss, logits = model(batch["input_ids"], batch["labels"], batch["attention_mask"])
            compared = logits[real]
        else:
            output = model(**batch)
            loss, compared = output.loss, output.discriminator_logits[real]
    loss.backward()
    optimizer.step()
    return compared.detach()


class PeakMemory:
    """Extra memory at the peak of a block over what was in use before it, in MiB.

    CPU: freed memory that malloc keeps for reuse stays resident and would hide part of the next call's peak, so
    the heap is trimmed first (malloc_trim returns every free page to the system); then the resident-set
    high-water mark is reset and read after the block.
    """

    def __init__(self, device):
        self.device = device
        self.mib = None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
        else:
            LIBC.malloc_trim(0)
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
            self.before = proc_status_kib("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.mib = (torch.cuda.max_memory_allocated() - self.before) / 2**20
        else:
            self.mib = (proc_status_kib("VmHWM") - self.before) / 1024
        return False


def prepare_cpu_process(args) -> None:
    """Threads and the address-space limit."""
    if args.threads:
        torch.set_num_threads(args.threads)
    limit = int(args.memory_limit_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line")


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, (MemoryError, torch.cuda.OutOfMemoryError)) or "allocate" in str(error).lower()


def timed_call(model, workload, batch, optimizer, device, with_memory: bool) -> dict:
    """One call, timed; `with_memory` also measures its peak memory (on CPU after trimming the heap, so the call
    pages its memory in again: short rows take their times from other calls)."""
    memory = PeakMemory(device) if with_memory else contextlib.nullcontext()
    try:
        with memory:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            compared = run_once(model, workload, batch, optimizer, device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
    except (RuntimeError, MemoryError) as error:
        if not is_out_of_memory(error):
            raise
        return {"status": "out of memory", "error": str(error).splitlines()[0][:300]}
    return {"status": "ok", "seconds": seconds, "peak_mib": memory.mib if with_memory else None, "compared": compared}


def prime_optimizer(model, optimizer) -> None:
    """Allocate AdamW's state with one zero-gradient step (weight decay 0: the weights do not move), so that no
    measured call pays for it and the peak memory of every call excludes it."""
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


# ----------------------------------------------------------------------------------------------------------------
# FLOPs and the machine's matmul peak


def model_flops(workload: Workload, config: NucELConfig, batch) -> float:
    """FLOPs of one call: an encoder forward pass, or forward and backward (3x) of a training step."""
    lengths = batch["attention_mask"].sum(-1).tolist()
    real_tokens = sum(lengths)
    if workload.task == "inference":
        return encoder_flops(config, lengths)
    if workload.task == "mlm_step":  # the benchmark's MLM step decodes every real token
        return BACKWARD_FACTOR * masked_lm_flops(config, lengths, real_tokens)
    masked = int((batch["labels"] != -100).sum())
    return BACKWARD_FACTOR * (
        masked_lm_flops(config.generator_configuration(), lengths, masked) + discriminator_flops(config, lengths)
    )


def matmul_peak_flops(device, dtype, repeats: int = 5) -> float:
    """Best FLOP/s of a large square matmul: the machine's practical peak for this dtype."""
    size = 8192 if device.type == "cuda" else 2048
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    best = float("inf")
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


# ----------------------------------------------------------------------------------------------------------------
# A row: both implementations, alternating


def measure(workload: Workload, args, device, peak_flops: float, run_number: int) -> dict:
    ours, reference, config = build_pair(
        workload.preset, workload.task, args.attn_implementation, workload.attn_implementation, workload.compiled
    )
    batch = {name: tensor.to(device) for name, tensor in dna_batch(workload).items()}
    models = {"ours": ours.to(device), "reference": reference.to(device)}
    training = workload.task != "inference"
    optimizers = {}
    for name, model in models.items():
        model.train(training)
        optimizers[name] = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0) if training else None
        if training:
            prime_optimizer(model, optimizers[name])

    def run_call(name, with_memory):
        return timed_call(models[name], workload, batch, optimizers[name], device, with_memory)

    # Compilation (torch.compile, or FlexAttention's kernel) happens on a first call that is not measured; both
    # sides take one, so that the weights stay identical for the output comparison.
    warmup_seconds = None
    if workload.compiled or workload.attn_implementation == "flex_attention":
        warmup_seconds = run_call("ours", with_memory=False).get("seconds")
        run_call("reference", with_memory=False)

    # The first call of each measures peak memory and compares outputs (same weights still); long rows are
    # timed on it alone, the others on the repeats that follow.
    long_row = token_length(workload.bp) > LONG_SEQUENCE
    first = {name: run_call(name, with_memory=True) for name in models}
    working = [name for name in models if first[name]["status"] == "ok"]
    calls = {name: [first[name]] if long_row else [] for name in working}
    if not long_row:
        for _ in range(args.repeats):
            for name in working:
                calls[name].append(run_call(name, with_memory=False))

    real_tokens = int(batch["attention_mask"].sum())
    flops = model_flops(workload, config, batch)
    sides = {}
    for name in models:
        if first[name]["status"] != "ok":
            sides[name] = {"status": first[name]["status"], "error": first[name]["error"]}
            continue
        seconds = statistics.median(call["seconds"] for call in calls[name])
        sides[name] = {
            "status": "ok",
            "seconds": seconds,
            "seconds_each": [round(call["seconds"], 4) for call in calls[name]],
            "tokens_per_second": real_tokens / seconds,
            "peak_mib": first[name]["peak_mib"],
            "mfu": flops / seconds / peak_flops,
        }
    row = {
        "key": workload.key,
        "preset": workload.preset,
        "task": workload.task,
        "bp": workload.bp,
        "tokens_per_row": token_length(workload.bp),
        "batch": workload.batch,
        "batch_kind": workload.batch_kind,
        "padding_fraction": 1 - real_tokens / batch["attention_mask"].numel(),
        "real_tokens": real_tokens,
        "model_flops": flops,
        "repeats": 1 if long_row else args.repeats,
        "variant": workload.variant,
        "warmup_seconds": warmup_seconds,
        "ours": sides["ours"],
        "reference": sides["reference"],
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "threads": torch.get_num_threads(),
        "run": run_number,
        "load_average_1min": os.getloadavg()[0],
    }
    if sides["ours"]["status"] == sides["reference"]["status"] == "ok":
        row["speedup"] = sides["reference"]["seconds"] / sides["ours"]["seconds"]
        if sides["ours"]["peak_mib"] is not None and sides["reference"]["peak_mib"]:
            row["memory_ratio"] = sides["ours"]["peak_mib"] / sides["reference"]["peak_mib"]
        row["max_abs_difference"] = (
            (first["ours"]["compared"].float() - first["reference"]["compared"].float()).abs().max().item()
        )
    return row


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny preset, short rows, one repeat")
    parser.add_argument("--presets", nargs="+", default=None, help="default: tiny nucel-93m (quick: tiny)")
    parser.add_argument("--tasks", nargs="+", choices=["inference", "mlm_step", "rtd_step"], default=None)
    parser.add_argument("--lengths", nargs="+", type=int, default=None, help="keep only rows of these bp")
    parser.add_argument("--batch-kinds", nargs="+", choices=["fixed", "mixed"], default=None)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=[DEFAULT_VARIANT],
        help="our side: default, sdpa, eager, flex_attention, flash_attention_2, each optionally +compile",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="measured calls per implementation (default 3; quick 1)"
    )
    parser.add_argument("--output", type=Path, default=None, help="results prefix (default benchmarks/results/speed)")
    parser.add_argument(
        "--merge", action="store_true", help="keep the rows of an existing output that this run does not redo"
    )
    parser.add_argument("--cpu", action="store_true", help="stay on CPU even when CUDA is available")
    parser.add_argument("--memory-limit-gib", type=float, default=16.0, help="CPU: address-space limit of this process")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args(argv)
    args.presets = args.presets or (["tiny"] if args.quick else ["tiny", "nucel-93m"])
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.output is None:
        args.output = Path(tempfile.gettempdir()) / "nucel-speed-quick" if args.quick else RESULTS / "speed"
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    command = "python benchmarks/speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    try:
        import flash_attn  # noqa: F401

        has_flash = device.type == "cuda"
    except ImportError:
        has_flash = False
    args.attn_implementation = "flash_attention_2" if has_flash else "sdpa"
    if device.type == "cpu":
        prepare_cpu_process(args)
    peak = matmul_peak_flops(device, torch.bfloat16 if device.type == "cuda" else torch.float32)

    grid = QUICK_GRID if args.quick else FULL_GRID
    workloads = [
        Workload(preset, task, bp, batch, kind, variant)
        for variant in args.variants
        for preset in args.presets
        for task, bp, batch, kind in grid
        if (args.tasks is None or task in args.tasks)
        and (args.lengths is None or bp in args.lengths)
        and (args.batch_kinds is None or kind in args.batch_kinds)
        # FlexAttention has no backward pass on CPU
        and not (device.type == "cpu" and task != "inference" and variant.startswith("flex_attention"))
    ]
    json_path = args.output.with_suffix(".json")
    results = {"runs": [], "rows": []}
    if args.merge and json_path.exists():
        results = json.loads(json_path.read_text())
    run = {"command": command, "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    run["machine"] = machine_description(device, peak, args)
    results["runs"].append(run)
    print(f"matmul peak {peak / 1e9:.0f} GFLOP/s on {device}; {len(workloads)} rows -> {json_path}", flush=True)
    for workload in workloads:
        row = measure(workload, args, device, peak, run_number=len(results["runs"]))
        results["rows"] = [old for old in results["rows"] if old["key"] != row["key"]] + [row]
        results["rows"].sort(
            key=lambda r: (r["preset"], r["task"], r["batch_kind"], r["bp"], r.get("variant", DEFAULT_VARIANT))
        )
        write_results(results, args.output)
        print(
            f"{row['key']}: speed-up {fmt(row.get('speedup'), '{:.2f}')}, "
            f"ours {row['ours'].get('seconds', row['ours']['status'])}"
            f" s, reference {row['reference'].get('seconds', row['reference']['status'])} s, max |Δ| "
            f"{fmt(row.get('max_abs_difference'), '{:.1e}')}",
            flush=True,
        )
    print(markdown_table(results))
    return results


if __name__ == "__main__":
    main()
