"""Start-up time of every command's `--help`, each in a fresh interpreter (median of --repeats runs).

    python benchmarks/command_startup.py                  # this checkout's commands
    python benchmarks/command_startup.py --site OLD_TREE  # an older tree installed with pip install --target

`--help` must not wait for torch: tests/test_command_line.py checks that no command's help imports it; this
script gives the seconds, for the record.
"""

import argparse
import statistics
import subprocess
import sys
import time

# Asked of a fresh interpreter, not imported: this script measures the program from outside, as a user starts it.
LIST_COMMANDS = "from nucel.cli import COMMANDS; print(' '.join(name for name, _, _ in COMMANDS))"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", help="a folder put first on sys.path (another installed tree)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    prefix = f"import sys; sys.path.insert(0, {args.site!r}); " if args.site else ""
    names = subprocess.run(
        [sys.executable, "-c", prefix + LIST_COMMANDS], capture_output=True, text=True, check=True
    ).stdout.split()
    for argv in [[], *([name] for name in names)]:
        name = " ".join(["nucel", *argv, "--help"])
        code = f"{prefix}from nucel.cli import main; main({[*argv, '--help']!r})"
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            seconds.append(time.perf_counter() - started)
            if "usage" not in done.stdout:
                raise SystemExit(f"{name}: failed\n{done.stderr[-500:]}")
        print(
            f"{name:32s} median {statistics.median(seconds):5.2f} s   (min {min(seconds):.2f}, max {max(seconds):.2f})"
        )


if __name__ == "__main__":
    main()
