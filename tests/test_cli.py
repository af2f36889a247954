"""The `nucel` command: end-to-end runs, and bad input reported in one line (its options: test_command_line.py)."""

import numpy as np
import pytest
import torch

from nucel import NucELConfig, NucELGenerator, NucELModel, cli
from nucel.core.models import save_model_folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("cli")
    encoder = save_model_folder(NucELModel(NucELConfig.from_preset("tiny")), root / "encoder")
    generator = save_model_folder(
        NucELGenerator(NucELConfig.from_preset("tiny-generator", restrict_to_bases=True)), root / "generator"
    )
    return root, encoder, generator


def test_embed_command(folders, tmp_path, capsys):
    _, encoder, _ = folders
    fasta = tmp_path / "input.fa"
    fasta.write_text(">one\nacgtNNAC\nGT\n>two\nTTTTGGGGCCCCAAAA\n")
    assert (
        cli.main(
            [
                "embed",
                "--model",
                str(encoder),
                str(fasta),
                "-o",
                str(tmp_path / "e.npy"),
                "--per-base",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert np.load(tmp_path / "e.npy").shape == (10 + 16, 64)
    assert (tmp_path / "e.ids.tsv").read_text() == "id\tstart\tend\none\t0\t10\ntwo\t10\t26\n"
    assert (
        cli.main(
            [
                "embed",
                "--model",
                str(encoder),
                str(fasta),
                "-o",
                str(tmp_path / "p.parquet"),
                "--pooling",
                "max",
                "--reverse-complement",
                "--window",
                "8",
                "--overlap",
                "4",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "2 sequences embedded" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content, message",
    [
        ("ACGT\n>late header\n", "input.fa line 1: expected a '>' header before sequence data"),
        (">seq\nACGTXACGT\n", "input.fa line 2 column 5: invalid character 'X'"),
        ("", "input.fa: empty FASTA"),
    ],
)
def test_unreadable_fasta_is_one_clear_line(folders, tmp_path, capsys, content, message):
    _, encoder, _ = folders
    fasta = tmp_path / "input.fa"
    fasta.write_text(content)
    assert cli.main(["embed", "--model", str(encoder), str(fasta), "-o", str(tmp_path / "e.npy")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("nucel embed: error: ") and message in error and "Traceback" not in error
    assert not (tmp_path / "e.npy").exists()


def test_score_variants_and_ism_commands(folders, tmp_path, capsys):
    _, encoder, generator = folders
    chromosome = "".join(np.random.default_rng(0).choice(list("ACGT"), size=300))
    reference = tmp_path / "genome.fa"
    reference.write_text(f">chr7\n{chromosome}\n")
    vcf = tmp_path / "calls.vcf"
    alt = "A" if chromosome[99] != "A" else "C"
    vcf_header = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    vcf.write_text(f"{vcf_header}chr7\t100\trs9\t{chromosome[99]}\t{alt}\t.\t.\t.\nchr7\t5\tdel\tAC\tA\t.\t.\t.\n")
    scores = tmp_path / "scores.tsv"
    assert (
        cli.main(
            [
                "score-variants",
                "--variants",
                str(vcf),
                "--reference",
                str(reference),
                "--generator",
                str(generator),
                "--model",
                str(encoder),
                "-o",
                str(scores),
                "--device",
                "cpu",
                "--context",
                "128",
            ]
        )
        == 0
    )
    header, row, indel = (line.split("\t") for line in scores.read_text().splitlines())
    assert header == ["id", "chrom", "position", "ref", "alt", "status", "llr", "embedding_distance", "reference_base"]
    assert row[:6] == ["rs9", "chr7", "100", chromosome[99], alt, "ok"] and float(row[7]) > 0
    assert indel[:6] == ["del", "chr7", "5", "AC", "A", "not_snv"] and indel[6:] == ["", "", ""]
    capsys.readouterr()

    # A variant on a chromosome the reference lacks is a status (the run goes on), or with --strict the error
    vcf.write_text(f"{vcf_header}chr1\t100\trs9\t{chromosome[99]}\t{alt}\t.\t.\t.\n")
    command = [
        "score-variants",
        "--variants",
        str(vcf),
        "--reference",
        str(reference),
        "--generator",
        str(generator),
        "-o",
        str(tmp_path / "other.tsv"),
    ]
    assert cli.main(command) == 0
    assert (tmp_path / "other.tsv").read_text().splitlines()[1].split("\t")[5] == "missing_contig"
    assert cli.main([*command, "--strict", "--overwrite"]) == 2
    assert "chromosome 'chr1' is not in the reference" in capsys.readouterr().err

    assert (
        cli.main(
            [
                "ism",
                "--region",
                "chr7:11-40",
                "--reference",
                str(reference),
                "--generator",
                str(generator),
                "-o",
                str(tmp_path / "ism"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    lines = (tmp_path / "ism" / "ism.tsv").read_text().splitlines()
    assert (
        lines[0] == "position\tref\tA\tC\tG\tT" and len(lines) == 31 and lines[1].startswith(f"11\t{chromosome[10]}\t")
    )
    assert (tmp_path / "ism" / "ism.png").read_bytes()[:4] == b"\x89PNG"
    assert (
        cli.main(
            [
                "ism",
                "--region",
                "chr7:290-310",
                "--reference",
                str(reference),
                "--generator",
                str(generator),
                "-o",
                str(tmp_path / "ism2"),
            ]
        )
        == 2
    )
    assert "region 'chr7:290-310' is outside chr7 (1..300)" in capsys.readouterr().err


def test_motif_order_data_command(tmp_path):
    output = tmp_path / "motif.csv"
    assert cli.main(["motif-order-data", "-o", str(output), "--size", "20", "--length", "60", "--max-gap", "30"]) == 0
    lines = output.read_text().splitlines()
    assert lines[0] == "sequence,label,a_start,b_start" and len(lines) == 21


def test_a_table_error_names_the_files_own_line(tmp_path):
    """Blank lines are skipped, not uncounted: the line named is the one an editor shows."""
    from nucel.core.sequences import iter_sequences

    table = tmp_path / "input.csv"
    table.write_text("sequence\nACGT\n\n\nACXT\n")
    with pytest.raises(ValueError, match=r"input\.csv line 5"):
        list(iter_sequences(table))
    table.write_text("sequence\nACGT\n\nGGCC\n")
    assert [record.id for record in iter_sequences(table)] == ["1", "2"]  # without an id column: the row number
