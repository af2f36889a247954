"""The downstream probe run during pre-training: fixed seeded examples, a logistic regression on frozen mean
embeddings, MCC as sklearn computes it."""

import random

import numpy as np
import pytest
from sklearn.metrics import matthews_corrcoef

from nucel import NucELConfig, NucELModel
from nucel.training.probe import load_probe_task, probe_figures, probe_task


def gc_task_folder(folder, train: int = 120, test: int = 60, test_name: str = "test.csv"):
    """A task any encoder that sees its input can probe: label 1 for GC-rich sequences, 0 for AT-rich ones."""
    rng = random.Random(0)

    def rows(count):
        lines = []
        for i in range(count):
            label = i % 2
            bases = "GGCCA" if label else "AATTG"
            lines.append(f"{''.join(rng.choice(bases) for _ in range(rng.randint(40, 60)))},{label}")
        return "sequence,label\n" + "\n".join(lines) + "\n"

    folder.mkdir(parents=True)
    (folder / "train.csv").write_text(rows(train))
    (folder / test_name).write_text(rows(test))
    return folder


def test_probe_mcc_equals_sklearn_on_its_own_predictions(tmp_path, tokenizer):
    task = load_probe_task(gc_task_folder(tmp_path / "gc" / "0"), train_examples=80, test_examples=40, seed=0)
    encoder = NucELModel(NucELConfig.from_preset("tiny")).train()
    result = probe_task(encoder, tokenizer, task)

    assert len(result.predictions) == len(result.test_labels) == 40
    assert result.mcc == matthews_corrcoef(result.test_labels, result.predictions)
    assert result.mcc > 0.8  # even random-init mean embeddings carry GC content
    assert encoder.training  # left in the mode it was in
    assert probe_figures(encoder, tokenizer, [task]) == {"probe_mcc/gc/0": result.mcc}


def test_probe_examples_are_a_fixed_seeded_subsample(tmp_path):
    folder = gc_task_folder(tmp_path / "gc" / "1", test_name="dev.csv")  # no test.csv: dev.csv is the test split
    first = load_probe_task(folder, train_examples=30, test_examples=20, seed=4)
    again = load_probe_task(folder, train_examples=30, test_examples=20, seed=4)
    other = load_probe_task(folder, train_examples=30, test_examples=20, seed=5)
    assert len(first.train.sequences) == 30 and len(first.test.sequences) == 20 and first.name == "gc/1"
    assert first.train.sequences == again.train.sequences and np.array_equal(first.test.labels, again.test.labels)
    assert first.train.sequences != other.train.sequences
    everything = load_probe_task(folder, train_examples=10_000, test_examples=10_000, seed=4)
    assert len(everything.train.sequences) == 120 and len(everything.test.sequences) == 60

    with pytest.raises(ValueError, match="probe_tasks: .* needs train.csv and test.csv"):
        load_probe_task(tmp_path / "nowhere", 10, 10, seed=0)


def test_every_layer_embeddings_match_embed_sequences(tokenizer):
    """layer_embeddings pools every representation in one pass; each must be what embed_sequences gives for that
    layer (its independent path: windows, stitching, pooling over bases)."""
    from nucel.core.embeddings import embed_sequences
    from nucel.training.probe import layer_embeddings

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = NucELModel(NucELConfig.from_preset("tiny")).eval()
    rng = random.Random(1)
    sequences = ["".join(rng.choice("ACGTN") for _ in range(rng.randint(20, 70))) for _ in range(9)]
    pooled = layer_embeddings(model, tokenizer, sequences, batch_size=4)
    layers = model.config.num_hidden_layers
    assert list(pooled) == ["embedding", *[f"layer {i}" for i in range(1, layers + 1)], "output"]
    for index, name in enumerate(list(pooled)[:-1]):
        reference = embed_sequences(model, tokenizer, sequences, layer=index, progress=False)
        np.testing.assert_allclose(pooled[name], reference, atol=1e-5)
    output = embed_sequences(model, tokenizer, sequences, progress=False)  # layer None: last_hidden_state
    np.testing.assert_allclose(pooled["output"], output, atol=1e-5)


def test_every_layer_probe_chooses_on_dev_and_never_on_test(tmp_path, tokenizer):
    from nucel.training.probe import PROBE_C_GRID, ProbeSplit, probe_every_layer, read_split

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = NucELModel(NucELConfig.from_preset("tiny"))
    folder = gc_task_folder(tmp_path / "gc", train=120, test=80)
    train, test = read_split(folder / "train.csv"), read_split(folder / "test.csv")
    dev = ProbeSplit(test.sequences[:40], test.labels[:40])
    scored = ProbeSplit(test.sequences[40:], test.labels[40:])
    result = probe_every_layer(model, tokenizer, train, dev, scored)
    assert set(result["dev_mcc"]) == {"embedding", "layer 1", "layer 2", "layer 3", "layer 4", "output"}
    assert all(set(by_c) == {str(c) for c in PROBE_C_GRID} for by_c in result["dev_mcc"].values())
    best = max(score for by_c in result["dev_mcc"].values() for score in by_c.values())
    assert result["dev"] == best == result["dev_mcc"][result["layer"]][str(result["c"])]
    assert result["test"] == pytest.approx(matthews_corrcoef(scored.labels, result["test_predictions"]))
    # the test labels decide nothing: shuffled, the same representation and C are chosen
    shuffled = ProbeSplit(scored.sequences, np.random.default_rng(0).permutation(scored.labels))
    other = probe_every_layer(model, tokenizer, train, dev, shuffled)
    assert (other["layer"], other["c"]) == (result["layer"], result["c"]) and other["test"] != result["test"]
