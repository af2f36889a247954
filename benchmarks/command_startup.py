"""Start-up time of every command's `--help`, each in a fresh interpreter (median of --repeats runs).

    python benchmarks/command_startup.py                          # this checkout's commands
    python benchmarks/command_startup.py --site OLD_TREE --finetune-module nucel.training.finetune \\
        --benchmark-module nucel.benchmarks.run                   # an older installed tree (pip install --target)

`--help` must not wait for torch: tests/test_command_line.py checks that no command's help imports it; this
script gives the seconds, for the record.
"""

import argparse
import statistics
import subprocess
import sys
import time

NUCEL_COMMANDS = ("", "embed", "predict", "score-variants", "ism", "attention", "motif-order", "release", "convert")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", help="a folder put first on sys.path (another installed tree)")
    parser.add_argument("--finetune-module", default="nucel.training.finetune_cli", help="module whose main is nucel-finetune")
    parser.add_argument("--benchmark-module", default="nucel.benchmarks.benchmark_cli", help="module whose main is nucel-benchmark")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    commands = [(f"nucel {name} --help".replace("  ", " "), "nucel.cli", [name] if name else []) for name in NUCEL_COMMANDS]
    commands += [("nucel-pretrain --help", "nucel.training.train_rtd", []), ("nucel-finetune --help", args.finetune_module, []),
                 ("nucel-benchmark --help", args.benchmark_module, []), ("nucel-study --help", "nucel.benchmarks.pretraining_study", [])]
    prefix = f"import sys; sys.path.insert(0, {args.site!r}); " if args.site else ""
    for name, module, argv in commands:
        code = f"{prefix}import importlib; importlib.import_module({module!r}).main({[*argv, '--help']!r})"
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            seconds.append(time.perf_counter() - started)
            if done.returncode != 0 or "usage" not in done.stdout:
                raise SystemExit(f"{name}: failed\n{done.stderr[-500:]}")
        print(f"{name:30s} median {statistics.median(seconds):5.2f} s   (min {min(seconds):.2f}, max {max(seconds):.2f})")


if __name__ == "__main__":
    main()
