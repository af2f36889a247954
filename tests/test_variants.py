"""Variant scores: LLR antisymmetry and reference checks, embedding distance, VCF/TSV input errors, ISM."""

import gzip

import numpy as np
import pytest
import torch

from nucel import NucELConfig, NucELGenerator, NucELModel
from nucel.fasta import FastaError, read_fasta
from nucel.folders import save_model_folder
from nucel.modeling_nucel.configuration_nucel import BASE_IDS
from nucel.variants import (
    VariantError,
    embedding_distances,
    in_silico_mutagenesis,
    load_generator,
    log_likelihood_ratios,
    make_variant,
    plot_mutagenesis,
    read_variant_table,
    read_vcf,
    variant_window,
)
from nucel.embed import load_encoder

CHR1 = "ACGTTGCAACGGATCCTTAGGCATCGATCGGATTACAGGCTTAACGTACGTAGCTAGCTAGGATCCAATTGGCCAAGCT" * 3 + "ACG"  # 240 bp
CHR2 = "ttttggggccccaaaaACGTNNNNACGTacgtacgt"  # soft-masked and N


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("models")
    generator = save_model_folder(NucELGenerator(NucELConfig.from_preset("tiny-generator", restrict_to_bases=True)), root / "generator")
    encoder = save_model_folder(NucELModel(NucELConfig.from_preset("tiny")), root / "encoder")
    generator_model, tokenizer = load_generator(str(generator), "cpu")
    encoder_model, _ = load_encoder(str(encoder), "cpu")
    return generator_model, encoder_model, tokenizer, root


@pytest.fixture
def reference(tmp_path):
    path = tmp_path / "genome.fa"
    path.write_text(f">chr1 test\n{CHR1[:100]}\n{CHR1[100:]}\n>chr2\n{CHR2}\n")
    return path


def snv(sequence: str, position: int, ref: str, alt: str):
    return make_variant("v", "", position, ref, alt, sequence, position - 1, "test")


def test_llr_is_antisymmetric_and_matches_a_hand_computation(models):
    generator, _, tokenizer, _ = models
    position = 37
    ref, alt = CHR1[position - 1], "A" if CHR1[position - 1] != "A" else "C"
    carrying_alt = CHR1[: position - 1] + alt + CHR1[position:]
    forward = log_likelihood_ratios(generator, tokenizer, [snv(CHR1, position, ref, alt)], progress=False)[0]
    backward = log_likelihood_ratios(generator, tokenizer, [snv(carrying_alt, position, alt, ref)], progress=False)[0]
    assert forward != 0
    assert backward == pytest.approx(-forward, abs=1e-9)

    # By hand: mask the site, softmax over A/C/G/T at that token.
    ids = tokenizer(CHR1, return_tensors="pt")["input_ids"]
    ids[0, position] = tokenizer.mask_token_id  # token index = 1-based position ([CLS] first)
    with torch.no_grad():
        logits = generator(input_ids=ids).logits[0, position, list(BASE_IDS)].double()
    log_probs = torch.log_softmax(logits, -1)
    assert forward == pytest.approx(float(log_probs["ACGT".index(alt)] - log_probs["ACGT".index(ref)]), abs=1e-5)


def test_reference_mismatch_and_bad_positions_are_rejected():
    wrong = "C" if CHR1[9] != "C" else "G"
    with pytest.raises(VariantError, match=rf"variant 'v' \(test\): reference allele {wrong} does not match .* has {CHR1[9]} at position 10"):
        snv(CHR1, 10, wrong, "T")
    with pytest.raises(VariantError, match=r"position 241 is outside the sequence \(1..240\)"):
        snv(CHR1, 241, "A", "C")
    with pytest.raises(VariantError, match="position 0 is outside"):
        snv(CHR1, 0, "A", "C")
    with pytest.raises(VariantError, match="alternative allele 'AT' is not a single base"):
        snv(CHR1, 1, "A", "AT")


def test_context_window_is_centred_and_clipped():
    variant = snv(CHR1, 120, CHR1[119], "A")
    window, index = variant_window(variant, 50)
    assert len(window) == 50 and index == 25 and window[index] == CHR1[119]
    edge = snv(CHR1, 3, CHR1[2], "A")
    window, index = variant_window(edge, 50)
    assert window == CHR1[:50] and index == 2


