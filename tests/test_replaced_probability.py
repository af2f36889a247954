"""The RTD-native zero-shot variant score: p_replaced(ALT) - p_replaced(REF) from a discriminator's RTD head equals a
hand-computed pair of forward passes, is antisymmetric, is written by `nucel score-variants` (TSV column, VCF INFO
field, track) and `nucel ism`, is scored by `nucel vep`, and a model without the RTD head is refused in one line."""

import csv
import json
import random

import numpy as np
import pysam
import pytest
import torch

from nucel import NucELConfig, NucELModel, cli
from nucel.benchmarks.vep import FASTA_NAME, TABLE_NAME
from nucel.core.identity import folder_identity
from nucel.core.models import save_model_folder
from nucel.core.mutagenesis import in_silico_mutagenesis
from nucel.core.variant_scores import load_detector, make_variant, replaced_probabilities, reverse_complement_variant
from nucel.modeling_nucel import NucELForReplacedTokenDetection

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SEQUENCE = "ACGTTGCAACGGATCCTTAGGCATCGATCGGATTACAGGCTTAACGTACGTAGCTAGCTAGGATCCAATTGGCCAAGCT" * 3  # 240 bp
WINDOW = 64
VCF_HEADER = "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=2000>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("rtd-models")
    detector = save_model_folder(
        NucELForReplacedTokenDetection(NucELConfig.from_preset("tiny")), root / "discriminator_rtd"
    )
    encoder = save_model_folder(NucELModel(NucELConfig.from_preset("tiny")), root / "encoder")
    return detector, encoder


@pytest.fixture(scope="module")
def detector(folders):
    return load_detector(str(folders[0]), "cpu")


def snv(sequence: str, position: int, ref: str, alt: str):
    return make_variant(f"{position}{ref}>{alt}", "", position, ref, alt, sequence, position - 1, "test")


def other_base(base: str, shift: int = 1) -> str:
    return "ACGT"[("ACGT".index(base) + shift) % 4]


def test_the_score_equals_two_forward_passes_by_hand(detector):
    model, tokenizer = detector
    position = 101  # 1-based: the window of 64 bases is centred on it, so the variant sits at index 32
    ref = SEQUENCE[position - 1]
    alt = other_base(ref)
    score = replaced_probabilities(model, tokenizer, [snv(SEQUENCE, position, ref, alt)], WINDOW, progress=False)[0]

    start = position - 1 - WINDOW // 2
    window = SEQUENCE[start : start + WINDOW]
    index = WINDOW // 2
    assert window[index] == ref

    def p_replaced(sequence: str) -> float:
        ids = tokenizer(sequence, return_tensors="pt")["input_ids"]  # [CLS] then one token per base
        with torch.no_grad():
            logit = model(input_ids=ids).logits[0, index + 1]  # + 1: the [CLS] before the first base
        return float(torch.sigmoid(logit.double()))

    by_hand = p_replaced(window[:index] + alt + window[index + 1 :]) - p_replaced(window)
    assert score != 0
    assert score == pytest.approx(by_hand, abs=1e-6)


def test_swapping_ref_and_alt_negates_the_score(detector):
    model, tokenizer = detector
    position = 57
    ref = SEQUENCE[position - 1]
    alt = other_base(ref, 2)
    carrying_alt = SEQUENCE[: position - 1] + alt + SEQUENCE[position:]
    forward = replaced_probabilities(model, tokenizer, [snv(SEQUENCE, position, ref, alt)], WINDOW, progress=False)[0]
    backward = replaced_probabilities(
        model, tokenizer, [snv(carrying_alt, position, alt, ref)], WINDOW, progress=False
    )[0]
    assert forward != 0
    assert backward == pytest.approx(-forward, abs=1e-9)


def test_reverse_complement_averaging_and_mutagenesis_agree_with_single_scores(detector):
    model, tokenizer = detector
    variant = snv(SEQUENCE, 120, SEQUENCE[119], other_base(SEQUENCE[119]))
    forward = replaced_probabilities(model, tokenizer, [variant], WINDOW, progress=False)[0]
    other_strand = replaced_probabilities(
        model, tokenizer, [reverse_complement_variant(variant, WINDOW)], WINDOW, progress=False
    )[0]
    averaged = replaced_probabilities(
        model, tokenizer, [variant], WINDOW, progress=False, reverse_complement_average=True
    )[0]
    assert averaged == pytest.approx((forward + other_strand) / 2, abs=1e-6)

    region = "ACGTTGCANACGGATCC"
    matrix = in_silico_mutagenesis(region, tokenizer=tokenizer, progress=False, detector=model)
    assert np.isnan(matrix[8]).all()  # N: not scored
    assert matrix[4, "ACGT".index("T")] == 0.0  # the reference base: no change
    single = replaced_probabilities(model, tokenizer, [snv(region, 5, "T", "G")], progress=False)[0]
    assert matrix[4, "ACGT".index("G")] == pytest.approx(single, abs=1e-6)  # batched with other inputs


# ---------------------------------------------------------------------------------------------------- commands


