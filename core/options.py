"""The command line's one vocabulary: the options every `nucel` command spells the same way, and options generated
from settings dataclasses so that each default is written once.

    -o/--output   a file for a command that writes one file, a folder for one that writes several (never a prefix)
    --model       a model folder or Hub id          --window     bases the model sees at once
    --threads     torch CPU threads                 --seed(s)    seeds
    --device      where a model runs                --overwrite  replace an existing output, file or folder
    --debug       the traceback of an error

Options are hyphenated; the underscore spelling of a generated option is accepted too (`--max_steps`). Nothing here
imports torch: `--help` answers at once.
"""

import argparse
import ast
import dataclasses
import importlib
import inspect
import textwrap
import types
import typing
from pathlib import Path

from nucel.core.errors import run_reporting_errors

DEVICE_HELP = "cpu, cuda, cuda:1, mps (default: cuda when available)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with its errors in the one-line style of every other error (exit code 2, as argparse's):
    the problem and where to read more, without the usage block above it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (they hold examples), and every option's default shown unless it is empty."""

    def _get_help_string(self, action):
        text = action.help or ""
        empty = action.default is None or action.default is False or action.default == [] or action.default == ()
        if action.option_strings and not empty and action.default is not argparse.SUPPRESS and "default" not in text:
            text += " (default: %(default)s)"
        return text


# ----------------------------------------------------------------------------------------------------------------
# The shared options


def add_output(
    parser, kind: str, help: str, required: bool = True, default=None, aliases: tuple[str, ...] = ()
) -> None:
    """`-o/--output`: `kind` "file" or "folder". A folder output is refused when it exists and is not empty, a file
    output when it exists, unless `--overwrite` (`refuse_existing_outputs`). `aliases`: earlier spellings."""
    parser.add_argument(
        "-o",
        "--output",
        *aliases,
        dest="output",
        required=required and default is None,
        default=default,
        type=Path,
        help=help,
    )
    parser.add_argument("--overwrite", action="store_true", help=f"replace an existing output {kind}")
    parser.set_defaults(output_kind=kind)


def refuse_existing_outputs(args: argparse.Namespace) -> None:
    output, kind = getattr(args, "output", None), getattr(args, "output_kind", None)
    if output is not None and kind is not None:
        check_output(Path(output), kind, args.overwrite)


def check_output(path: Path, kind: str, overwrite: bool, option: str = "-o/--output") -> None:
    """An output must be new (a folder: or empty), unless `overwrite`; the wrong kind in its place is refused."""
    if kind == "folder":
        if path.is_file():
            raise NotADirectoryError(f"{option} {path}: is a file; give a folder name")
        if not overwrite and path.is_dir() and any(path.iterdir()):
            raise FileExistsError(
                f"{option} {path}: the folder exists and is not empty; pass --overwrite to replace "
                "its contents, or choose another folder"
            )
    else:
        if path.is_dir():
            raise IsADirectoryError(f"{option} {path}: is a directory; {option} names the file to write")
        if not overwrite and path.exists():
            raise FileExistsError(
                f"{option} {path}: the file exists; pass --overwrite to replace it, or choose another name"
            )


def add_model(parser, help: str = "NucEL model folder or Hub id", required: bool = True, **options) -> None:
    parser.add_argument("--model", required=required, help=help, **options)


def add_device(parser) -> None:
    parser.add_argument("--device", help=DEVICE_HELP)


def add_threads(
    parser, help: str = "torch CPU threads (default: torch's choice; 1 is fastest on a busy shared CPU)"
) -> None:
    parser.add_argument("--threads", "--torch-threads", dest="threads", type=int, help=help)


def add_window(parser, default: int | None, help: str, aliases: tuple[str, ...] = ()) -> None:
    parser.add_argument("--window", *aliases, dest="window", type=int, default=default, help=help)


