"""Pre-train NucEL by replaced token detection (or plain MLM) on genome FASTA.

    accelerate launch training/train_rtd.py --config training/configs/tiny_cpu.yaml
    accelerate launch --num_processes 8 --mixed_precision fp16 training/train_rtd.py \\
        --config training/configs/nucel_93m.yaml --fasta /data/GRCh38.fa.gz
    python training/train_rtd.py --config training/configs/tiny_cpu.yaml --max-steps 50 --objective mlm
    python -m nucel.training.train_rtd --config tiny_cpu        # installed package: shipped configs by name

Every setting of `PretrainingConfig` (see nucel/training/rtd_loop.py) can be given in the YAML file and overridden
here as `--name value` (`--max-steps 50`; the YAML key's spelling `--max_steps` works too). `--resume` continues
from the newest checkpoint in the output folder (or from the folder given) with the same data order;
`--export-only` writes the export folders from a checkpoint without training.
"""

import argparse
import dataclasses
import types
import sys
import typing

from nucel.errors import add_debug_option, run_reporting_errors
from nucel.training.rtd_loop import PretrainingConfig, load_config, run_pretraining


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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file of settings, or a shipped config's name (tiny_cpu, nucel_93m)")
    parser.add_argument(
        "--resume", nargs="?", const="latest", default=None, metavar="CHECKPOINT",
        help="continue from the newest checkpoint under output_dir, or from CHECKPOINT",
    )
    parser.add_argument("--export-only", "--export_only", dest="export_only", action="store_true",
                        help="export the models of the --resume checkpoint and stop")
    add_debug_option(parser)
    setting_arguments(parser.add_argument_group("settings (override the config file)"))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    config_path, resume, export_only, debug = args.pop("config"), args.pop("resume"), args.pop("export_only"), args.pop("debug")
    if export_only and resume is None:
        parser.error("--export-only needs --resume [CHECKPOINT]: the checkpoint to export")
    return run_reporting_errors(
        "nucel-pretrain", lambda: run_pretraining(load_config(config_path, overrides=args), resume=resume, export_only=export_only), debug
    )


if __name__ == "__main__":
    sys.exit(main())
