"""Genome-browser tracks (core/tracks.py): bigWig and bedGraph values equal the TSV's, on the reference's
chromosome names and sizes, for `nucel ism` and `nucel score-variants`."""

import csv
import random
from collections import defaultdict

import numpy as np
import pyBigWig
import pytest
import torch

from nucel import NucELConfig, NucELGenerator, cli
from nucel.core.models import save_model_folder
from nucel.core.tracks import TrackError, write_track

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    torch.manual_seed(0)
    return save_model_folder(
        NucELGenerator(NucELConfig.from_preset("tiny-generator", restrict_to_bases=True)),
        tmp_path_factory.mktemp("models") / "generator",
    )


@pytest.fixture
def genome(tmp_path):
    rng = random.Random(7)
    chromosomes = {
        "chr1": "".join(rng.choice("ACGT") for _ in range(600)),
        "chr2": "".join(rng.choice("ACGT") for _ in range(300)) + "N" * 20 + "ACGTACGTAC",
    }
    path = tmp_path / "genome.fa"
    path.write_text(
        "".join(
            f">{name}\n" + "".join(seq[i : i + 50] + "\n" for i in range(0, len(seq), 50))
            for name, seq in chromosomes.items()
        )
    )
    return path, chromosomes


def bedgraph_values(path) -> dict[tuple[str, int], float]:
    lines = path.read_text().splitlines()
    assert lines[0].startswith("track type=bedGraph")
    values = {}
    for line in lines[1:]:
        chrom, start, end, value = line.split("\t")
        assert int(end) == int(start) + 1
        values[chrom, int(start)] = float(value)
    return values


def bigwig_values(path, chrom_sizes: dict[str, int]) -> dict[tuple[str, int], float]:
    track = pyBigWig.open(str(path))
    try:
        assert track.chroms() == chrom_sizes
        return {(chrom, start): value for chrom in chrom_sizes for start, _, value in (track.intervals(chrom) or [])}
    finally:
        track.close()


def test_ism_tracks_hold_the_tables_values_in_reference_coordinates(generator, genome, tmp_path):
    reference, chromosomes = genome
    output = tmp_path / "ism"
    assert (
        cli.main(
            [
                "ism",
                "--region",
                "chr2:291-330",
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
    sizes = {"chr1": 600, "chr2": 330}
    with open(output / "ism.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert len(rows) == 40 and rows[0]["position"] == "291"
    for track in ("A", "C", "G", "T", "mean"):
        from_bigwig = bigwig_values(output / f"ism.{track}.bw", sizes)
        from_bedgraph = bedgraph_values(output / f"ism.{track}.bedgraph")
        expected = {}
        for row in rows:
            values = np.array([float(row[base]) for base in "ACGT"])
            value = values.sum() / 3 if track == "mean" else float(row[track])
            if np.isfinite(value):  # N positions have no value in a track
                expected["chr2", int(row["position"]) - 1] = value
        assert len(expected) == 10 + 10  # 10 bases before the N run and 10 after it: 20 of the 40 are N
        assert from_bedgraph.keys() == expected.keys() == from_bigwig.keys()
        for key, value in expected.items():
            assert from_bedgraph[key] == pytest.approx(value, rel=1e-5, abs=1e-6)
            assert from_bigwig[key] == pytest.approx(value, rel=1e-5, abs=1e-6)  # bigWig stores float32
    assert not list(output.glob(".*"))


def test_score_variants_tracks_are_per_position_means_on_the_references_names(generator, genome, tmp_path):
    reference, chromosomes = genome
    lines = []
    for position in (5, 77, 300, 150):  # unsorted; VCF names without the chr prefix
        ref = chromosomes["chr1"][position - 1]
        alts = ",".join(base for base in "ACGT" if base != ref)  # three ALTs at one position: their mean
        lines.append(f"1\t{position}\tv{position}\t{ref}\t{alts}\t.\t.\t.")
    vcf = tmp_path / "calls.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + "\n".join(lines) + "\n")
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
                "--window",
                "32",
                "--device",
                "cpu",
                "-o",
                str(tmp_path / "scores.tsv"),
            ]
        )
        == 0
    )
    with open(tmp_path / "scores.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    by_position = defaultdict(list)
    for row in rows:
        by_position["chr1", int(row["position"]) - 1].append(float(row["llr"]))
    expected = {key: sum(values) / len(values) for key, values in by_position.items()}
    for values in (
        bedgraph_values(tmp_path / "scores.llr.bedgraph"),
        bigwig_values(tmp_path / "scores.llr.bw", {"chr1": 600, "chr2": 330}),
    ):
        assert values.keys() == expected.keys()
        assert all(values[key] == pytest.approx(value, rel=1e-5, abs=1e-6) for key, value in expected.items())


def test_a_track_refuses_what_a_browser_could_not_show(tmp_path):
    sizes = {"chr1": 100}
    with pytest.raises(TrackError, match="chromosome\\(s\\) chrZ are not in the reference's index"):
        write_track(tmp_path / "t", sizes, [("chrZ", 1, 1.0)], "test")
    with pytest.raises(TrackError, match="two values for chr1:3"):
        write_track(tmp_path / "t", sizes, [("chr1", 2, 1.0), ("chr1", 2, 2.0)], "test")
    entries = [("chr1", 9, 0.5), ("chr1", 2, float("nan")), ("chr1", 3, -1.0)]
    written = write_track(tmp_path / "t", sizes, entries, "test")
    assert [path.name for path in written] == ["t.bw", "t.bedgraph"]
    assert bedgraph_values(tmp_path / "t.bedgraph") == {("chr1", 3): -1.0, ("chr1", 9): 0.5}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["t.bedgraph", "t.bw"]