@pytest.fixture
def genome(tmp_path):
    rng = random.Random(7)
    chromosome = "".join(rng.choice("ACGT") for _ in range(2000))
    path = tmp_path / "genome.fa"
    path.write_text(">chr1\n" + "".join(chromosome[i : i + 60] + "\n" for i in range(0, len(chromosome), 60)))
    lines = []
    for i, position in enumerate(sorted(rng.sample(range(1, 2001), 12))):
        ref = chromosome[position - 1]
        alts = other_base(ref) + ("," + other_base(ref, 2) if i % 4 == 0 else "")
        lines.append(f"chr1\t{position}\tv{i}\t{ref}\t{alts}\t.\t.\t.\n")
    vcf = tmp_path / "calls.vcf"
    vcf.write_text(VCF_HEADER + "".join(lines))
    return path, vcf, chromosome


def score_variants(folders, genome, output, *extra) -> int:
    reference, vcf, _ = genome
    return cli.main(
        [
            "score-variants",
            "--variants",
            str(vcf),
            "--reference",
            str(reference),
            "--discriminator",
            str(folders[0]),
            "--window",
            str(WINDOW),
            "--device",
            "cpu",
            "-o",
            str(output),
            *extra,
        ]
    )


def test_score_variants_writes_the_column_the_info_field_and_the_track(folders, detector, genome, tmp_path, capsys):
    assert score_variants(folders, genome, tmp_path / "scores.tsv", "--model", str(folders[1])) == 0
    with open(tmp_path / "scores.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert list(rows[0])[6:8] == ["embedding_distance", "replaced_probability"]  # beside the other scores
    _, _, chromosome = genome
    model, tokenizer = detector
    variants = [
        make_variant(
            row["id"],
            "chr1",
            int(row["position"]),
            row["ref"],
            row["alt"],
            chromosome,
            int(row["position"]) - 1,
            "test",
        )
        for row in rows
    ]
    expected = replaced_probabilities(model, tokenizer, variants, WINDOW, progress=False)
    assert [float(row["replaced_probability"]) for row in rows] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert (tmp_path / "scores.replaced_probability.bw").is_file()

    assert score_variants(folders, genome, tmp_path / "scores.vcf.gz") == 0
    capsys.readouterr()
    with pysam.VariantFile(str(tmp_path / "scores.vcf.gz")) as scored:
        info = scored.header.info["NUCEL_REPLACED_PROBABILITY"]
        assert (info.number, info.type) == ("A", "Float")
        assert folder_identity(folders[0])["sha256"] in info.description
        values = [value for record in scored for value in record.info["NUCEL_REPLACED_PROBABILITY"]]
    assert values == pytest.approx([float(row["replaced_probability"]) for row in rows], rel=1e-4, abs=1e-6)


def test_a_model_without_the_rtd_head_is_refused_in_one_line(folders, genome, tmp_path, capsys):
    with pytest.raises(ValueError, match="has no RTD head"):
        load_detector(str(folders[1]), "cpu")
    capsys.readouterr()
    assert score_variants((folders[1], None), genome, tmp_path / "scores.tsv") == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "Traceback" not in message
    assert "has no RTD head" in message and "export/discriminator_rtd" in message
    assert not (tmp_path / "scores.tsv").exists()


def test_ism_takes_the_discriminator(folders, tmp_path, capsys):
    output = tmp_path / "ism"
    assert (
        cli.main(
            [
                "ism",
                "--sequence",
                "ACGTTGCAACGGATCCTTAG",
                "--discriminator",
                str(folders[0]),
                "--device",
                "cpu",
                "-o",
                str(output),
            ]
        )
        == 0
    )
    table = (output / "ism.tsv").read_text().splitlines()
    assert table[0] == "position\tref\tA\tC\tG\tT" and len(table) == 21
    assert (output / "ism.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert (
        cli.main(
            [
                "ism",
                "--sequence",
                "ACGT",
                "--discriminator",
                str(folders[0]),
                "--model",
                str(folders[1]),
                "-o",
                str(tmp_path / "both"),
            ]
        )
        == 2
    )
    assert "give one of --generator, --model or --discriminator" in capsys.readouterr().err


def test_vep_scores_the_replaced_probability(folders, shared_data, tmp_path):
    data = shared_data / "vep"
    if not (data / TABLE_NAME).is_file() or not (data / FASTA_NAME).is_file():
        pytest.skip(f"{data} lacks the BRCA1 SGE data")
    output = tmp_path / "vep"
    assert (
        cli.main(
            [
                "vep",
                "--data",
                str(data),
                "--discriminator",
                str(folders[0]),
                "--window",
                "32",
                "--max-variants",
                "20",
                "--bootstrap",
                "0",
                "--device",
                "cpu",
                "--output",
                str(output),
            ]
        )
        == 0
    )
    report = json.loads((output / "vep-brca1.json").read_text())
    result = report["results"][0]
    assert result["kind"] == "replaced probability" and result["name"].endswith("· replaced probability")
    assert result["provenance"]["class"] == "NucELForReplacedTokenDetection"
    assert "replaced probability" in (output / "vep-brca1.md").read_text()
    assert (output / "vep-brca1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
