"""One error style for every command: bad input is one line on stderr naming the problem, exit code 2, no partial
output, and no model loaded when what is wrong is the input (a traceback only with --debug). Table-driven over the
commands of `nucel` (and the pre-training script run by `accelerate launch`) and the bad inputs users actually make."""

import pytest
import torch
from transformers import PreTrainedModel

from nucel.cli import main as nucel_main
from nucel.training.train_rtd import main as pretrain_main  # `accelerate launch training/train_rtd.py`

GUE = "../shared/data/GUE"


@pytest.fixture
def models(tiny_models):
    generator, encoder = tiny_models
    assert generator.parent == encoder.parent
    return encoder.parent  # {models}/encoder, {models}/generator


@pytest.fixture
def files(tmp_path, models):
    (tmp_path / "seqs.fa").write_text(">a\nACGTACGT\n")
    (tmp_path / "badchar.fa").write_text(">a\nACGTXCGT\n")
    (tmp_path / "exists.npy").write_bytes(b"")
    (tmp_path / "labels_bad.csv").write_text("sequence,label\nACGT,0\nACGA,\nACGG,1.5\nACGC,1\n")
    (tmp_path / "no_label.csv").write_text("sequence,lab\nACGT,0\n")
    (tmp_path / "one_class.csv").write_text("sequence,label\nACGT,1\nACGA,1\nACGG,1\n")
    (tmp_path / "names.csv").write_text("sequence,label\nACGT,bound\nACGA,unbound\nACGG,bound\nACCC,unbound\n")
    (tmp_path / "ids.csv").write_text("sequence,label\nACGT,0\nACGA,1\n")
    (tmp_path / "unknown_setting.yaml").write_text("fasta: builtin\nlearning_rte: 0.1\n")
    (tmp_path / "variants.tsv").write_text("position\tref\talt\tsequence\n3\tG\tA\tACGTACGT\n")
    (tmp_path / "a_folder").mkdir()
    return tmp_path


