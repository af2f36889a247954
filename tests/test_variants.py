"""Variant scores: LLR antisymmetry and reference checks, embedding distance, VCF/TSV input errors, ISM."""

import gzip
from collections import Counter

import numpy as np
import pytest
import torch

from nucel import NucELConfig, NucELGenerator, NucELModel
from nucel.core.models import load_encoder, save_model_folder
from nucel.core.mutagenesis import in_silico_mutagenesis, plot_mutagenesis
from nucel.core.references import Reference, ReferenceFileError
from nucel.core.regions import other_spelling
from nucel.core.sequences import read_fasta
from nucel.core.variant_scores import (
    VariantError,
    embedding_distances,
    load_generator,
    log_likelihood_ratios,
    make_variant,
    variant_window,
)
from nucel.index import write_indexed_copy
from nucel.modeling_nucel.configuration_nucel import BASE_IDS
from nucel.variant_files import VcfInput, read_variant_table, read_vcf
from nucel.variant_outputs import status_summary

CHR1 = "ACGTTGCAACGGATCCTTAGGCATCGATCGGATTACAGGCTTAACGTACGTAGCTAGCTAGGATCCAATTGGCCAAGCT" * 3 + "ACG"  # 240 bp
CHR2 = "ttttggggccccaaaaACGTNNNNACGTacgtacgt"  # soft-masked and N
VCF_HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"  # two lines: records from line 3


def vcf_text(lines) -> str:
    """A VCF that htslib reads: the header, and each CHROM POS ID REF ALT line given QUAL, FILTER and INFO."""
    return VCF_HEADER + "".join(f"{line}\t.\t.\t.\n" for line in lines)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("models")
    generator = save_model_folder(
        NucELGenerator(NucELConfig.from_preset("tiny-generator", restrict_to_bases=True)), root / "generator"
    )
    encoder = save_model_folder(NucELModel(NucELConfig.from_preset("tiny")), root / "encoder")
    generator_model, tokenizer = load_generator(str(generator), "cpu")
    encoder_model, _ = load_encoder(str(encoder), "cpu")
    return generator_model, encoder_model, tokenizer, root


@pytest.fixture
def reference(tmp_path):
    path = tmp_path / "genome.fa"
    path.write_text(f">chr1 test\n{CHR1[:120]}\n{CHR1[120:]}\n>chr2\n{CHR2}\n")  # htslib: equal line lengths
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
    with pytest.raises(
        VariantError,
        match=rf"variant 'v' \(test\): reference allele {wrong} does not match .* has {CHR1[9]} at position 10",
    ):
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
    forward, backward = embedding_distances(
        encoder, tokenizer, [snv(CHR1, 50, ref, "T"), snv(carrying_alt, 50, "T", ref)], progress=False
    )
    assert forward > 0 and forward == pytest.approx(backward, rel=1e-5)


def test_vcf_against_reference(reference, tmp_path):
    vcf = tmp_path / "calls.vcf.gz"
    lines = [
        f"chr1\t5\trs1\t{CHR1[4]}\tG,A\t.\t.\t.",  # multi-allelic: one row per ALT
        f"chr1\t150\t.\t{CHR1[149]}\tA\t.\t.\t.",
        "chr1\t20\tindel\tAT\tA\t.\t.\t.",
        f"chr2\t3\tsoft\t{CHR2[2].upper()}\tC\t.\t.\t.",  # lowercase reference base matches
    ]
    with gzip.open(vcf, "wt") as handle:  # plain gzip, not bgzip: read through a decompressed copy
        handle.write(VCF_HEADER + "\n".join(lines) + "\n")
    rows = read_vcf(vcf, reference)
    assert CHR1[4] == "T"
    assert [(r.name, r.alt, r.status) for r in rows] == [
        ("rs1", "G", "ok"),
        ("rs1", "A", "ok"),
        (f"chr1:150 {CHR1[149]}>A", "A", "ok"),
        ("indel", "A", "not_snv"),
        ("soft", "C", "ok"),
    ]
    variants = [r.variant for r in rows if r.status == "ok"]
    assert [(v.chrom, v.position) for v in variants][2:] == [("chr1", 150), ("chr2", 3)]
    assert all(v.context[v.offset].upper() == v.ref for v in variants)
    assert rows[3].variant is None and rows[3].ref == "AT"


