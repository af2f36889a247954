"""Pre-train NucEL by replaced token detection (or plain MLM) on genome FASTA.

    nucel pretrain --config tiny_cpu --max-steps 50 --objective mlm     # shipped configs by name
    accelerate launch training/train_rtd.py --config training/configs/tiny_cpu.yaml
    accelerate launch --num_processes 8 --mixed_precision fp16 training/train_rtd.py \\
        --config training/configs/nucel_93m.yaml --fasta GRCh38.fa.gz

Every setting of `PretrainingConfig` (training/pretraining_config.py) can be given in the YAML file and overridden
here as `--name value` (`--max-steps 50`; the YAML key's spelling `--max_steps` works too). `--resume` continues
from the newest checkpoint in the output folder (or from the folder given) with the same data order;
`--export-only` writes the export folders from a checkpoint without training.
"""

import argparse
import dataclasses
import os
import shutil
import sys
from pathlib import Path

from nucel.core.options import settings_options, standalone_main
from nucel.training.pretraining_config import PretrainingConfig, load_config

# What a run writes under its output_dir (training/rtd_loop.py's docstring lists them).
RUN_OUTPUTS = ("log.jsonl", "checkpoints", "export", "tensorboard", "curves.png")
SETTINGS = tuple(field.name for field in dataclasses.fields(PretrainingConfig))


def add_arguments(parser) -> None:
    parser.description = __doc__
    parser.add_argument("--config", help="YAML file of settings, or a shipped config's name (tiny_cpu, nucel_93m)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        metavar="CHECKPOINT",
        help="continue from the newest checkpoint under the output folder, or from CHECKPOINT",
    )
    parser.add_argument(
        "--export-only",
        "--export_only",
        dest="export_only",
        action="store_true",
        help="export the models of the --resume checkpoint and stop",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in an output folder that holds a run (its log, checkpoints, exports and curves "
        "are deleted first)",
    )
    settings = parser.add_argument_group("settings (override the config file)")
    settings.add_argument(
        "-o",
        "--output",
        "--output-dir",
        "--output_dir",
        dest="output_dir",
        default=None,
        help="the run's folder (default: the config's output_dir)",
    )
    settings_options(settings, PretrainingConfig, defaults_from_class=False, skip=("output_dir",))
    parser.set_defaults(run="nucel.training.train_rtd:run")


def run(args: argparse.Namespace) -> None:
    if args.export_only and args.resume is None:
        raise ValueError("--export-only needs --resume [CHECKPOINT]: the checkpoint to export")
    if args.overwrite and args.resume is not None:
        raise ValueError("--overwrite starts over and --resume continues: give one of them")
    overrides = {name: getattr(args, name) for name in SETTINGS}
    pretrain(load_config(args.config, overrides=overrides), args.resume, args.export_only, args.overwrite)


def main(argv: list[str] | None = None) -> int:
    """`accelerate launch training/train_rtd.py ...`: the same command as `nucel pretrain`."""
    return standalone_main("nucel pretrain", __doc__, add_arguments, argv)


def pretrain(config: PretrainingConfig, resume: str | None, export_only: bool, overwrite: bool) -> None:
    from nucel.training.rtd_loop import run_pretraining  # torch and accelerate: only when a run starts, not for --help

    if resume is None:
        clear_earlier_run(Path(config.output_dir).expanduser(), overwrite)
    run_pretraining(config, resume=resume, export_only=export_only)


def clear_earlier_run(output_dir: Path, overwrite: bool) -> None:
    """A new run in a folder that holds one would append to its log and mix its checkpoints: refuse, or with
    --overwrite delete that run's outputs first, and nothing else of the folder (the main process only; the others
    find them deleted or being deleted)."""
    earlier = [output_dir / name for name in RUN_OUTPUTS if (output_dir / name).exists()]
    if not earlier:
        return
    if not overwrite:
        raise FileExistsError(
            f"-o/--output {output_dir} holds a run ({', '.join(path.name for path in earlier)}): continue it with "
            "--resume, start over with --overwrite, or choose another output folder"
        )
    if os.environ.get("RANK", "0") == "0":
        for path in earlier:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
