"""VCF and BCF through htslib (nucel/variant_files.py, nucel/variant_outputs.py): an unsorted VCF scores as its
sorted copy, the written VCF/BCF keeps every record and carries the scores as INFO fields that pysam reads back,
--regions restricts the records, and the project's own BRCA1 table is variant input."""

import csv
import gzip
import random

import pysam
import pytest

from nucel import cli
from nucel.core.identity import folder_identity

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HEADER = (
    "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=3000>\n##contig=<ID=chr2,length=800>\n"
    '##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">\n'
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tsample1\n"
)


@pytest.fixture
def genome(tmp_path):
    rng = random.Random(3)
    chromosomes = {
        "chr1": "".join(rng.choice("ACGT") for _ in range(3000)),
        "chr2": "".join(rng.choice("ACGTacgt") for _ in range(800)),
    }
    path = tmp_path / "genome.fa"
    path.write_text(
        "".join(
            f">{name}\n" + "".join(seq[i : i + 60] + "\n" for i in range(0, len(seq), 60))
            for name, seq in chromosomes.items()
        )
    )
    return path, chromosomes


def other_base(base: str, shift: int = 1) -> str:
    return "ACGT"[("ACGT".index(base.upper()) + shift) % 4]


def vcf_lines(chromosomes: dict[str, str], count: int = 40) -> list[str]:
    """SNVs (some multi-allelic, with INFO and a sample column), an indel, a symbolic allele and a mismatch."""
    rng = random.Random(5)
    lines = []
    for i in range(count):
        chrom = "chr1" if i % 3 else "chr2"
        position = rng.randrange(1, len(chromosomes[chrom]) + 1)
        ref = chromosomes[chrom][position - 1].upper()
        alts = other_base(ref) + ("," + other_base(ref, 2) if i % 5 == 0 else "")
        lines.append(f"{chrom}\t{position}\tv{i}\t{ref}\t{alts}\t50\tPASS\tDP={i}\tGT\t0/1")
    ref = chromosomes["chr1"][99]
    lines += [
        f"chr1\t100\tindel\t{ref}A\t{ref}\t.\t.\t.\tGT\t0/1",
        f"chr1\t101\tsymbolic\t{chromosomes['chr1'][100]}\t<DEL>\t.\t.\t.\tGT\t0/1",
        f"chr1\t102\tmismatch\t{other_base(chromosomes['chr1'][101])}\tA,C,G,T\t.\t.\t.\tGT\t0/1",
    ]
    return lines


def write_vcf(path, lines):
    path.write_text(HEADER + "".join(line + "\n" for line in lines))
    return path


def sort_key(line: str):
    chrom, position = line.split("\t")[:2]
    return chrom, int(position)


def score(args: list[str], tiny_models, genome_path, output, *extra) -> int:
    generator, encoder = tiny_models
    return cli.main(
        [
            "score-variants",
            *args,
            "--reference",
            str(genome_path),
            "--generator",
            str(generator),
            "--model",
            str(encoder),
            "--window",
            "64",
            "--batch-size",
            "8",
            "--device",
            "cpu",
            "-o",
            str(output),
            *extra,
        ]
    )


