"""References read by position through htslib (core/references.py) and `nucel index`: the same bases as the
streaming reader on the shared genomes (plain, gzip made indexable by `nucel index`, bgzip), and one-line
instructions for what cannot be read by position."""

import gzip
import shutil
from pathlib import Path

import pysam
import pytest

from nucel import cli
from nucel.core import references
from nucel.core.references import (
    Reference,
    ReferenceFileError,
    compression,
    indexed_copy_name,
    read_region,
)
from nucel.core.sequences import read_fasta
from nucel.index import write_indexed_copy

GENOMES = (
    "human_hg38_chr2_1-2333275/chr2_1-2333275.fa.gz",
    "yeast_s288c/S288C_reference_sequence_R64-2-1_20150113.fsa.gz",
    "ecoli_k12/GCF_000005845.2_ASM584v2_genomic.fna.gz",
    "model_organisms_1pct/A.thaliana.fa.gz",
    "model_organisms_1pct/C.elegans.fa.gz",
    "model_organisms_1pct/D.melanogaster.fa.gz",
)
SLICE_BASES = 30_000  # per record, for the fast variant


def write_fasta(path: Path, records: list[tuple[str, str]], line_length: int = 70) -> Path:
    with open(path, "w") as handle:
        for name, sequence in records:
            handle.write(f">{name} description\n")
            handle.writelines(sequence[i : i + line_length] + "\n" for i in range(0, len(sequence), line_length))
    return path


def three_forms(tmp_path: Path, plain: Path) -> dict[str, Path]:
    """The same FASTA plain, gzip (made indexable by `nucel index`) and bgzip (pysam.tabix_compress)."""
    gzipped = tmp_path / "genome.fa.gz"
    with open(plain, "rb") as source, gzip.open(gzipped, "wb") as target:
        shutil.copyfileobj(source, target)
    assert compression(gzipped) == "gzip"
    assert cli.main(["index", str(gzipped)]) == 0
    bgzipped = tmp_path / "bgzip.fa.gz"
    pysam.tabix_compress(str(plain), str(bgzipped))
    assert compression(bgzipped) == "bgzip" and compression(plain) == "plain"
    return {"plain": plain, "gzip via nucel index": indexed_copy_name(gzipped), "bgzip": bgzipped}


def assert_same_as_streaming(forms: dict[str, Path], streamed: dict[str, str]) -> None:
    for form, path in forms.items():
        reference = Reference(path)
        assert reference.names == list(streamed), form
        for name, sequence in streamed.items():
            assert reference.lengths[name] == len(sequence), (form, name)
            assert reference.fetch(name, 0, len(sequence)) == sequence, (form, name)
            middle = len(sequence) // 2
            assert reference.view(name)[middle : middle + 100] == sequence[middle : middle + 100]
            assert reference.view(name)[len(sequence) - 1] == sequence[-1]


def test_random_access_equals_the_streaming_reader_on_a_slice_of_every_genome(shared_data, tmp_path):
    records = [
        (f"{Path(genome).name.split('.')[0]}_{name}", sequence[:SLICE_BASES])
        for genome in GENOMES
        for name, sequence in list(read_fasta(shared_data / "pretrain" / genome))[:2]
    ]
    plain = write_fasta(tmp_path / "slice.fa", records)
    assert_same_as_streaming(three_forms(tmp_path, plain), dict(read_fasta(plain)))


@pytest.mark.slow
@pytest.mark.parametrize("genome", GENOMES)
def test_random_access_equals_the_streaming_reader_on_every_record(shared_data, tmp_path, genome):
    source = shared_data / "pretrain" / genome
    plain = tmp_path / "genome.fa"
    with gzip.open(source, "rb") as compressed, open(plain, "wb") as target:
        shutil.copyfileobj(compressed, target)
    streamed = dict(read_fasta(source))
    forms = three_forms(tmp_path, plain)
    forms["the shared file through nucel index"] = tmp_path / "shared.bgz.fa.gz"
    assert cli.main(["index", str(source), "-o", str(forms["the shared file through nucel index"])]) == 0
    assert_same_as_streaming(forms, streamed)


