"""Pre-train NucEL by replaced token detection (or plain MLM) on genome FASTA.

    accelerate launch training/train_rtd.py --config training/configs/tiny_cpu.yaml
    accelerate launch --num_processes 8 --mixed_precision fp16 training/train_rtd.py \\
        --config training/configs/nucel_93m.yaml --fasta /data/GRCh38.fa.gz
    nucel-pretrain --config tiny_cpu --max-steps 50 --objective mlm     # shipped configs by name

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
import types
import typing
from pathlib import Path

from nucel.cli import HelpFormatter
from nucel.errors import add_debug_option, run_reporting_errors
from nucel.training.pretraining_config import PretrainingConfig, load_config

# What a run writes under its output_dir (training/rtd_loop.py's docstring lists them).
RUN_OUTPUTS = ("log.jsonl", "checkpoints", "export", "tensorboard", "curves.png")


def setting_arguments(parser) -> None:
    """One `--name` option per PretrainingConfig field, typed from its annotation."""
    hints = typing.get_type_hints(PretrainingConfig)
    for field in dataclasses.fields(PretrainingConfig):
        hint = hints[field.name]
        if isinstance(hint, types.UnionType):  # `int | None` -> int
            hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
        # `--max-steps`, as every NucEL command spells options; `--max_steps` (the YAML key) still works.
        options = dict(dest=field.name, default=None, help=f"default: {field.default!r}" if field.default is not dataclasses.MISSING else None)
        spellings = (f"--{field.name.replace('_', '-')}", f"--{field.name}") if "_" in field.name else (f"--{field.name}",)
        if hint is bool:
            parser.add_argument(*spellings, action=argparse.BooleanOptionalAction, **options)
        elif typing.get_origin(hint) is list:  # `--skip-contigs` alone gives [], which turns the filter off
            parser.add_argument(*spellings, nargs="*", **options)
        else:
            parser.add_argument(*spellings, type=hint, metavar=hint.__name__.upper(), **options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nucel-pretrain", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--config", help="YAML file of settings, or a shipped config's name (tiny_cpu, nucel_93m)")
    parser.add_argument(
        "--resume", nargs="?", const="latest", default=None, metavar="CHECKPOINT",
        help="continue from the newest checkpoint under output_dir, or from CHECKPOINT",
    )
    parser.add_argument("--export-only", "--export_only", dest="export_only", action="store_true",
                        help="export the models of the --resume checkpoint and stop")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over in an output_dir that holds a run (its log, checkpoints, exports and curves are deleted first)")
    add_debug_option(parser)
    setting_arguments(parser.add_argument_group("settings (override the config file)"))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    config_path, resume, export_only, overwrite, debug = (args.pop(name) for name in ("config", "resume", "export_only", "overwrite", "debug"))
    if export_only and resume is None:
        parser.error("--export-only needs --resume [CHECKPOINT]: the checkpoint to export")
    if overwrite and resume is not None:
        parser.error("--overwrite starts over and --resume continues: give one of them")
    return run_reporting_errors(
        "nucel-pretrain", lambda: pretrain(load_config(config_path, overrides=args), resume, export_only, overwrite), debug
    )


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
            f"--output-dir {output_dir} holds a run ({', '.join(path.name for path in earlier)}): continue it with "
            "--resume, start over with --overwrite, or choose another --output-dir"
        )
    if os.environ.get("RANK", "0") == "0":
        for path in earlier:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
