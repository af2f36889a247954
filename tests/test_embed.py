"""Embeddings: per-base alignment, reverse-complement averaging, long-sequence windowing, output files."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from nucel import NucELConfig, NucELModel
from nucel.core.embeddings import embed_sequences
from nucel.core.models import load_encoder, save_model_folder
from nucel.core.windows import window_plan, window_spans
from nucel.embed import ids_path, write_embeddings
from nucel.tokenization import reverse_complement


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """A tiny encoder saved and loaded the way users load one."""
    torch.manual_seed(0)
    folder = save_model_folder(
        NucELModel(NucELConfig.from_preset("tiny")), tmp_path_factory.mktemp("models") / "encoder"
    )
    return load_encoder(str(folder), "cpu")


def random_dna(length: int, seed: int) -> str:
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), size=length))


def reference_hidden(model, tokenizer, sequence: str, layer=None) -> np.ndarray:
    """The model's own output for one unpadded sequence ([CLS] seq), computed directly."""
    ids = tokenizer(sequence, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        outputs = model(input_ids=ids, output_hidden_states=True)
    hidden = outputs.last_hidden_state if layer is None else outputs.hidden_states[layer]
    return hidden[0].numpy()


def test_per_base_has_one_row_per_base_with_lowercase_and_n(encoder):
    model, tokenizer = encoder
    sequences = ["acgtNNNNacgtRYacgt", "ACGT", "nnnnACGTACGTTTGA"]
    embeddings = embed_sequences(model, tokenizer, sequences, pooling=None, progress=False)
    assert [e.shape for e in embeddings] == [(len(s), 64) for s in sequences]
    # Row i is base i: the same as the model's hidden state of token i + 1 (after [CLS]) run alone, and
    # lowercase is the same DNA as uppercase.
    expected = reference_hidden(model, tokenizer, sequences[0].upper())[1:]
    np.testing.assert_allclose(embeddings[0], expected, atol=1e-5)


def test_pooling_choices_and_layer(encoder):
    model, tokenizer = encoder
    sequence = random_dna(50, 1)
    hidden = reference_hidden(model, tokenizer, sequence)
    pooled = {
        p: embed_sequences(model, tokenizer, [sequence, "ACGTAC"], pooling=p, progress=False)[0]
        for p in ("cls", "mean", "max")
    }
    np.testing.assert_allclose(pooled["cls"], hidden[0], atol=1e-5)
    np.testing.assert_allclose(pooled["mean"], hidden[1:].mean(axis=0), atol=1e-5)  # bases only, [CLS] excluded
    np.testing.assert_allclose(pooled["max"], hidden[1:].max(axis=0), atol=1e-5)
    layer_two = embed_sequences(model, tokenizer, [sequence], pooling=None, layer=2, progress=False)[0]
    np.testing.assert_allclose(layer_two, reference_hidden(model, tokenizer, sequence, layer=2)[1:], atol=1e-5)
    with pytest.raises(ValueError, match="layer 9 does not exist"):
        embed_sequences(model, tokenizer, [sequence], layer=9, progress=False)


def test_reverse_complement_averaging_is_strand_symmetric(encoder):
    model, tokenizer = encoder
    sequence = random_dna(90, 2) + "NNacgt"
    reverse = reverse_complement(sequence)
    for pooling in ("cls", "mean", "max"):
        forward_vector, reverse_vector = embed_sequences(
            model, tokenizer, [sequence, reverse], pooling=pooling, reverse_complement_average=True, progress=False
        )
        np.testing.assert_allclose(forward_vector, reverse_vector, atol=1e-5)
    forward_bases, reverse_bases = embed_sequences(
        model, tokenizer, [sequence, reverse], pooling=None, reverse_complement_average=True, progress=False
    )
    # Row i of the sequence is the base pair at row L-1-i of its reverse complement.
    np.testing.assert_allclose(forward_bases, reverse_bases[::-1], atol=1e-5)
    # And averaging really changed something: a random model is not strand-symmetric on its own.
    plain = embed_sequences(model, tokenizer, [sequence], pooling=None, progress=False)[0]
    assert not np.allclose(plain, forward_bases, atol=1e-3)


@pytest.mark.parametrize(
    "length, window, overlap", [(10, 10, 3), (11, 10, 3), (1000, 100, 30), (1017, 128, 64), (257, 64, 0)]
)
def test_windows_cover_every_base_exactly_once(length, window, overlap):
    plan = list(window_plan(length, window, overlap))
    spans, segments = (
        [(start, end) for start, end, _, _ in plan],
        [(keep_start, keep_end) for _, _, keep_start, keep_end in plan],
    )
    assert spans == window_spans(length, window, overlap)
    assert plan[::-1] == list(window_plan(length, window, overlap, backwards=True))
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(end - start == min(window, length) for start, end in spans)
    assert all(previous[1] - following[0] >= overlap for previous, following in zip(spans, spans[1:]))
    covered = np.zeros(length, dtype=int)
    for (start, end), (keep_start, keep_end) in zip(spans, segments):
        assert start <= keep_start < keep_end <= end  # every window provides bases from inside itself
        covered[keep_start:keep_end] += 1
        # Kept bases have at least overlap // 2 bases of context on each side, except at the sequence ends.
        assert keep_start == 0 or keep_start - start >= overlap // 2
        assert keep_end == length or end - keep_end >= overlap // 2
    assert (covered == 1).all()


def test_long_sequence_is_stitched_from_its_windows(encoder):
    model, tokenizer = encoder
    sequence = random_dna(300, 3)
    window, overlap = 100, 40
    stitched = embed_sequences(
        model, tokenizer, [sequence], pooling=None, window=window, overlap=overlap, progress=False
    )[0]
    assert stitched.shape == (300, 64)
    cls_vectors = []
    for start, end, keep_start, keep_end in window_plan(300, window, overlap):
        alone = reference_hidden(model, tokenizer, sequence[start:end])
        np.testing.assert_allclose(
            stitched[keep_start:keep_end], alone[1 + keep_start - start : 1 + keep_end - start], atol=1e-5
        )
        cls_vectors.append(alone[0])
    pooled_cls, pooled_mean = (
        embed_sequences(model, tokenizer, [sequence], pooling=p, window=window, overlap=overlap, progress=False)[0]
        for p in ("cls", "mean")
    )
    np.testing.assert_allclose(pooled_cls, np.mean(cls_vectors, axis=0), atol=1e-5)
    np.testing.assert_allclose(pooled_mean, stitched.mean(axis=0), atol=1e-5)


def test_batching_by_length_keeps_input_order(encoder):
    model, tokenizer = encoder
    sequences = [random_dna(n, n) for n in (30, 120, 7, 64, 30)]
    together = embed_sequences(model, tokenizer, sequences, pooling="mean", batch_size=2, progress=False)
    alone = np.stack([embed_sequences(model, tokenizer, [s], pooling="mean", progress=False)[0] for s in sequences])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_output_files(encoder, tmp_path):
    model, tokenizer = encoder
    ids, sequences = ["first", "second"], ["ACGTACGTAA", "acgN"]
    pooled = embed_sequences(model, tokenizer, sequences, pooling="mean", progress=False)
    per_base = embed_sequences(model, tokenizer, sequences, pooling=None, progress=False)

    write_embeddings(tmp_path / "pooled.npy", ids, pooled)
    np.testing.assert_array_equal(np.load(tmp_path / "pooled.npy"), pooled)
    assert ids_path(tmp_path / "pooled.npy").read_text().split() == ["id", *ids]

    write_embeddings(tmp_path / "bases.npy", ids, per_base)
    rows = np.load(tmp_path / "bases.npy")
    assert rows.shape == (14, 64)
    table = [line.split("\t") for line in ids_path(tmp_path / "bases.npy").read_text().splitlines()[1:]]
    assert table == [["first", "0", "10"], ["second", "10", "14"]]
    np.testing.assert_array_equal(rows[10:14], per_base[1])

    write_embeddings(tmp_path / "bases.parquet", ids, per_base, sequences)
    frame = pq.read_table(tmp_path / "bases.parquet").to_pydict()
    assert frame["id"] == ["first"] * 10 + ["second"] * 4
    assert frame["offset"][10:] == [0, 1, 2, 3] and frame["base"][10:] == ["A", "C", "G", "N"]
    np.testing.assert_allclose(frame["embedding"][13], per_base[1][3], rtol=1e-6)

    write_embeddings(tmp_path / "pooled.parquet", ids, pooled)
    frame = pq.read_table(tmp_path / "pooled.parquet").to_pydict()
    assert frame["id"] == ids
    np.testing.assert_allclose(frame["embedding"], pooled, rtol=1e-6)
    assert not list(tmp_path.glob(".*partial"))  # no staging files left behind


def test_real_genome_slice_with_n_run_and_soft_masking(encoder, shared_data):
    """GRCh38 chr2:9,501-12,500: the end of the leading N run, then soft-masked and upper-case bases."""
    from nucel.core.sequences import read_fasta

    model, tokenizer = encoder
    path = shared_data / "pretrain" / "human_hg38_chr2_1-2333275" / "chr2_1-2333275.fa.gz"
    sequence = next(read_fasta(path))[1][9500:12500]
    assert "N" in sequence and any(base.islower() for base in sequence)
    per_base = embed_sequences(model, tokenizer, [sequence], pooling=None, window=1024, overlap=256, progress=False)[0]
    assert per_base.shape == (3000, 64) and np.isfinite(per_base).all()
    forward, reverse = embed_sequences(
        model,
        tokenizer,
        [sequence, reverse_complement(sequence)],
        pooling="mean",
        reverse_complement_average=True,
        window=1024,
        overlap=256,
        progress=False,
    )
    # The same windows, batched with different neighbours: float32 sums agree to ~1e-5 relative.
    np.testing.assert_allclose(forward, reverse, rtol=1e-4, atol=1e-5)