def test_embedding_distance_is_symmetric_and_zero_without_change(models):
    _, encoder, tokenizer, _ = models
    carrying_alt = CHR1[:49] + "T" + CHR1[50:]
    ref = CHR1[49]
    assert ref != "T"
    forward, backward = embedding_distances(encoder, tokenizer, [snv(CHR1, 50, ref, "T"), snv(carrying_alt, 50, "T", ref)], progress=False)
    assert forward > 0 and forward == pytest.approx(backward, rel=1e-5)


def test_vcf_against_reference(reference, tmp_path):
    vcf = tmp_path / "calls.vcf.gz"
    lines = [
        "##fileformat=VCFv4.2",
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
        f"chr1\t5\trs1\t{CHR1[4]}\tG,A\t.\t.\t.",  # multi-allelic: one variant per ALT
        f"chr1\t150\t.\t{CHR1[149]}\tA\t.\t.\t.",
        "chr1\t20\tindel\tAT\tA\t.\t.\t.",
        f"chr2\t3\tsoft\t{CHR2[2].upper()}\tC\t.\t.\t.",  # lowercase reference base matches
    ]
    with gzip.open(vcf, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    variants, skipped = read_vcf(vcf, reference)
    assert skipped == 1 and CHR1[4] == "T"
    assert [(v.name, v.alt) for v in variants][:2] == [("rs1", "G"), ("rs1", "A")]
    assert [(v.name, v.chrom, v.position, v.alt) for v in variants][2:] == [(f"chr1:150 {CHR1[149]}>A", "chr1", 150, "A"), ("soft", "chr2", 3, "C")]
    assert all(v.context[v.offset].upper() == v.ref for v in variants)


@pytest.mark.parametrize(
    "line, message",
    [
        ("1\t5\t.\tA\tG", r"chromosome '1' is not in the reference .*genome.fa \(it has 'chr1'"),
        ("chrX\t5\t.\tA\tG", r"line 2: variant 'chrX:5 A>G': chromosome 'chrX' is not in the reference"),
        ("chr1\t241\tfar\tA\tG", r"variant 'far' .*line 2\): position 241 is outside the sequence \(1..240\)"),
        ("chr1\tfive\t.\tA\tG", r"line 2: POS 'five' is not a positive integer"),
        ("chr1\t5\tbad\tC\tG", r"variant 'bad' .*line 2\): reference allele C does not match the sequence, which has T at position 5"),
        ("chr1\t5\tsame\tT\tT", r"variant 'same' .*alternative allele equals the reference allele"),
    ],
)
def test_vcf_errors_name_the_variant(reference, tmp_path, line, message):
    vcf = tmp_path / "calls.vcf"
    vcf.write_text(f"#CHROM\tPOS\tID\tREF\tALT\n{line}\n")
    with pytest.raises(VariantError, match=message):
        read_vcf(vcf, reference)


def test_unreadable_reference_is_a_clear_error(tmp_path):
    vcf = tmp_path / "calls.vcf"
    vcf.write_text("chr1\t5\t.\tA\tG\n")
    not_fasta = tmp_path / "genome.fa"
    not_fasta.write_text("this is not a FASTA file\n")
    with pytest.raises(FastaError, match="genome.fa line 1: expected a '>' header"):
        read_vcf(vcf, not_fasta)
    with pytest.raises(FastaError, match="missing.fa: no such file"):
        read_vcf(vcf, tmp_path / "missing.fa")


def test_variant_table_with_sequences_and_regions(reference, tmp_path):
    table = tmp_path / "variants.tsv"
    table.write_text(
        "id\tsequence\tregion\tposition\tref\talt\n"
        "inline\tACGTACGT\t\t3\tG\tA\n"
        f"region\t\tchr1:101-200\t150\t{CHR1[149]}\tA\n"
    )
    inline, region = read_variant_table(table, reference)
    assert (inline.context, inline.offset) == ("ACGTACGT", 2)
    assert region.context == CHR1[100:200] and region.offset == 49 and region.chrom == "chr1"

    table.write_text("id\tregion\tposition\tref\talt\nout\tchr1:101-200\t201\tA\tC\n")
    with pytest.raises(VariantError, match=r"variant 'out' .*line 2\): position 201 is outside the sequence \(101..200\)"):
        read_variant_table(table, reference)
    table.write_text("id\tregion\tposition\tref\talt\nx\tchr1:200-300\t250\tA\tC\n")
    with pytest.raises(VariantError, match=r"line 2: region 'chr1:200-300' is outside chr1 \(1..240\)"):
        read_variant_table(table, reference)
    table.write_text("id\tsequence\tposition\tref\talt\nx\tACGT>ACGT\t2\tC\tA\n")
    with pytest.raises(ValueError, match=r"invalid character '>' at position 5 in .*variants.tsv line 2"):
        read_variant_table(table)


def test_in_silico_mutagenesis_matrix(models, tmp_path):
    generator, encoder, tokenizer, _ = models
    region = "ACGTTGCANACGGATCC"
    matrix = in_silico_mutagenesis(region, generator=generator, tokenizer=tokenizer, progress=False)
    assert matrix.shape == (len(region), 4)
    for i, base in enumerate(region):
        if base == "N":
            assert np.isnan(matrix[i]).all()
            continue
        assert matrix[i, "ACGT".index(base)] == 0.0  # the reference base: no change
        assert np.count_nonzero(matrix[i]) == 3
    # Each entry is that single variant's LLR.
    single = log_likelihood_ratios(generator, tokenizer, [snv(region, 5, "T", "G")], progress=False)[0]
    assert matrix[4, 2] == pytest.approx(single, abs=1e-6)  # batched with other inputs: padding changes the last bits

    distances = in_silico_mutagenesis(region[:8], model=encoder, tokenizer=tokenizer, progress=False)
    assert distances.shape == (8, 4)
    assert all(distances[i, "ACGT".index(b)] == 0.0 for i, b in enumerate(region[:8]))
    assert (np.nan_to_num(distances) >= 0).all() and np.count_nonzero(distances) == 8 * 3

    plot_mutagenesis(matrix, region, tmp_path / "ism.png", "llr")
    assert (tmp_path / "ism.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_classifier_folder_is_not_taken_for_a_generator(models):
    _, _, _, root = models
    with pytest.raises(ValueError, match="is not a NucELGenerator checkpoint: it has no weights for decoder"):
        load_generator(str(root / "encoder"), "cpu")


def test_vcf_on_the_real_human_reference(models, shared_data, tmp_path):
    """GRCh38 chr2:1-2,333,275 (.fa.gz, soft-masked, the first 10,000 bp N) as the reference."""
    generator, _, tokenizer, _ = models
    reference = shared_data / "pretrain" / "human_hg38_chr2_1-2333275" / "chr2_1-2333275.fa.gz"
    sequence = dict(read_fasta(reference))["chr2"]
    assert sequence[50000] == "c" and sequence[20000] == "G"  # a soft-masked base and an upper-case one
    vcf = tmp_path / "real.vcf"
    vcf.write_text("#CHROM\tPOS\tID\tREF\tALT\nchr2\t50001\tmasked\tC\tT\nchr2\t20001\tupper\tG\tA,C\n")
    variants, skipped = read_vcf(vcf, reference)
    assert skipped == 0 and [v.name for v in variants] == ["masked", "upper", "upper"]
    scores = log_likelihood_ratios(generator, tokenizer, variants, context_length=256, progress=False)
    assert np.isfinite(scores).all()

    vcf.write_text("#CHROM\tPOS\tID\tREF\tALT\nchr2\t5000\tin_gap\tA\tG\n")
    with pytest.raises(VariantError, match="variant 'in_gap' .*reference allele A does not match the sequence, which has N at position 5000"):
        read_vcf(vcf, reference)
    vcf.write_text("#CHROM\tPOS\tID\tREF\tALT\n2\t20001\tucsc\tG\tA\n")
    with pytest.raises(VariantError, match=r"chromosome '2' is not in the reference .* \(it has 'chr2'"):
        read_vcf(vcf, reference)
    vcf.write_text("#CHROM\tPOS\tID\tREF\tALT\nchr2\t2333276\tpast_end\tA\tG\n")
    with pytest.raises(VariantError, match=r"position 2333276 is outside the sequence \(1..2333275\)"):
        read_vcf(vcf, reference)