# One VCF line per status; the reference has chr1 (240 bp) and chr2, whose position 21 is N.
STATUS_LINES = [
    ("chr1\t5\tgood\tT\tG", "ok"),
    ("chr1\t5\tbad\tC\tG", "ref_mismatch"),
    ("chrX\t5\t.\tA\tG", "missing_contig"),
    ("chr1\t20\tindel\tAT\tA", "not_snv"),
    ("chr1\t5\tsymbolic\tT\t<DEL>", "not_snv"),
    ("chr1\t5\tsame\tT\tT", "not_snv"),
    ("chr1\t5\tn_allele\tN\tA", "ref_is_n"),
    ("chr2\t21\tin_gap\tA\tG", "ref_is_n"),
    ("chr1\t241\tfar\tA\tG", "outside_contig"),
]


def test_every_vcf_line_gets_a_status(reference, tmp_path):
    assert CHR1[4] == "T" and CHR2[20] == "N"
    vcf = tmp_path / "calls.vcf"
    vcf.write_text(vcf_text(line for line, _ in STATUS_LINES))
    rows = read_vcf(vcf, reference)
    assert [r.status for r in rows] == [status for _, status in STATUS_LINES]
    assert [r.source.rsplit(" ", 1)[1] for r in rows] == [str(i) for i in range(3, 3 + len(STATUS_LINES))]
    assert all((r.variant is None) == (r.status != "ok") for r in rows)
    assert all(r.reason.startswith(f"variant {r.name!r} ({vcf} line ") for r in rows if r.status != "ok")


@pytest.mark.parametrize(
    "line, message",
    [
        (
            "chrX\t5\t.\tA\tG",
            r"variant 'chrX:5 A>G' \(.*line 2\): chromosome 'chrX' is not in the reference \(nor 'X'\)",
        ),
        ("chr1\t241\tfar\tA\tG", r"variant 'far' .*line 2\): position 241 is outside the sequence \(1..240\)"),
        (
            "chr1\t5\tbad\tC\tG",
            r"variant 'bad' .*line 2\): reference allele C does not match the sequence, which has T at position 5",
        ),
        ("chr1\t5\tsame\tT\tT", r"variant 'same' .*alternative allele equals the reference allele"),
        ("chr1\t20\tindel\tAT\tA", r"variant 'indel' .*line 2\): reference allele 'AT' is not a single base"),
    ],
)
def test_strict_stops_at_the_first_bad_line_and_names_it(reference, tmp_path, line, message):
    vcf = tmp_path / "calls.vcf"
    vcf.write_text(vcf_text(["chr1\t5\tgood\tT\tG", line]))
    with pytest.raises(VariantError, match=message.replace("line 2", "line 4")):
        read_vcf(vcf, reference, strict=True)
    assert [r.status for r in read_vcf(vcf, reference)][0] == "ok"  # without --strict: a status, and on


@pytest.mark.parametrize("line", ["chr1\tfive\t.\tA\tG\t.\t.\t.", "chr1\t5\t.\tA"])
def test_a_line_that_is_not_vcf_is_an_error_naming_it(reference, tmp_path, line):
    vcf = tmp_path / "calls.vcf"
    vcf.write_text(f"{VCF_HEADER}{line}\n")
    with pytest.raises(
        VariantError,
        match=r"calls\.vcf line 3: htslib cannot parse this record \(a VCF line has 8 "
        r"tab-separated columns at least.*POS is a whole number\)",
    ):
        read_vcf(vcf, reference)


def test_chr_prefix_differences_are_mapped_and_counted(tmp_path):
    """A UCSC-named VCF (chr1) against an Ensembl-named FASTA (1, 2), and the reverse."""
    ensembl = tmp_path / "ensembl.fa"
    ensembl.write_text(f">1\n{CHR1}\n>2\n{CHR2}\n")
    ucsc = tmp_path / "ucsc.fa"
    ucsc.write_text(f">chr1\n{CHR1}\n>chr2\n{CHR2}\n")
    vcf = tmp_path / "calls.vcf"
    for names, fasta in ((("chr1", "chr2"), ensembl), (("1", "2"), ucsc)):
        vcf.write_text(
            vcf_text(
                [
                    *(f"{names[0]}\t{p}\t.\t{CHR1[p - 1]}\t{'A' if CHR1[p - 1] != 'A' else 'C'}" for p in (5, 9, 30)),
                    f"{names[1]}\t1\t.\tT\tA",
                    "chrX\t1\t.\tA\tG",
                ]
            )
        )
        genome = Reference(fasta)
        rows = list(VcfInput(vcf).rows(genome))
        assert [r.status for r in rows] == ["ok"] * 4 + ["missing_contig"]
        assert [r.chrom for r in rows][:4] == [names[0]] * 3 + [names[1]]  # the VCF's own names in the output
        assert rows[0].variant.context == CHR1
        found = [other_spelling(name) for name in names]
        assert genome.renamed == {(names[0], found[0]): 3, (names[1], found[1]): 1}
        summary = status_summary(Counter(r.status for r in rows), genome)
        assert f"{names[0]} -> {found[0]} (3 lines)" in summary and "4 ok, 1 missing_contig" in summary


