"""BED input (`--regions FILE.bed`) for ism, attention and embed: names flow into the outputs, all-N regions are
refused or skipped with a status, and the inputs are checked before a model loads. Also duplicate FASTA ids."""

import csv
import json
import random

import numpy as np
import pytest

from nucel import cli
from nucel.core.bed import read_bed
from nucel.core.regions import RegionError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def genome(tmp_path):
    rng = random.Random(11)
    chr1 = "".join(rng.choice("ACGT") for _ in range(400))
    gap = "N" * 100
    path = tmp_path / "genome.fa"
    path.write_text(f">chr1\n{chr1}\n>chrN\n{gap}\n")
    return path, chr1


def test_bed_lines_names_and_errors(tmp_path):
    bed = tmp_path / "regions.bed"
    bed.write_text(
        "track name=test\n# comment\nchr1\t0\t10\tpromoter\nchr1\t20\t30\nchr1 40 50 promoter\nchr2\t5\t9\t.\n"
    )
    regions = read_bed(bed)
    assert [(r.chrom, r.start, r.end, r.name) for r in regions] == [
        ("chr1", 0, 10, "promoter"),
        ("chr1", 20, 30, "chr1:21-30"),
        ("chr1", 40, 50, "promoter#2"),
        ("chr2", 5, 9, "chr2:6-9"),
    ]
    for line, message in (
        ("chr1\t10\t5", "line 1: start 10 is not before end 5 \\(BED is 0-based, end exclusive\\)"),
        ("chr1\tten\t20", "line 1: start 'ten' and end '20' must be whole numbers"),
        ("chr1\t10", "line 1: a BED line needs chrom, start and end; found 2"),
    ):
        bed.write_text(line + "\n")
        with pytest.raises(RegionError, match=message):
            read_bed(bed)
    bed.write_text("track only\n")
    with pytest.raises(RegionError, match="no regions"):
        read_bed(bed)


