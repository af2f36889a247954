"""The `nucel` program's options: every command listed, `--help` without torch, the choices and defaults the help
shows equal to the implementations' own, and outputs replaced only with `--overwrite`."""

import dataclasses
import json
import subprocess
import sys

import pytest

from nucel import cli
from nucel.training import finetune_cli

NUCEL_COMMANDS = {
    "pretrain",
    "finetune",
    "benchmark",
    "vep",
    "study",
    "embed",
    "predict",
    "score-variants",
    "ism",
    "attention",
    "index",
    "motif-order-data",
    "motif-order",
    "release",
    "convert",
}


def commands(parser):
    return parser._subparsers._group_actions[0].choices


def option(parser, name: str):
    return next(action for action in parser._actions if name in action.option_strings or action.dest == name)


def test_nucel_help_lists_every_command_with_a_summary():
    listing = cli.build_parser().format_help()
    for command in NUCEL_COMMANDS | {"nucel-pretrain", "nucel-finetune", "nucel-benchmark", "nucel-study"}:
        assert command in listing
    parser = cli.build_parser()
    summaries = {entry.dest: entry.help for entry in parser._subparsers._group_actions[0]._choices_actions}
    assert set(summaries) == NUCEL_COMMANDS and all(summaries.values())
    assert set(commands(commands(parser)["convert"])) == {"import", "export", "migrate"}


HELP_RUNS = [  # (module, function, arguments, the usage line the help starts with)
    ("nucel.cli", "main", [], "usage: nucel "),
    *[("nucel.cli", "main", [command], f"usage: nucel {command} ") for command in sorted(NUCEL_COMMANDS)],
    ("nucel.cli", "main", ["convert", "import"], "usage: nucel convert import "),
    ("nucel.training.train_rtd", "main", [], "usage: nucel pretrain "),  # `accelerate launch training/train_rtd.py`
    # The earlier programs, aliases of the commands (console scripts nucel-pretrain, nucel-finetune, ...)
    ("nucel.cli", "pretrain_alias", [], "usage: nucel pretrain "),
    ("nucel.cli", "finetune_alias", [], "usage: nucel finetune "),
    ("nucel.cli", "benchmark_alias", [], "usage: nucel benchmark "),
    ("nucel.cli", "benchmark_alias", ["--suite", "vep"], "usage: nucel vep "),
    ("nucel.cli", "study_alias", [], "usage: nucel study "),
]

# One fresh interpreter runs every `--help` and reports what each printed and whether torch, transformers or
# numpy had been imported by then: the help must not wait for them (it answers in well under a second).
HELP_SCRIPT = """
import contextlib, importlib, io, json, sys
report = []
for module, function, argv, _ in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            getattr(importlib.import_module(module), function)([*argv, "--help"])
        except SystemExit as stop:
            code = stop.code
    report.append({"code": code, "out": out.getvalue(), \
"heavy": [m for m in ("torch", "transformers", "numpy") if m in sys.modules]})
print(json.dumps(report))
"""