def test_reference_is_read_by_position_in_any_order(tmp_path):
    """Random access: every record's name and length known from the index, a jump back costs nothing."""
    fasta = tmp_path / "genome.fa"
    fasta.write_text("".join(f">chr{i}\n{CHR1}\n" for i in range(1, 5)))
    genome = Reference(fasta)
    assert genome.names == ["chr1", "chr2", "chr3", "chr4"] and set(genome.lengths.values()) == {len(CHR1)}
    assert genome.fetch("chr4", 0, len(CHR1)) == CHR1 and genome.fetch("chr1", 10, 20) == CHR1[10:20]
    assert genome.resolve("chr9") is None


def test_unreadable_reference_is_a_clear_error(tmp_path):
    vcf = tmp_path / "calls.vcf"
    vcf.write_text(vcf_text(["chr1\t5\t.\tA\tG"]))
    not_fasta = tmp_path / "genome.fa"
    not_fasta.write_text("this is not a FASTA file\n")
    with pytest.raises(ReferenceFileError, match="genome.fa: not a FASTA file \\(it does not start with a '>' header"):
        read_vcf(vcf, not_fasta)
    with pytest.raises(ReferenceFileError, match="missing.fa: no such file"):
        read_vcf(vcf, tmp_path / "missing.fa")


def test_variant_table_with_sequences_and_regions(reference, tmp_path):
    table = tmp_path / "variants.tsv"
    table.write_text(
        "id\tsequence\tregion\tposition\tref\talt\n"
        "inline\tACGTACGT\t\t3\tG\tA\n"
        f"region\t\tchr1:101-200\t150\t{CHR1[149]}\tA\n"
        "out\t\tchr1:101-200\t201\tA\tC\n"
        "past_end\t\tchr1:200-300\t250\tA\tC\n"
        "no_chrom\t\tchr7:1-10\t5\tA\tC\n"
        "ensembl_name\t\t1:101-200\t150\t" + CHR1[149] + "\tA\n"
    )
    rows = read_variant_table(table, reference)
    assert [r.status for r in rows] == ["ok", "ok", "outside_contig", "outside_contig", "missing_contig", "ok"]
    inline, region = rows[0].variant, rows[1].variant
    assert (inline.context, inline.offset) == ("ACGTACGT", 2)
    assert region.context == CHR1[100:200] and region.offset == 49 and region.chrom == "chr1"
    assert rows[5].variant.context == CHR1[100:200] and rows[5].chrom == "1"

    with pytest.raises(
        VariantError, match=r"variant 'out' .*line 4\): position 201 is outside the sequence \(101..200\)"
    ):
        read_variant_table(table, reference, strict=True)
    table.write_text("id\tregion\tposition\tref\talt\nx\tchr1:200-300\t250\tA\tC\n")
    with pytest.raises(VariantError, match=r"line 2: region 'chr1:200-300' is outside chr1 \(1..240\)"):
        read_variant_table(table, reference, strict=True)
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
    shared = shared_data / "pretrain" / "human_hg38_chr2_1-2333275" / "chr2_1-2333275.fa.gz"  # plain gzip
    reference = tmp_path / "chr2.bgz.fa.gz"
    write_indexed_copy(shared, reference)  # as `nucel index` makes it readable by position
    sequence = dict(read_fasta(shared))["chr2"]
    assert sequence[50000] == "c" and sequence[20000] == "G"  # a soft-masked base and an upper-case one
    vcf = tmp_path / "real.vcf"
    vcf.write_text(
        vcf_text(
            [
                "chr2\t50001\tmasked\tC\tT",
                "chr2\t20001\tupper\tG\tA,C",
                "chr2\t5000\tin_gap\tA\tG",
                "2\t20001\tensembl\tG\tA",
                "chr2\t2333276\tpast_end\tA\tG",
            ]
        )
    )
    rows = read_vcf(vcf, reference)
    assert [(r.name, r.status) for r in rows] == [
        ("masked", "ok"),
        ("upper", "ok"),
        ("upper", "ok"),
        ("in_gap", "ref_is_n"),
        ("ensembl", "ok"),
        ("past_end", "outside_contig"),
    ]
    variants = [r.variant for r in rows if r.status == "ok"]
    scores = log_likelihood_ratios(generator, tokenizer, variants, context_length=256, progress=False)
    assert np.isfinite(scores).all()
    assert "reference allele A does not match the sequence, which has N at position 5000" in rows[3].reason
    assert "position 2333276 is outside the sequence (1..2333275)" in rows[5].reason
