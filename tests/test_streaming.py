"""Streaming inference: files written record by record equal the in-memory results, memory stays flat as the input
grows, and an interrupted command leaves no partial output."""

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from nucel import NucELConfig, NucELGenerator, NucELModel, cli
from nucel.core import embeddings as embed_module  # the streaming machinery of `nucel embed`
from nucel.core.embeddings import embed_sequences
from nucel.core.models import load_encoder, save_model_folder
from nucel.core.windows import window_plan
from nucel.embed import ids_path
from nucel.tokenization import reverse_complement


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("streaming")
    encoder = save_model_folder(NucELModel(NucELConfig.from_preset("tiny")), root / "encoder")
    generator = save_model_folder(
        NucELGenerator(NucELConfig.from_preset("tiny-generator", restrict_to_bases=True)), root / "generator"
    )
    return encoder, generator


@pytest.fixture(scope="module")
def encoder(folders):
    return load_encoder(folders[0], "cpu")


VCF_HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


def random_dna(length: int, seed: int) -> str:
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), size=length))


# Short records around long ones, so that length sorting reorders them and a long record's windows span reads.
RECORDS = {
    "short": "acgtNNACGT",
    "long": random_dna(700, 1) + "NNNN" + random_dna(300, 2),
    "medium": random_dna(90, 3),
    "tiny": "GATTACA",
    "second_long": random_dna(451, 4),
}
WINDOW, OVERLAP = 128, 40


def write_fasta(path, records: dict[str, str]):
    path.write_text(
        "".join(f">{name} description\n{sequence[:60]}\n{sequence[60:]}\n" for name, sequence in records.items())
    )
    return path


def direct_per_base(model, tokenizer, sequence: str, reverse_complement_average: bool) -> np.ndarray:
    """The per-base definition computed without the streaming machinery: each window run alone, its kept bases
    stitched, the reverse strand cut the same way on the reverse complement and flipped back."""

    def strand(text):
        rows = np.empty((len(text), model.config.hidden_size), np.float32)
        for start, end, keep_start, keep_end in window_plan(len(text), WINDOW, OVERLAP):
            with torch.no_grad():
                hidden = model(
                    input_ids=tokenizer(text[start:end].upper(), return_tensors="pt")["input_ids"]
                ).last_hidden_state[0]
            rows[keep_start:keep_end] = hidden[1 + keep_start - start : 1 + keep_end - start].numpy()
        return rows

    forward = strand(sequence)
    return (forward + strand(reverse_complement(sequence))[::-1]) / 2 if reverse_complement_average else forward