def test_every_help_answers_without_importing_torch():
    result = subprocess.run(
        [sys.executable, "-c", HELP_SCRIPT, json.dumps(HELP_RUNS)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    for (module, function, argv, usage), run in zip(HELP_RUNS, json.loads(result.stdout)):
        assert run["code"] == 0 and run["out"].startswith(usage), (module, function, argv, run["out"][:200])
        assert run["heavy"] == [], f"{module}.{function} {argv} --help imported {run['heavy']}"


def test_help_shows_defaults():
    parsers = commands(cli.build_parser())
    embed = parsers["embed"].format_help()
    assert "(default: mean)" in embed and "(default: 1024)" in embed
    assert "(default: 3e-05)" in parsers["finetune"].format_help()
    assert "default: 'rtd'" in " ".join(parsers["pretrain"].format_help().split())  # however argparse wraps it
    # A default of 0 is a default like any other (0 == False once hid it)
    assert "linear warm-up steps (default: 0)" in " ".join(parsers["finetune"].format_help().split())
    assert "fewest bases between the motifs (default: 0)" in " ".join(parsers["motif-order"].format_help().split())
    assert "(default: 0)" not in " ".join(parsers["embed"].format_help().split())  # and an unset option shows none


# ------------------------------------------------------------------------ the help's values are the implementation's


def test_nucel_choices_and_defaults_are_the_implementations():
    from nucel import embed, predict, release
    from nucel.benchmarks.motif_order import ExperimentSettings
    from nucel.core import embeddings, windows
    from nucel.embedding_map import MAP_METHODS

    parsers = commands(cli.build_parser())
    embedding = parsers["embed"]
    assert tuple(option(embedding, "--pooling").choices) == embeddings.POOLINGS
    assert option(embedding, "--window").default == windows.DEFAULT_WINDOW
    assert option(embedding, "--overlap").default == windows.DEFAULT_OVERLAP
    assert tuple(option(embedding, "--dtype").choices) == tuple(embed.OUTPUT_DTYPES)
    assert tuple(option(embedding, "--map-method").choices) == MAP_METHODS
    assert tuple(option(parsers["predict"], "--long-inputs").choices) == predict.LONG_INPUTS
    assert tuple(option(parsers["predict"], "--aggregate").choices) == predict.AGGREGATIONS
    for command in ("score-variants", "ism"):
        assert option(parsers[command], "--window").default == windows.DEFAULT_WINDOW
    assert tuple(option(parsers["release"], "--part").choices) == release.PARTS
    settings = ExperimentSettings()
    for field in dataclasses.fields(ExperimentSettings):
        if field.name != "snr_sequences":  # not an option: the SNR's sample size
            assert option(parsers["motif-order"], field.name).default == getattr(settings, field.name), field.name
    assert option(parsers["motif-order-data"], "--size").default == settings.train_size


def test_finetune_and_benchmark_choices_and_defaults_are_the_implementations():
    from nucel.benchmarks import vep
    from nucel.core.windows import DEFAULT_WINDOW
    from nucel.modeling_nucel.configuration_nucel import CLASSIFIER_HEADS
    from nucel.training.finetune_config import METHODS, PROBLEM_TYPES, FinetuneSettings

    parsers = commands(cli.build_parser())
    parser = parsers["finetune"]
    defaults = {field.name: field.default for field in dataclasses.fields(FinetuneSettings)}
    for name in finetune_cli.SETTINGS:
        assert option(parser, name).default == defaults[name], name
    assert (
        option(parser, "pooling").default == defaults["pooling"]
        and option(parser, "method").default == defaults["method"]
    )
    assert tuple(option(parser, "--problem-type").choices) == PROBLEM_TYPES
    assert tuple(option(parser, "--method").choices) == METHODS
    assert tuple(option(parser, "--head").choices) == CLASSIFIER_HEADS
    assert tuple(option(parsers["benchmark"], "--head").choices) == CLASSIFIER_HEADS
    variant_effects = parsers["vep"]
    assert option(variant_effects, "--window").default == DEFAULT_WINDOW
    assert (
        vep.TABLE_NAME in option(variant_effects, "--data").help
        and vep.FASTA_NAME in option(variant_effects, "--data").help
    )


# ------------------------------------------------------------------------------------------------ --overwrite


def test_an_existing_output_folder_is_replaced_only_with_overwrite(tmp_path, capsys):
    from nucel import NucELConfig, NucELModel
    from nucel.core.models import save_model_folder

    source = save_model_folder(NucELModel(NucELConfig.from_preset("tiny")), tmp_path / "nucel")
    out = tmp_path / "native"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert cli.main(["convert", "export", str(source), "-o", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "exists and is not empty" in error and "--overwrite" in error
    assert (out / "notes.txt").read_text() == "mine"
    assert cli.main(["convert", "export", str(source), "-o", str(out), "--overwrite"]) == 0
    assert (out / "config.json").is_file() and not (out / "notes.txt").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["convert", "export", str(source), "-o", str(empty)]) == 0  # an empty folder holds nothing to lose


def test_a_file_where_an_output_folder_belongs_is_refused(tmp_path, capsys):
    (tmp_path / "train.csv").write_text("sequence,label\nACGT,0\nTTTT,1\n")
    (tmp_path / "model").write_text("a file")
    argv = [
        "finetune",
        "--model",
        "random:tiny",
        "--train",
        str(tmp_path / "train.csv"),
        "--output",
        str(tmp_path / "model"),
    ]
    assert cli.main(argv) == 2
    assert "--output" in capsys.readouterr().err and (tmp_path / "model").read_text() == "a file"


@pytest.mark.parametrize("program", ["attention", "motif-order"])
def test_folder_commands_refuse_a_full_folder_before_any_work(program, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "kept.txt").write_text("x")
    argv = {
        "attention": [
            "attention",
            "--model",
            str(tmp_path / "no-such-model"),
            "--sequence",
            "ACGT",
            "-o",
            str(tmp_path / "out"),
        ],
        "motif-order": ["motif-order", "-o", str(tmp_path / "out")],
    }[program]
    assert cli.main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_release_refuses_its_default_folder_when_it_holds_an_earlier_release(tmp_path, monkeypatch, capsys):
    """`nucel release` without -o writes releases/<owner>--<name>: that folder is protected as a given one is."""
    from nucel import NucELConfig, NucELModel
    from nucel.core.models import save_model_folder

    source = save_model_folder(NucELModel(NucELConfig.from_preset("tiny")), tmp_path / "encoder")
    monkeypatch.chdir(tmp_path)
    earlier = tmp_path / "releases" / "owner--nucel-tiny"
    earlier.mkdir(parents=True)
    (earlier / "README.md").write_text("the earlier release")
    capsys.readouterr()
    assert cli.main(["release", "--model", str(source), "--repo-id", "owner/nucel-tiny", "--dry-run"]) == 2
    assert "--output releases/owner--nucel-tiny: the folder exists" in capsys.readouterr().err
    assert (
        cli.main(["release", "--model", str(source), "--repo-id", "owner/nucel-tiny", "--dry-run", "--overwrite"]) == 0
    )
    assert (earlier / "config.json").is_file() and "the earlier release" not in (earlier / "README.md").read_text()


def test_every_option_of_every_command_says_what_it_does():
    """Options generated from settings dataclasses take their help from the field's comment: a field without one
    would be an option the help does not explain."""
    import argparse

    parsers = {}
    for name, command in commands(cli.build_parser()).items():
        parsers[name] = command
        if command._subparsers is not None:  # `nucel convert`: its directions
            parsers.update({f"{name} {direction}": sub for direction, sub in commands(command).items()})
    silent = [
        f"{name} {action.option_strings[0]}"
        for name, command in parsers.items()
        for action in command._actions
        if action.option_strings and action.help != argparse.SUPPRESS and not (action.help or "").strip()
    ]
    assert len(parsers) > len(NUCEL_COMMANDS) and not silent, silent