def test_ism_over_a_bed_names_its_rows_and_figures_and_skips_all_n_regions(tiny_models, genome, tmp_path, capsys):
    reference, chr1 = genome
    generator, _ = tiny_models
    bed = tmp_path / "regions.bed"
    bed.write_text("chr1\t10\t30\tenhancer_a\nchrN\t0\t50\tgap\nchr1\t100\t112\n")
    output = tmp_path / "ism"
    assert (
        cli.main(
            [
                "ism",
                "--regions",
                str(bed),
                "--reference",
                str(reference),
                "--generator",
                str(generator),
                "--window",
                "32",
                "--device",
                "cpu",
                "-o",
                str(output),
            ]
        )
        == 0
    )
    assert "1 skipped as all or mostly N" in capsys.readouterr().out
    with open(output / "ism.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert list(rows[0]) == ["region", "chrom", "position", "ref", "A", "C", "G", "T"]
    assert [row["region"] for row in rows] == ["enhancer_a"] * 20 + ["chr1:101-112"] * 12
    assert rows[0]["position"] == "11" and rows[0]["ref"] == chr1[10]  # BED start 10 is 1-based position 11
    assert (output / "ism.enhancer_a.png").is_file() and (output / "ism.chr1:101-112.png").is_file()
    statuses = (output / "regions.tsv").read_text().splitlines()
    assert statuses[2].split("\t")[:5] == ["gap", "chrN", "0", "50", "all_n"]
    assert (output / "ism.mean.bw").is_file()

    bed.write_text("chr1\t10\t30\ta\nchr1\t25\t40\tb\n")
    assert (
        cli.main(
            [
                "ism",
                "--regions",
                str(bed),
                "--reference",
                str(reference),
                "--generator",
                "no-such-model",
                "-o",
                str(tmp_path / "overlap"),
            ]
        )
        == 2
    )
    assert "regions 'a' and 'b' overlap" in capsys.readouterr().err


def test_an_all_n_region_is_refused_in_one_line_before_the_model_loads(genome, tmp_path, capsys):
    reference, _ = genome
    for region in ("chrN:1-50", "chrN"):
        assert (
            cli.main(
                [
                    "ism",
                    "--region",
                    region,
                    "--reference",
                    str(reference),
                    "--generator",
                    "no-such-model",
                    "-o",
                    str(tmp_path / "ism"),
                ]
            )
            == 2
        )
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and f"--region {region}: 100% of its" in error and "bases are N" in error
    assert not (tmp_path / "ism").exists()


def test_attention_over_a_bed_writes_one_folder_per_named_region(tiny_models, genome, tmp_path, capsys):
    reference, _ = genome
    _, encoder = tiny_models
    bed = tmp_path / "regions.bed"
    bed.write_text("chr1\t0\t40\tfirst\nchr1\t200\t230\n")
    output = tmp_path / "maps"
    assert (
        cli.main(
            [
                "attention",
                "--model",
                str(encoder),
                "--regions",
                str(bed),
                "--reference",
                str(reference),
                "--device",
                "cpu",
                "-o",
                str(output),
            ]
        )
        == 0
    )
    assert sorted(path.name for path in output.iterdir()) == ["chr1:201-230", "first"]
    description = json.loads((output / "first" / "attention.json").read_text())
    assert description["region"] == "first" and description["first_position"] == 1 and description["length_bp"] == 40
    assert np.load(output / "chr1:201-230" / "attention.npy").shape[-1] == 31
    bed.write_text("chr1\t0\t40\tfirst\nchr9\t0\t10\tlost\n")
    code = cli.main(
        [
            "attention",
            "--model",
            "no-such-model",
            "--regions",
            str(bed),
            "--reference",
            str(reference),
            "-o",
            str(tmp_path / "other"),
        ]
    )
    assert code == 2  # the missing chromosome is found before the (missing) model is looked for
    assert "chromosome 'chr9' is not in the reference" in capsys.readouterr().err


def test_embed_over_a_bed_names_its_rows(tiny_models, genome, tmp_path):
    reference, _ = genome
    _, encoder = tiny_models
    bed = tmp_path / "regions.bed"
    bed.write_text("chr1\t0\t40\tfirst\nchr1\t50\t90\nchr1\t100\t140\tfirst\n")
    output = tmp_path / "e.npy"
    assert (
        cli.main(
            [
                "embed",
                "--model",
                str(encoder),
                "--regions",
                str(bed),
                "--reference",
                str(reference),
                "--device",
                "cpu",
                "-o",
                str(output),
            ]
        )
        == 0
    )
    assert (tmp_path / "e.ids.tsv").read_text().splitlines() == ["id", "first", "chr1:51-90", "first#2"]
    assert np.load(output).shape[0] == 3


def test_duplicate_fasta_ids_are_warned_about_once_and_made_unique(tiny_models, tmp_path, capsys):
    _, encoder = tiny_models
    fasta = tmp_path / "input.fa"
    fasta.write_text(">a\nACGTACGT\n>b\nACGTAC\n>a\nGGGGCCCC\n>a\nTTTTAAAA\n>b\nACGTTT\n")
    output = tmp_path / "e.npy"
    assert cli.main(["embed", "--model", str(encoder), str(fasta), "--device", "cpu", "-o", str(output)]) == 0
    assert (tmp_path / "e.ids.tsv").read_text().splitlines() == ["id", "a", "b", "a#2", "a#3", "b#2"]
    error = capsys.readouterr().err
    assert error.count("repeats an earlier record's") == 1 and "input.fa record 'a'" in error


def test_unique_ids_count_on_past_names_already_taken(capsys):
    """`predict` and `embed` share this: an id that repeats becomes ID#2, ID#3 ..., skipping one the input has."""
    from nucel.core.sequences import SequenceRecord, with_unique_ids

    records = [SequenceRecord(name, "ACGT", f"in.fa record {name!r}") for name in ("x", "x#2", "x", "y", "x")]
    assert [record.id for record in with_unique_ids(iter(records))] == ["x", "x#2", "x#3", "y", "x#4"]
    assert capsys.readouterr().err.count("warning:") == 1