ENCODER, GENERATOR = "{models}/encoder", "{models}/generator"
# (entry point, arguments ({tmp}: the case's folder, {models}: tiny model folders), words the message must contain,
#  whether the message may come from loading a model: only when the model itself is what is wrong)
CASES = [
    # The model
    (
        nucel_main,
        ["embed", "--model", "{tmp}/missing-model", "{tmp}/seqs.fa", "-o", "{tmp}/e.npy"],
        "missing-model",
        True,
    ),
    (
        nucel_main,
        ["predict", "--model", "{tmp}/missing-model", "{tmp}/seqs.fa", "-o", "{tmp}/p.tsv"],
        "missing-model",
        True,
    ),
    (
        nucel_main,
        ["predict", "--model", ENCODER, "{tmp}/seqs.fa", "-o", "{tmp}/p.tsv"],
        "not a NucELForSequenceClassification",
        True,
    ),
    (nucel_main, ["vep", "--generator", "{tmp}/missing-model"], "missing-model", True),
    (nucel_main, ["release", "--model", "{tmp}/missing-model", "--repo-id", "a/b", "--dry-run"], "missing-model", True),
    (nucel_main, ["convert", "import", "{tmp}/missing-model", "-o", "{tmp}/c"], "missing-model", True),
    (
        nucel_main,
        ["embed", "--model", ENCODER, "{tmp}/seqs.fa", "-o", "{tmp}/e.npy", "--layer", "99"],
        "layer 99",
        True,
    ),
    # Devices and threads
    (
        nucel_main,
        ["embed", "--model", ENCODER, "{tmp}/seqs.fa", "-o", "{tmp}/e.npy", "--device", "gpu"],
        "--device gpu: not a device",
        False,
    ),
    (
        nucel_main,
        ["predict", "--model", ENCODER, "{tmp}/seqs.fa", "-o", "{tmp}/p.tsv", "--device", "cuda:7"],
        "--device cuda:7",
        False,
    ),
    (
        nucel_main,
        ["embed", "--model", ENCODER, "{tmp}/seqs.fa", "-o", "{tmp}/e.npy", "--threads", "0"],
        "--threads 0",
        False,
    ),
    # Inputs and outputs
    (
        nucel_main,
        ["embed", "--model", ENCODER, "{tmp}/badchar.fa", "-o", "{tmp}/e.npy"],
        "line 2 column 5: invalid character 'X'",
        False,
    ),
    (nucel_main, ["embed", "--model", ENCODER, "{tmp}/missing.fa", "-o", "{tmp}/e.npy"], "missing.fa", False),
    (nucel_main, ["embed", "--model", ENCODER, "{tmp}/seqs.fa", "-o", "{tmp}/exists.npy"], "pass --overwrite", False),
    (nucel_main, ["embed", "--model", ENCODER, "{tmp}/seqs.fa", "-o", "{tmp}/e.txt"], ".npy or .parquet", False),
    (nucel_main, ["embed", "--model", ENCODER, "{tmp}/seqs.fa", "-o", "{tmp}/a_folder"], "a_folder", False),
    (nucel_main, ["embed", "--model", ENCODER, "{tmp}/seqs.fa", "-o", "{tmp}/e.npy", "--window", "0"], "window", False),
    (
        nucel_main,
        ["embed", "--model", ENCODER, "{tmp}/seqs.fa", "-o", "{tmp}/e.npy", "--overlap", "2000"],
        "overlap",
        False,
    ),
    (
        nucel_main,
        ["embed", "--model", ENCODER, "{tmp}/seqs.fa", "-o", "{tmp}/e.npy", "--map", "{tmp}/m.png", "--per-base"],
        "--map",
        False,
    ),
    (
        nucel_main,
        ["embed", "--model", ENCODER, "{tmp}/seqs.fa", "-o", "{tmp}/e.npy", "--label-column", "x"],
        "--label-column",
        False,
    ),
    (
        nucel_main,
        ["embed", "--model", ENCODER, "{tmp}/seqs.fa", "-o", "{tmp}/e.npy", "--pooling", "sum"],
        "invalid choice: 'sum'",
        False,
    ),
    (nucel_main, ["predict", "--model", ENCODER, "{tmp}/missing.fa", "-o", "{tmp}/p.tsv"], "missing.fa", False),
    (
        nucel_main,
        ["score-variants", "--variants", "{tmp}/seqs.fa", "--generator", GENERATOR, "-o", "{tmp}/s.tsv"],
        "seqs.fa",
        False,
    ),
    (nucel_main, ["score-variants", "--variants", "{tmp}/variants.tsv", "-o", "{tmp}/s.tsv"], "--generator", False),
    (nucel_main, ["ism", "--sequence", "ACGTUACG", "--generator", GENERATOR, "-o", "{tmp}/ism"], "U is RNA", False),
    (nucel_main, ["attention", "--model", ENCODER, "--region", "chr1:1-10", "-o", "{tmp}/att"], "--reference", False),
    (
        nucel_main,
        ["attention", "--model", ENCODER, "--sequence", "ACGTACGT", "--layers", "9", "-o", "{tmp}/att"],
        "layer 9",
        True,
    ),
    (nucel_main, ["motif-order-data", "-o", "{tmp}/m.csv", "--size", "1"], "--size 1", False),
    (nucel_main, ["motif-order-data", "-o", "{tmp}/m.csv", "--min-gap", "10", "--max-gap", "5"], "--min-gap 10", False),
    (
        nucel_main,
        ["release", "--model", ENCODER, "--repo-id", "noslash", "--dry-run", "-o", "{tmp}/r"],
        "owner/name",
        True,
    ),
    # Pre-training
    (pretrain_main, ["--config", "{tmp}/unknown_setting.yaml"], "learning_rte", False),
    (pretrain_main, ["--config", "{tmp}/missing.yaml"], "missing.yaml", False),
    (nucel_main, ["pretrain", "--config", "tiny_cpu", "--learning-rate", "abc"], "invalid float value: 'abc'", False),
    (
        nucel_main,
        ["pretrain", "--config", "tiny_cpu", "--fasta", "{tmp}/missing.fa", "-o", "{tmp}/run"],
        "missing.fa",
        False,
    ),
    (
        nucel_main,
        ["pretrain", "--config", "tiny_cpu", "--export-only", "-o", "{tmp}/run"],
        "--export-only needs --resume",
        False,
    ),
    (
        nucel_main,
        ["pretrain", "--config", "tiny_cpu", "--max-steps", "-1", "-o", "{tmp}/run"],
        "max_steps -1: give at least 1",
        False,
    ),
    (
        nucel_main,
        ["pretrain", "--config", "tiny_cpu", "--embedding-sharing", "both", "-o", "{tmp}/run"],
        "embedding_sharing",
        False,
    ),
    # Fine-tuning: labels read as a person means them
    (
        nucel_main,
        ["finetune", "--model", "random:tiny", "--train", "{tmp}/labels_bad.csv", "-o", "{tmp}/o"],
        "empty label",
        False,
    ),
    (
        nucel_main,
        ["finetune", "--model", "random:tiny", "--train", "{tmp}/no_label.csv", "-o", "{tmp}/o"],
        "missing column",
        False,
    ),
    (
        nucel_main,
        ["finetune", "--model", "random:tiny", "--train", "{tmp}/missing.csv", "-o", "{tmp}/o"],
        "missing.csv",
        False,
    ),
    (
        nucel_main,
        ["finetune", "--model", "random:tiny", "--train", "{tmp}/a_folder", "-o", "{tmp}/o"],
        "a_folder",
        False,
    ),
    (
        nucel_main,
        ["finetune", "--model", "random:tiny", "--train", "{tmp}/one_class.csv", "-o", "{tmp}/o"],
        "all 3 rows are class '1'",
        False,
    ),
    (
        nucel_main,
        [
            "finetune",
            "--model",
            "random:tiny",
            "--train",
            "{tmp}/names.csv",
            "--validation",
            "{tmp}/ids.csv",
            "-o",
            "{tmp}/o",
        ],
        "integer ids but the training labels",
        False,
    ),
    (
        nucel_main,
        ["finetune", "--model", "random:tiny", "--train", "{tmp}/seqs.fa", "-o", "{tmp}/o"],
        "unsupported table format",
        False,
    ),
    (
        nucel_main,
        ["finetune", "--model", "random:tiny", "--train", "{tmp}/names.csv", "-o", "{tmp}/o", "--method", "x"],
        "invalid choice: 'x'",
        False,
    ),
    (
        nucel_main,
        ["finetune", "--model", "random:tiny", "--train", "{tmp}/names.csv", "-o", "{tmp}/o", "--device", "gpu"],
        "--device gpu",
        False,
    ),
    # Benchmarks and the study
    (
        nucel_main,
        ["benchmark", "--suite", "gue", "--data", "{tmp}/no-such-data", "--model", "cnn", "--task", "tf/0"],
        "no-such-data",
        False,
    ),
    (
        nucel_main,
        ["benchmark", "--suite", "gue", "--data", GUE, "--model", "cnn", "--task", "prom_core"],
        "did you mean prom/prom_core",
        False,
    ),
    (nucel_main, ["benchmark", "--suite", "bogus", "--data", GUE, "--model", "cnn"], "invalid choice: 'bogus'", False),
    (nucel_main, ["vep", "--data", "{tmp}/no-such-data", "--generator", GENERATOR], "no-such-data", False),
    (nucel_main, ["vep", "--generator", GENERATOR, "--window", "0"], "--window 0", False),
    (nucel_main, ["study", "--fasta", "{tmp}/missing.fa.gz", "--work-dir", "{tmp}/w"], "missing.fa.gz", False),
    (nucel_main, ["study", "--tasks", "tf/99", "--work-dir", "{tmp}/w", "--data", GUE], "did you mean tf/", False),
    # The program itself
    (nucel_main, [], "the following arguments are required: COMMAND", False),
    (nucel_main, ["embedd"], "invalid choice: 'embedd'", False),
]