def add_debug(parser) -> None:
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def one_sequence_arguments(parser):
    """`--sequence` / `--fasta` (+ `--record`) for commands that take one sequence; returns the exclusive group so
    that a command can add another way to give it (`--region`). Read back with core.sequences.read_one_sequence."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--sequence", help="the DNA sequence itself")
    where.add_argument("--fasta", help="a FASTA file; its first record, or --record")
    parser.add_argument("--record", help="record name in --fasta")
    return where


def table_arguments(parser) -> None:
    parser.add_argument("--sequence-column", help="sequence column of a CSV/TSV (default: 'sequence' or 'seq')")
    parser.add_argument(
        "--id-column", help="id column of a CSV/TSV (default: 'id', 'name' or 'sequence_id', else the row number)"
    )


# ----------------------------------------------------------------------------------------------------------------
# Options generated from a settings dataclass


def field_comments(settings_class) -> dict[str, str]:
    """Each field's trailing comment in the class's source (`max_steps: int = 100  # optimiser steps`): the help
    text is the comment the code already has, not a second description."""
    try:
        source = textwrap.dedent(inspect.getsource(settings_class))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    comments = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            line = lines[node.end_lineno - 1]
            if "  # " in line:
                comments[node.target.id] = line.split("  # ", 1)[1].strip()
    return comments


def plain_type(hint):
    """`int | None` -> int; `list[str]` / `tuple[str, ...]` -> (str, "many")."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if typing.get_origin(hint) in (list, tuple):
        return typing.get_args(hint)[0], True
    return hint, False


def settings_options(
    parser,
    settings_class,
    names=None,
    defaults_from_class: bool = True,
    choices: dict | None = None,
    skip: tuple[str, ...] = (),
) -> list[str]:
    """One `--name` option per field of `settings_class` (or of `names`), typed from its annotation, its help the
    field's comment. `defaults_from_class=False` leaves every default None (a config file fills what the command line
    leaves out). Returns the fields' names."""
    hints = typing.get_type_hints(settings_class)
    comments = field_comments(settings_class)
    added = []
    for field in dataclasses.fields(settings_class):
        if (names is not None and field.name not in names) or field.name in skip:
            continue
        kind, many = plain_type(hints[field.name])
        default = field.default if field.default is not dataclasses.MISSING else None
        help = comments.get(field.name, "")
        if not defaults_from_class and default is not None:
            help = f"{help} (default: {default!r})" if help else f"default: {default!r}"
        options = dict(dest=field.name, default=default if defaults_from_class else None, help=help or None)
        spellings = (
            (f"--{field.name.replace('_', '-')}", f"--{field.name}") if "_" in field.name else (f"--{field.name}",)
        )
        if kind is bool:
            parser.add_argument(*spellings, action=argparse.BooleanOptionalAction, **options)
        elif many:  # `--skip-contigs` alone gives [], which turns the filter off
            parser.add_argument(*spellings, nargs="*", type=kind, **options)
        else:
            allowed = (choices or {}).get(field.name)
            parser.add_argument(
                *spellings, type=kind, choices=allowed, metavar=None if allowed else kind.__name__.upper(), **options
            )
        added.append(field.name)
    return added


# ----------------------------------------------------------------------------------------------------------------
# Running a command


def implementation(target: str):
    """The function "module:name" a command runs, imported only now that it runs (torch is not loaded for --help)."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def run_command(prog: str, args: argparse.Namespace) -> int:
    """Run the parsed command `args.run` with the shared behaviour of every command: an existing output refused
    before any work, torch's threads set, bad input one line with exit code 2, an interruption one clean line."""

    def run() -> None:
        if getattr(args, "threads", None) is not None and args.threads < 1:
            raise ValueError(f"--threads {args.threads}: give at least 1")
        refuse_existing_outputs(args)
        if getattr(args, "device", None) is not None:  # a device torch cannot use: one line, before any work
            from nucel.core.models import default_device

            default_device(args.device)
        if getattr(args, "threads", None) is not None:
            import torch

            torch.set_num_threads(args.threads)
        implementation(args.run)(args)

    return run_reporting_errors(prog, run, args.debug)


def standalone_main(prog: str, description: str, add_arguments, argv: list[str] | None = None) -> int:
    """A command run as a script of its own (`accelerate launch training/train_rtd.py ...`), as `nucel` runs it."""
    parser = ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    add_arguments(parser)
    add_debug(parser)
    return run_command(prog, parser.parse_args(argv))