def read_table(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_an_unsorted_vcf_gives_the_scores_of_its_sorted_copy(tiny_models, genome, tmp_path):
    genome_path, chromosomes = genome
    lines = vcf_lines(chromosomes)
    random.Random(1).shuffle(lines)
    unsorted_vcf = write_vcf(tmp_path / "unsorted.vcf", lines)
    sorted_vcf = write_vcf(tmp_path / "sorted.vcf", sorted(lines, key=sort_key))
    assert score(["--variants", str(unsorted_vcf)], tiny_models, genome_path, tmp_path / "unsorted.tsv") == 0
    assert score(["--variants", str(sorted_vcf)], tiny_models, genome_path, tmp_path / "sorted.tsv") == 0
    unsorted_rows, sorted_rows = read_table(tmp_path / "unsorted.tsv"), read_table(tmp_path / "sorted.tsv")
    # The rows come in input order.
    assert list(dict.fromkeys(row["id"] for row in unsorted_rows)) == [line.split("\t")[2] for line in lines]
    by_allele = {(row["id"], row["alt"]): row for row in sorted_rows}
    assert len(by_allele) == len(unsorted_rows)
    for row in unsorted_rows:
        twin = by_allele[row["id"], row["alt"]]
        assert row["status"] == twin["status"]
        for name in ("llr", "embedding_distance"):
            assert (row[name] == "") == (twin[name] == "")
            if row[name]:
                assert float(row[name]) == pytest.approx(float(twin[name]), rel=1e-4, abs=1e-5)
    mismatch = [row for row in sorted_rows if row["id"] == "mismatch"]
    expected_base = chromosomes["chr1"][101]
    assert [row["status"] for row in mismatch] == ["ref_mismatch"] * 3 + ["not_snv"]  # REF == ALT for one of them
    assert {row["reference_base"] for row in mismatch if row["status"] == "ref_mismatch"} == {expected_base}


@pytest.mark.parametrize("suffix", [".vcf", ".vcf.gz", ".bcf"])
def test_the_written_vcf_keeps_every_record_with_the_scores_as_info_fields(
    tiny_models, genome, tmp_path, suffix, capsys
):
    genome_path, chromosomes = genome
    lines = sorted(vcf_lines(chromosomes, 20), key=sort_key)
    source = write_vcf(tmp_path / "calls.vcf", lines)
    output = tmp_path / f"scored{suffix}"
    assert score(["--variants", str(source)], tiny_models, genome_path, output) == 0
    assert score(["--variants", str(source)], tiny_models, genome_path, tmp_path / "scored.tsv", "--overwrite") == 0
    table = read_table(tmp_path / "scored.tsv")
    capsys.readouterr()

    with pysam.VariantFile(str(output)) as scored, pysam.VariantFile(str(source)) as original:
        header = scored.header
        for key, number, kind in (
            ("NUCEL_LLR", "A", "Float"),
            ("NUCEL_EMBEDDING_DISTANCE", "A", "Float"),
            ("NUCEL_STATUS", "A", "String"),
            ("NUCEL_REFERENCE_BASE", 1, "String"),
            ("DP", 1, "Integer"),
        ):
            assert key in header.info and header.info[key].number == number and header.info[key].type == kind
        generator, encoder = tiny_models
        assert folder_identity(generator)["sha256"] in header.info["NUCEL_LLR"].description
        assert folder_identity(encoder)["sha256"] in header.info["NUCEL_EMBEDDING_DISTANCE"].description
        assert f"##nucel_command=nucel score-variants --variants {source} --reference" in str(header)
        records, originals = list(scored), list(original)
    assert len(records) == len(originals) == len(lines)
    rows = iter(table)
    for record, before in zip(records, originals):
        assert (record.chrom, record.pos, record.id, record.ref, record.alts) == (
            before.chrom,
            before.pos,
            before.id,
            before.ref,
            before.alts,
        )
        assert record.info.get("DP") == before.info.get("DP") and record.samples["sample1"]["GT"] == (0, 1)
        allele_rows = [next(rows) for _ in record.alts]
        assert list(record.info["NUCEL_STATUS"]) == [row["status"] for row in allele_rows]
        for key, name in (("NUCEL_LLR", "llr"), ("NUCEL_EMBEDDING_DISTANCE", "embedding_distance")):
            for value, row in zip(record.info[key], allele_rows):
                assert (value is None) == (row[name] == "")
                if value is not None:
                    assert value == pytest.approx(float(row[name]), rel=1e-4, abs=1e-5)
        if record.id == "mismatch":
            assert record.info["NUCEL_REFERENCE_BASE"] == chromosomes["chr1"][101]
        else:
            assert "NUCEL_REFERENCE_BASE" not in record.info
    if suffix == ".vcf.gz":
        assert (tmp_path / "scored.vcf.gz.tbi").is_file()
        with pysam.VariantFile(str(output)) as indexed:
            assert [r.id for r in indexed.fetch("chr2", 0, 800)] == [r.id for r in records if r.chrom == "chr2"]
    assert not list(tmp_path.glob(".*partial*"))


def test_an_unsorted_bgzipped_output_is_written_and_said_to_be_unindexed(tiny_models, genome, tmp_path, capsys):
    genome_path, chromosomes = genome
    lines = vcf_lines(chromosomes, 10)
    random.Random(2).shuffle(lines)
    assert (
        score(
            ["--variants", str(write_vcf(tmp_path / "calls.vcf", lines))],
            tiny_models,
            genome_path,
            tmp_path / "scored.vcf.gz",
        )
        == 0
    )
    assert "is not indexed: its records are not sorted" in capsys.readouterr().out
    assert not (tmp_path / "scored.vcf.gz.tbi").exists()
    with pysam.VariantFile(str(tmp_path / "scored.vcf.gz")) as scored:
        assert [record.id for record in scored] == [line.split("\t")[2] for line in lines]


def test_regions_restrict_an_indexed_vcf_and_a_plain_one(tiny_models, genome, tmp_path):
    genome_path, chromosomes = genome
    lines = sorted(vcf_lines(chromosomes, 30), key=sort_key)
    plain = write_vcf(tmp_path / "calls.vcf", lines)
    indexed = tmp_path / "calls.vcf.gz"
    pysam.tabix_compress(str(plain), str(indexed))
    pysam.tabix_index(str(indexed), preset="vcf")
    bed = tmp_path / "regions.bed"
    bed.write_text("chr1\t0\t1000\tfirst\nchr2\t99\t400\n")
    inside = {"chr1": range(1, 1001), "chr2": range(100, 401)}
    wanted = [line.split("\t")[2] for line in lines if sort_key(line)[1] in inside[sort_key(line)[0]]]
    assert wanted
    for source, regions in ((indexed, "chr1:1-1000,chr2:100-400"), (plain, str(bed)), (indexed, str(bed))):
        output = tmp_path / "restricted.tsv"
        assert (
            score(["--variants", str(source), "--regions", regions], tiny_models, genome_path, output, "--overwrite")
            == 0
        )
        assert list(dict.fromkeys(row["id"] for row in read_table(output))) == wanted


def test_the_projects_brca1_table_is_variant_input(tiny_models, shared_data, tmp_path, capsys):
    """chrom, pos, ref, alt, ... (GRCh37 chr17) against a chr17 padded with N up to the BRCA1 slice."""
    from pysam.libcbgzf import BGZFile

    table = shared_data / "vep" / "brca1_sge_findlay2018_snvs.tsv"
    fasta = shared_data / "vep" / "brca1_hg19_chr17_41180001-41300000.fa"
    rows = table.read_text().splitlines()
    (tmp_path / "brca1.tsv").write_text("\n".join(rows[:1] + rows[1:40:3]) + "\n")
    brca1 = "".join(fasta.read_text().splitlines()[1:])
    reference = tmp_path / "chr17.bgz.fa.gz"
    with BGZFile(str(reference), "wb") as handle:
        handle.write(b">chr17\n")
        line = b"N" * 60 + b"\n"
        handle.write(line * (41_180_000 // 60))  # 41,180,000 = 60 x 686,333 + 20
        padded = "N" * (41_180_000 % 60) + brca1
        handle.write("".join(padded[i : i + 60] + "\n" for i in range(0, len(padded), 60)).encode())
    generator, _ = tiny_models
    command = [
        "score-variants",
        "--variants",
        str(tmp_path / "brca1.tsv"),
        "--generator",
        str(generator),
        "--window",
        "64",
        "--device",
        "cpu",
    ]
    assert cli.main([*command, "--reference", str(reference), "-o", str(tmp_path / "scores.tsv")]) == 0
    scored = read_table(tmp_path / "scores.tsv")
    assert len(scored) == 13 and {row["status"] for row in scored} == {"ok"}
    assert (scored[0]["id"], scored[0]["chrom"], scored[0]["position"]) == ("chr17:41197722:T:A", "chr17", "41197722")
    assert (tmp_path / "scores.llr.bw").is_file() and (tmp_path / "scores.llr.bedgraph").is_file()
    capsys.readouterr()
    # Against the shipped slice (one record named chr17:41180001-41300000) the summary says what the reference has.
    assert cli.main([*command, "--reference", str(fasta), "-o", str(tmp_path / "missing.tsv")]) == 0
    out = capsys.readouterr().out
    assert "13 missing_contig" in out and "'chr17:41180001-41300000' looks like a slice of chr17" in out


@pytest.mark.parametrize(
    "content, message",
    [
        ("chr1\t5\t.\tA\tG\n", "not a VCF or BCF that htslib can read (a VCF starts with a ##fileformat"),
        (HEADER + "chr1\tfive\t.\tA\tG\t.\t.\t.\tGT\t0/1\n", "calls.vcf line 7: htslib cannot parse this record"),
        (HEADER + "chr1\t5\t.\tA\tG\n", "calls.vcf line 7: htslib cannot parse this record (a VCF line has 8"),
    ],
)
def test_a_file_htslib_cannot_read_is_one_line_before_any_model_loads(genome, tmp_path, capsys, content, message):
    (tmp_path / "calls.vcf").write_text(content)
    assert (
        cli.main(
            [
                "score-variants",
                "--variants",
                str(tmp_path / "calls.vcf"),
                "--reference",
                str(genome[0]),
                "--generator",
                str(tmp_path / "no-such-model"),
                "-o",
                str(tmp_path / "s.tsv"),
            ]
        )
        == 2
    )
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error
    assert not (tmp_path / "s.tsv").exists()


def test_a_gzipped_vcf_line_is_named_too(genome, tmp_path, capsys):
    with gzip.open(tmp_path / "calls.vcf.gz", "wt") as handle:
        handle.write(HEADER + "chr1\t5\t.\tA\tG\t.\t.\t.\tGT\t0/1\nchr1\tx\t.\tA\tG\t.\t.\t.\tGT\t0/1\n")
    assert (
        cli.main(
            [
                "score-variants",
                "--variants",
                str(tmp_path / "calls.vcf.gz"),
                "--reference",
                str(genome[0]),
                "--generator",
                "none",
                "-o",
                str(tmp_path / "s.vcf.gz"),
            ]
        )
        == 2
    )
    assert "calls.vcf.gz line 8: htslib cannot parse" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.vcf.gz", "genome.fa", "genome.fa.fai"]