def test_plain_gzip_is_refused_with_the_command_that_makes_it_indexable(tmp_path, capsys):
    gzipped = tmp_path / "genome.fa.gz"
    with gzip.open(gzipped, "wt") as handle:
        handle.write(">chr1\nACGTACGTAC\n")
    with pytest.raises(
        ReferenceFileError, match=rf"plain gzip.*run `nucel index {gzipped}` once .*genome\.bgz\.fa\.gz"
    ):
        Reference(gzipped)
    vcf = tmp_path / "calls.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr1\t2\t.\tC\tA\t.\t.\t.\n")
    # The reference is refused before any model loads: the generator named here does not exist.
    for command in (
        ["score-variants", "--variants", str(vcf), "--generator", str(tmp_path / "no-model")],
        ["ism", "--region", "chr1:1-5", "--generator", str(tmp_path / "no-model")],
    ):
        assert cli.main([*command, "--reference", str(gzipped), "-o", str(tmp_path / "out.tsv")]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and f"run `nucel index {gzipped}` once" in error and "Traceback" not in error
    assert cli.main(["index", str(gzipped)]) == 0
    indexed = tmp_path / "genome.bgz.fa.gz"
    assert {path.name for path in tmp_path.iterdir()} >= {indexed.name, f"{indexed.name}.fai", f"{indexed.name}.gzi"}
    assert Reference(indexed).fetch("chr1", 2, 6) == "GTAC"
    assert cli.main(["index", str(gzipped)]) == 2 and "the file exists; pass --overwrite" in capsys.readouterr().err


def test_a_missing_index_is_built_where_the_folder_is_writable_and_asked_for_where_not(tmp_path, monkeypatch, capsys):
    plain = write_fasta(tmp_path / "genome.fa", [("chr1", "ACGT" * 50)])
    bgzipped = tmp_path / "genome.fa.bgz"
    pysam.tabix_compress(str(plain), str(bgzipped))
    for path, indexes in ((plain, [".fai"]), (bgzipped, [".fai", ".gzi"])):
        assert Reference(path).fetch("chr1", 0, 4) == "ACGT"
        assert all(Path(f"{path}{suffix}").is_file() for suffix in indexes)
        Path(f"{path}.fai").unlink()
        monkeypatch.setattr(references.os, "access", lambda *args: False)  # as a read-only shared folder is
        assert (
            cli.main(
                [
                    "ism",
                    "--region",
                    "chr1:1-8",
                    "--reference",
                    str(path),
                    "--generator",
                    "none",
                    "-o",
                    str(tmp_path / "ism"),
                ]
            )
            == 2
        )
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "its index (" in error and "folder is not writable; run `nucel index" in error
        assert "-o WRITABLE_FOLDER/genome.bgz.fa.gz" in error
        monkeypatch.undo()


def test_what_htslib_cannot_index_is_one_line(tmp_path):
    with pytest.raises(ReferenceFileError, match="not a FASTA file"):
        Reference(write_text(tmp_path / "notes.fa", "hello\n"))
    ragged = write_text(tmp_path / "ragged.fa", ">chr1\nACGT\nACGTACGT\nAC\n")  # faidx needs equal line lengths
    with pytest.raises(
        ReferenceFileError, match=r"cannot index it as FASTA .*`nucel index .*ragged.fa` writes an indexable"
    ):
        Reference(ragged)
    records, bases = write_indexed_copy(ragged, tmp_path / "ragged.bgz.fa.gz")
    assert (records, bases) == (1, 14)
    assert Reference(tmp_path / "ragged.bgz.fa.gz").fetch("chr1", 0, 14) == "ACGTACGTACGTAC"
    with pytest.raises(ReferenceFileError, match="no such file"):
        Reference(tmp_path / "missing.fa")


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_chromosome_names_and_what_a_missing_one_is_told(tmp_path, shared_data):
    reference = Reference(
        write_fasta(
            tmp_path / "genome.fa", [("chr1", "ACGT" * 10), ("chr2", "GGCC" * 10), ("chrUn_KI270302v1", "A" * 8)]
        )
    )
    assert reference.resolve("1") == "chr1" and reference.resolve("chr2") == "chr2"
    assert reference.resolve("chrX") is None
    assert reference.renamed == {("1", "chr1"): 1}
    region = read_region("2:3-6", reference)
    assert (region.chrom, region.reference_name, region.start, region.end) == ("2", "chr2", 2, 6)
    assert region.sequence == "CCGG"
    with pytest.raises(
        ReferenceFileError,
        match=r"'Chr1' is not in the reference .*the reference has chr1, chr2, "
        r"chrUn_KI270302v1; nearest name: 'chr1'",
    ):
        read_region("Chr1:1-5", reference)
    with pytest.raises(ReferenceFileError, match=r"region 'chr1:30-50' is outside chr1 \(1..40\)"):
        read_region("chr1:30-50", reference)
    # The BRCA1 reference shipped with the data is one record named after its slice of chr17.
    brca1 = tmp_path / "brca1.fa"
    shutil.copy(shared_data / "vep" / "brca1_hg19_chr17_41180001-41300000.fa", brca1)
    hint = Reference(brca1).missing_contig_hint("chr17")
    assert "'chr17:41180001-41300000' looks like a slice of chr17 whose positions start at 1" in hint