@pytest.fixture
def no_model_loads(monkeypatch):
    """Loading a model fails the test: where the input is wrong, the command must say so before any model loads."""

    def refuse(cls, *args, **kwargs):
        raise AssertionError(f"{cls.__name__}.from_pretrained was called before the bad input was refused")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(refuse))


def case_id(case) -> str:
    entry, arguments = case[0], case[1]
    return "train_rtd" if entry is pretrain_main else (arguments[0] if arguments else "nucel")


@pytest.mark.parametrize(
    "entry_point, arguments, named, model_at_fault", CASES, ids=[f"{case_id(case)}-{i}" for i, case in enumerate(CASES)]
)
def test_bad_input_is_one_line_exit_2_no_output_no_model(
    entry_point, arguments, named, model_at_fault, files, models, request, capsys
):
    if GUE in arguments and not (request.config.rootpath.parent / "shared" / "data" / "GUE").is_dir():
        pytest.skip("../shared/data/GUE is not beside the repository")
    if "cuda:7" in arguments and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    if not model_at_fault:
        request.getfixturevalue("no_model_loads")
    argv = [argument.replace("{tmp}", str(files)).replace("{models}", str(models)) for argument in arguments]
    before = sorted(path.relative_to(files) for path in files.rglob("*"))
    try:
        code = entry_point(argv)
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    assert code == 2
    error = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(error) == 1 and ": error: " in error[0] and named in error[0], error
    assert sorted(path.relative_to(files) for path in files.rglob("*")) == before  # nothing written, nothing left