@pytest.mark.parametrize("reverse_complement_average", [False, True])
def test_streamed_per_base_files_equal_the_in_memory_result(
    encoder, folders, tmp_path, monkeypatch, reverse_complement_average
):
    model, tokenizer = encoder
    # One batch of read-ahead with batches of 2: records finish out of order and a long record crosses many reads.
    monkeypatch.setattr(embed_module, "READ_AHEAD_BATCHES", 1)
    fasta = write_fasta(tmp_path / "input.fa", RECORDS)
    options = ["--per-base", "--window", str(WINDOW), "--overlap", str(OVERLAP), "--batch-size", "2", "--device", "cpu"]
    options += ["--reverse-complement"] if reverse_complement_average else []
    assert cli.main(["embed", "--model", str(folders[0]), str(fasta), "-o", str(tmp_path / "bases.npy"), *options]) == 0
    assert (
        cli.main(
            [
                "embed",
                "--model",
                str(folders[0]),
                str(fasta),
                "-o",
                str(tmp_path / "bases.parquet"),
                *options,
                "--dtype",
                "float16",
            ]
        )
        == 0
    )

    in_memory = embed_sequences(
        model,
        tokenizer,
        list(RECORDS.values()),
        pooling=None,
        window=WINDOW,
        overlap=OVERLAP,
        reverse_complement_average=reverse_complement_average,
        batch_size=2,
        progress=False,
    )
    rows = np.load(tmp_path / "bases.npy")
    table = [line.split("\t") for line in ids_path(tmp_path / "bases.npy").read_text().splitlines()]
    assert table[0] == ["id", "start", "end"] and [line[0] for line in table[1:]] == list(RECORDS)
    assert rows.shape == (sum(map(len, RECORDS.values())), 64) and rows.dtype == np.float32
    for (name, sequence), (_, start, end), expected in zip(RECORDS.items(), table[1:], in_memory):
        np.testing.assert_array_equal(rows[int(start) : int(end)], expected)
        np.testing.assert_allclose(
            expected, direct_per_base(model, tokenizer, sequence, reverse_complement_average), atol=1e-5
        )

    frame = pq.read_table(tmp_path / "bases.parquet")
    assert str(frame.schema.field("embedding").type) == "fixed_size_list<element: halffloat>[64]"
    frame = frame.to_pydict()
    assert frame["id"] == [name for name, sequence in RECORDS.items() for _ in sequence]
    assert frame["offset"] == [i for sequence in RECORDS.values() for i in range(len(sequence))]
    assert "".join(frame["base"]) == "".join(RECORDS.values()).upper()
    np.testing.assert_allclose(
        np.array(frame["embedding"], np.float32), np.concatenate(in_memory), rtol=2e-3, atol=2e-3
    )
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize("pooling", ["mean", "max", "cls"])
def test_streamed_pooled_files_equal_the_in_memory_result(encoder, folders, tmp_path, monkeypatch, pooling):
    model, tokenizer = encoder
    monkeypatch.setattr(embed_module, "READ_AHEAD_BATCHES", 1)
    fasta = write_fasta(tmp_path / "input.fa", RECORDS)
    options = [
        "--pooling",
        pooling,
        "--reverse-complement",
        "--window",
        str(WINDOW),
        "--overlap",
        str(OVERLAP),
        "--batch-size",
        "3",
    ]
    assert (
        cli.main(["embed", "--model", str(folders[0]), str(fasta), "-o", str(tmp_path / "pooled.npy"), *options]) == 0
    )
    assert (
        cli.main(["embed", "--model", str(folders[0]), str(fasta), "-o", str(tmp_path / "pooled.parquet"), *options])
        == 0
    )
    in_memory = embed_sequences(
        model,
        tokenizer,
        list(RECORDS.values()),
        pooling=pooling,
        window=WINDOW,
        overlap=OVERLAP,
        reverse_complement_average=True,
        batch_size=3,
        progress=False,
    )
    np.testing.assert_array_equal(np.load(tmp_path / "pooled.npy"), in_memory)
    assert ids_path(tmp_path / "pooled.npy").read_text().split() == ["id", *RECORDS]
    frame = pq.read_table(tmp_path / "pooled.parquet").to_pydict()
    assert frame["id"] == list(RECORDS)
    np.testing.assert_array_equal(np.array(frame["embedding"], np.float32), in_memory)
    if pooling != "cls":  # mean and max pool the per-base vectors: the same numbers from the definition
        for vector, sequence in zip(in_memory, RECORDS.values()):
            bases = (
                direct_per_base(model, tokenizer, sequence, False),
                direct_per_base(model, tokenizer, reverse_complement(sequence), False)[::-1],
            )
            pooled = [b.mean(axis=0) if pooling == "mean" else b.max(axis=0) for b in bases]
            np.testing.assert_allclose(vector, np.mean(pooled, axis=0), atol=1e-5)


def test_a_pooled_embedding_never_builds_per_base_arrays(encoder, monkeypatch):
    """Pooled vectors are running sums: nothing the size of a record's bases is ever kept."""
    model, tokenizer = encoder
    kept = []
    original = embed_module._RecordEmbedding.add

    def add(self, window, hidden):
        original(self, window, hidden)
        kept.append(sum(len(rows) for strand in self.rows.values() for rows in strand))

    monkeypatch.setattr(embed_module._RecordEmbedding, "add", add)
    embed_sequences(model, tokenizer, [RECORDS["long"]], pooling="mean", window=WINDOW, overlap=OVERLAP, progress=False)
    assert kept and max(kept) == 0
    kept.clear()
    embed_sequences(
        model, tokenizer, [RECORDS["long"]], pooling=None, window=WINDOW, overlap=OVERLAP, batch_size=2, progress=False
    )
    # Per-base rows are handed on after every batch: never more than a batch of windows' worth is held.
    assert 0 < max(kept) <= 2 * WINDOW


# Reports the child's own peak resident memory, whatever ran in this process before.
CHILD = (
    "import json, resource, sys; from nucel import cli; code = cli.main(sys.argv[2:]); "
    "json.dump({'code': code, 'peak_kib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}, open(sys.argv[1], 'w'))"
)


