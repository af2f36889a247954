"""One error style for every entry point: bad input is one line on stderr, naming the problem, with exit code 2
(a traceback only with --debug). Table-driven over the commands of `nucel` (and the pre-training script run by
`accelerate launch`) and the bad inputs users actually make."""

import pytest

from nucel.cli import main as nucel_main
from nucel.training.train_rtd import main as pretrain_main  # `accelerate launch training/train_rtd.py`


@pytest.fixture
def files(tmp_path):
    (tmp_path / "seqs.fa").write_text(">a\nACGTACGT\n")
    (tmp_path / "labels_bad.csv").write_text("sequence,label\nACGT,0\nACGA,\nACGG,1.5\nACGC,1\n")
    (tmp_path / "no_label.csv").write_text("sequence,lab\nACGT,0\n")
    (tmp_path / "unknown_setting.yaml").write_text("fasta: builtin\nlearning_rte: 0.1\n")
    (tmp_path / "a_folder").mkdir()
    return tmp_path


# (entry point, arguments with {tmp} for the fixture's folder, words the message must contain)
CASES = [
    (nucel_main, ["embed", "--model", "{tmp}/missing-model", "{tmp}/seqs.fa", "-o", "{tmp}/e.npy"], "missing-model"),
    (nucel_main, ["predict", "--model", "{tmp}/missing-model", "{tmp}/seqs.fa", "-o", "{tmp}/p.tsv"], "missing-model"),
    (pretrain_main, ["--config", "{tmp}/unknown_setting.yaml"], "learning_rte"),
    (pretrain_main, ["--config", "{tmp}/missing.yaml"], "missing.yaml"),
    (nucel_main, ["finetune", "--model", "random:tiny", "--train", "{tmp}/labels_bad.csv", "--output", "{tmp}/o"], "empty label"),
    (nucel_main, ["finetune", "--model", "random:tiny", "--train", "{tmp}/no_label.csv", "--output", "{tmp}/o"], "missing column"),
    (nucel_main, ["finetune", "--model", "random:tiny", "--train", "{tmp}/missing.csv", "--output", "{tmp}/o"], "missing.csv"),
    (nucel_main, ["finetune", "--model", "random:tiny", "--train", "{tmp}/a_folder", "--output", "{tmp}/o"], "a_folder"),
    (nucel_main, ["benchmark", "--suite", "gue", "--data", "{tmp}/no-such-data", "--model", "cnn", "--task", "tf/0"], "no-such-data"),
    (nucel_main, ["vep", "--generator", "{tmp}/missing-model"], "missing-model"),
    (nucel_main, ["study", "--fasta", "{tmp}/missing.fa.gz", "--work-dir", "{tmp}/w"], "missing.fa.gz"),
]


@pytest.mark.parametrize("entry_point, arguments, named", CASES, ids=[f"{c[1][0] if c[0] is nucel_main else 'train_rtd'}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_with_exit_code_2(entry_point, arguments, named, files, capsys):
    argv = [argument.replace("{tmp}", str(files)) for argument in arguments]
    assert entry_point(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and ": error: " in error[0] and named in error[0], error
    assert "Traceback" not in error[0]


def test_debug_shows_the_traceback(files):
    with pytest.raises(ValueError, match="empty label"):
        nucel_main(["finetune", "--model", "random:tiny", "--train", str(files / "labels_bad.csv"), "--output", str(files / "o"), "--debug"])