def test_there_are_at_least_forty_cases_over_every_command():
    commands = {case_id(case) for case in CASES}
    assert len(CASES) >= 40
    assert commands >= {
        "embed",
        "predict",
        "score-variants",
        "ism",
        "attention",
        "motif-order-data",
        "release",
        "convert",
        "pretrain",
        "train_rtd",
        "finetune",
        "benchmark",
        "vep",
        "study",
        "nucel",
    }


def test_debug_shows_the_traceback(files):
    with pytest.raises(ValueError, match="empty label"):
        nucel_main(
            [
                "finetune",
                "--model",
                "random:tiny",
                "--train",
                str(files / "labels_bad.csv"),
                "-o",
                str(files / "o"),
                "--debug",
            ]
        )


def every_option():
    """(command, option, a value of the wrong kind) for every typed or choice option of every command."""
    from nucel.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    for name, parser in commands.items():
        if parser._subparsers is not None:  # `nucel convert`: its directions
            parsers = {
                f"{name} {direction}": sub for direction, sub in parser._subparsers._group_actions[0].choices.items()
            }
        else:
            parsers = {name: parser}
        for command, sub in parsers.items():
            for action in sub._actions:
                if not action.option_strings or action.nargs == 0:
                    continue
                if action.choices is not None:
                    yield command, action.option_strings[-1], "no-such-choice"
                elif action.type in (int, float):
                    yield command, action.option_strings[-1], "not-a-number"


OPTIONS = list(every_option())


@pytest.mark.parametrize("command, option, value", OPTIONS, ids=[f"{c}{o}" for c, o, _ in OPTIONS])
def test_every_typed_option_refuses_a_wrong_value_in_one_line(command, option, value, capsys):
    with pytest.raises(SystemExit) as stop:
        nucel_main([*command.split(), option, value])
    assert stop.value.code == 2
    error = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(error) == 1 and ": error: argument " in error[0] and value in error[0], error


def test_the_walk_covers_every_command_with_typed_options():
    """(`nucel convert` and `nucel index` take paths only: their bad paths are cases of the table above.)"""
    assert len(OPTIONS) > 80
    from nucel.cli import COMMANDS

    typed = {name for name, _, _ in COMMANDS} - {"convert", "index"}
    assert {command.split()[0] for command, _, _ in OPTIONS} >= typed