def peak_rss_mib(tmp_path, arguments: list[str], name: str) -> float:
    report = tmp_path / f"{name}.json"
    environment = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(report), *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        env=environment,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(report.read_text())
    assert measured["code"] == 0
    return measured["peak_kib"] / 1024


@pytest.mark.slow
def test_memory_stays_flat_as_the_input_grows(folders, tmp_path):
    """The same per-base command on 1x and 4x the input: the peak RSS must not follow the input. Before streaming, the
    4x run held every base's vector three times over: 180 MB more than the 1x run here (streamed: 10-20 MB of
    allocator noise)."""
    one_x = {f"chunk{i}": random_dna(n, i) for i, n in enumerate([40_000, 300, 5_000, 70, 4_630])}
    four_x = {
        f"{name}_{copy}": random_dna(len(sequence), 100 * copy + i)
        for copy in range(4)
        for i, (name, sequence) in enumerate(one_x.items())
    }
    peaks = []
    for name, records in (("one_x", one_x), ("four_x", four_x)):
        fasta = write_fasta(tmp_path / f"{name}.fa", records)
        peaks.append(
            peak_rss_mib(
                tmp_path,
                [
                    "embed",
                    "--model",
                    str(folders[0]),
                    str(fasta),
                    "-o",
                    str(tmp_path / f"{name}.npy"),
                    "--per-base",
                    "--device",
                    "cpu",
                ],
                name,
            )
        )
        assert np.load(tmp_path / f"{name}.npy", mmap_mode="r").shape == (sum(map(len, records.values())), 64)
    assert peaks[1] < peaks[0] + 50, f"peak RSS {peaks[0]:.0f} MiB for 50 kbp, {peaks[1]:.0f} MiB for 200 kbp"


# ------------------------------------------------------------------------------------------------ interruption


def interrupt_on_second_batch(monkeypatch, module, name, error):
    """Make `module.name` (a model call) raise `error` the second time it is called."""
    original, calls = getattr(module, name), []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)
    return calls


@pytest.mark.parametrize("output", ["e.npy", "e.parquet"])
def test_ctrl_c_or_an_error_leaves_no_partial_output(folders, tmp_path, monkeypatch, capsys, output):
    fasta = write_fasta(tmp_path / "input.fa", RECORDS)
    command = [
        "embed",
        "--model",
        str(folders[0]),
        str(fasta),
        "-o",
        str(tmp_path / output),
        "--per-base",
        "--window",
        "64",
        "--overlap",
        "8",
        "--batch-size",
        "2",
        "--device",
        "cpu",
    ]
    interrupt_on_second_batch(monkeypatch, embed_module, "encode_batch", KeyboardInterrupt())
    assert cli.main(command) == 130  # 128 + SIGINT, the shell's code for Ctrl-C
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message == (
        f"nucel embed: interrupted (SIGINT); {tmp_path / output} was not written and no partial file is left; "
        "run the command again to start over"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.fa"]

    monkeypatch.undo()
    interrupt_on_second_batch(monkeypatch, embed_module, "encode_batch", RuntimeError("CUDA out of memory"))
    with pytest.raises(RuntimeError, match="out of memory"):
        cli.main(command)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.fa"]


def test_an_existing_output_survives_a_failed_run(folders, tmp_path, monkeypatch):
    """The new file replaces the old one only when complete: a failed run leaves the previous result intact."""
    fasta = write_fasta(tmp_path / "input.fa", RECORDS)
    command = [
        "embed",
        "--model",
        str(folders[0]),
        str(fasta),
        "-o",
        str(tmp_path / "e.npy"),
        "--window",
        "64",
        "--overlap",
        "8",
        "--batch-size",
        "2",
        "--device",
        "cpu",
    ]
    assert cli.main(command) == 0
    before = np.load(tmp_path / "e.npy")
    interrupt_on_second_batch(monkeypatch, embed_module, "encode_batch", RuntimeError("disk full"))
    with pytest.raises(RuntimeError):
        cli.main([*command, "--pooling", "max", "--overwrite"])
    np.testing.assert_array_equal(np.load(tmp_path / "e.npy"), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.ids.tsv", "e.npy", "input.fa"]


def test_score_variants_and_ism_interrupted_leave_nothing(folders, tmp_path, monkeypatch, capsys):
    from nucel.core import mutagenesis, variant_scores

    _, generator = folders
    chromosome = random_dna(2000, 9)
    (tmp_path / "genome.fa").write_text(f">chr1\n{chromosome}\n")
    lines = [
        f"chr1\t{p}\t.\t{chromosome[p - 1]}\t{'A' if chromosome[p - 1] != 'A' else 'C'}\t.\t.\t."
        for p in range(10, 1500, 7)
    ]
    (tmp_path / "calls.vcf").write_text(VCF_HEADER + "\n".join(lines) + "\n")
    interrupt_on_second_batch(monkeypatch, variant_scores, "score_variants", KeyboardInterrupt())
    assert (
        cli.main(
            [
                "score-variants",
                "--variants",
                str(tmp_path / "calls.vcf"),
                "--reference",
                str(tmp_path / "genome.fa"),
                "--generator",
                str(generator),
                "--window",
                "64",
                "--batch-size",
                "4",
                "--device",
                "cpu",
                "-o",
                str(tmp_path / "s.tsv"),
            ]
        )
        == 130
    )
    assert "nucel score-variants: interrupted (SIGINT);" in capsys.readouterr().err
    monkeypatch.undo()
    interrupt_on_second_batch(monkeypatch, mutagenesis, "score_variants", KeyboardInterrupt())  # what ISM calls
    assert (
        cli.main(
            [
                "ism",
                "--region",
                "chr1:1-200",
                "--reference",
                str(tmp_path / "genome.fa"),
                "--generator",
                str(generator),
                "--window",
                "64",
                "--batch-size",
                "4",
                "--device",
                "cpu",
                "-o",
                str(tmp_path / "ism"),
            ]
        )
        == 130
    )
    assert "nucel ism: interrupted (SIGINT);" in capsys.readouterr().err
    # Nothing but the inputs, and the reference's index, built on first use.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.vcf", "genome.fa", "genome.fa.fai"]


def test_score_variants_streams_in_input_order(folders, tmp_path, monkeypatch):
    """Scored a few batches at a time, the rows come out in input order with the scores of the whole-list call."""
    from nucel.core import variant_scores
    from nucel.variant_files import read_vcf

    _, generator = folders
    model, tokenizer = variant_scores.load_generator(str(generator), "cpu")
    chromosome = random_dna(3000, 11)
    (tmp_path / "genome.fa").write_text(f">chr1\n{chromosome}\n")
    positions = list(range(2900, 10, -37))
    lines = [
        f"chr1\t{p}\tv{p}\t{chromosome[p - 1]}\t{'A' if chromosome[p - 1] != 'A' else 'C'},"
        f"{'T' if chromosome[p - 1] != 'T' else 'G'}"
        "\t.\t.\t."
        for p in positions
    ]
    (tmp_path / "calls.vcf").write_text(VCF_HEADER + "\n".join(lines) + "\nchr1\t50\tindel\tAC\tA\t.\t.\t.\n")
    monkeypatch.setattr(variant_scores, "READ_AHEAD_BATCHES", 2)
    assert (
        cli.main(
            [
                "score-variants",
                "--variants",
                str(tmp_path / "calls.vcf"),
                "--reference",
                str(tmp_path / "genome.fa"),
                "--generator",
                str(generator),
                "--window",
                "64",
                "--batch-size",
                "5",
                "--device",
                "cpu",
                "-o",
                str(tmp_path / "s.tsv"),
            ]
        )
        == 0
    )
    rows = [line.split("\t") for line in (tmp_path / "s.tsv").read_text().splitlines()[1:]]
    assert [row[0] for row in rows] == [f"v{p}" for p in positions for _ in range(2)] + ["indel"]
    assert rows[-1][5:] == ["not_snv", "", ""]  # no score, no reference base (REF is not a single base)
    all_rows = read_vcf(tmp_path / "calls.vcf", tmp_path / "genome.fa")
    expected = variant_scores.log_likelihood_ratios(
        model, tokenizer, [r.variant for r in all_rows if r.status == "ok"], 64, progress=False
    )
    np.testing.assert_allclose([float(row[6]) for row in rows[:-1]], expected, rtol=1e-4, atol=1e-5)
