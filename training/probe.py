"""A downstream probe during pre-training: does the encoder's representation carry what a real task needs?

For each task folder (GUE layout: train.csv and test.csv, or dev.csv when there is no test.csv; columns sequence,
label), a fixed, seeded subsample of train and test sequences is embedded by the frozen encoder (the mean of its
last hidden states over the bases, [CLS] excluded: `nucel.core.embeddings.embed_sequences`), and a logistic regression
on standardised embeddings is fitted on the train part and scored by MCC on the test part. The same sequences are used
at every probe, so the scores of a run are comparable from step to step; step 0 (random initialisation) is the
baseline a useful pre-training rises above.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import matthews_corrcoef
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nucel.core.embeddings import embed_sequences
from nucel.core.tables import read_table, require_columns

# lbfgs on a few thousand standardised examples converges well within this; the default 100 often does not.
MAX_ITERATIONS = 5000


@dataclass
class ProbeSplit:
    sequences: list[str]
    labels: np.ndarray


@dataclass
class ProbeTask:
    name: str  # the folder's last two parts, as GUE names its tasks ("tf/0")
    train: ProbeSplit
    test: ProbeSplit


@dataclass
class ProbeResult:
    task: str
    mcc: float
    test_labels: np.ndarray
    predictions: np.ndarray


def read_split(path: Path) -> ProbeSplit:
    columns, rows = read_table(path)
    require_columns(path, columns, ["sequence", "label"])
    return ProbeSplit([row["sequence"] for _, row in rows], np.array([row["label"] for _, row in rows]))


def subsample(split: ProbeSplit, size: int, seed: int) -> ProbeSplit:
    """`size` examples drawn without replacement (all when there are fewer), the same for a given seed."""
    if size >= len(split.sequences):
        return split
    chosen = np.sort(np.random.default_rng(seed).choice(len(split.sequences), size, replace=False))
    return ProbeSplit([split.sequences[i] for i in chosen], split.labels[chosen])


def load_probe_task(folder: str | Path, train_examples: int, test_examples: int, seed: int) -> ProbeTask:
    folder = Path(folder).expanduser()
    test_path = next((folder / name for name in ("test.csv", "dev.csv") if (folder / name).is_file()), None)
    if not (folder / "train.csv").is_file() or test_path is None:
        raise ValueError(f"probe_tasks: {folder} is not a task folder; it needs train.csv and test.csv (or dev.csv)")
    train = subsample(read_split(folder / "train.csv"), train_examples, seed)
    if len(np.unique(train.labels)) < 2:
        raise ValueError(f"probe_tasks: the {len(train.labels)} training examples drawn from {folder} have one label")
    return ProbeTask(
        name="/".join(folder.resolve().parts[-2:]),
        train=train,
        test=subsample(read_split(test_path), test_examples, seed),
    )


def probe_task(encoder, tokenizer, task: ProbeTask, batch_size: int = 64) -> ProbeResult:
    """Fit and score the probe of one task on `encoder`'s embeddings; the encoder is used in eval mode and left in
    the mode it was in."""
    was_training = encoder.training
    encoder.eval()
    try:
        train, test = [
            embed_sequences(encoder, tokenizer, split.sequences, pooling="mean", batch_size=batch_size, progress=False)
            for split in (task.train, task.test)
        ]
    finally:
        encoder.train(was_training)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=MAX_ITERATIONS))
    classifier.fit(train, task.train.labels)
    predictions = classifier.predict(test)
    mcc = float(matthews_corrcoef(task.test.labels, predictions))
    return ProbeResult(task.name, mcc, task.test.labels, predictions)


def probe_figures(encoder, tokenizer, tasks: list[ProbeTask]) -> dict[str, float]:
    """{"probe_mcc/<task>": MCC} for every task."""
    return {f"probe_mcc/{task.name}": probe_task(encoder, tokenizer, task).mcc for task in tasks}


# ----------------------------------------------------------------------------------------------------------------
# Probes of every layer, the layer and the regularisation chosen on dev (the pre-training study's probes)

# Inverse regularisation strengths tried for every layer (scikit-learn's C; 1.0 is its default).
PROBE_C_GRID = (0.01, 0.1, 1.0, 10.0)


def layer_embeddings(encoder, tokenizer, sequences: list[str], batch_size: int = 64) -> dict[str, np.ndarray]:
    """Mean-pooled embeddings of every representation the encoder computes, in one forward pass per batch:
    "embedding" (hidden_states[0]), "layer i" (hidden_states[i], before the final norm) and "output"
    (last_hidden_state). Means run over the bases ([CLS] and padding excluded), as `embed_sequences` pools."""
    import torch

    was_training = encoder.training
    encoder.eval()
    pooled: dict[str, list[np.ndarray]] = {}
    try:
        with torch.inference_mode():
            for start in range(0, len(sequences), batch_size):
                batch = tokenizer(sequences[start : start + batch_size], padding=True, return_tensors="pt")
                outputs = encoder(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True
                )
                bases = batch["attention_mask"].clone()
                bases[:, 0] = 0  # [CLS], the one token the template adds
                weights = (bases / bases.sum(dim=1, keepdim=True)).unsqueeze(-1).to(outputs.last_hidden_state.dtype)
                named = {
                    ("embedding" if i == 0 else f"layer {i}"): hidden for i, hidden in enumerate(outputs.hidden_states)
                }
                named["output"] = outputs.last_hidden_state
                for name, hidden in named.items():
                    pooled.setdefault(name, []).append((hidden * weights).sum(dim=1).float().numpy())
    finally:
        encoder.train(was_training)
    return {name: np.concatenate(parts) for name, parts in pooled.items()}


def probe_every_layer(encoder, tokenizer, train: ProbeSplit, dev: ProbeSplit, test: ProbeSplit) -> dict:
    """A logistic regression on every representation (`layer_embeddings`) for every C of PROBE_C_GRID, fitted on
    `train` and scored by MCC on `dev`; the (representation, C) with the best dev MCC is scored on `test`. Test
    data decides nothing. Returns {"dev_mcc": {representation: {C: mcc}}, "layer", "c", "dev", "test",
    "test_predictions"}."""
    embedded = {
        name: layer_embeddings(encoder, tokenizer, split.sequences)
        for name, split in (("train", train), ("dev", dev), ("test", test))
    }
    dev_mcc, fitted = {}, {}
    for layer in embedded["train"]:
        for c in PROBE_C_GRID:
            classifier = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=MAX_ITERATIONS))
            classifier.fit(embedded["train"][layer], train.labels)
            score = float(matthews_corrcoef(dev.labels, classifier.predict(embedded["dev"][layer])))
            dev_mcc.setdefault(layer, {})[str(c)] = score
            fitted[(layer, c)] = classifier
    # Ties go to the earlier representation and the stronger regularisation (the order of the loops).
    layer, c = max(fitted, key=lambda key: dev_mcc[key[0]][str(key[1])])
    predictions = fitted[(layer, c)].predict(embedded["test"][layer])
    return {
        "dev_mcc": dev_mcc,
        "layer": layer,
        "c": c,
        "dev": dev_mcc[layer][str(c)],
        "test": float(matthews_corrcoef(test.labels, predictions)),
        "test_predictions": predictions.tolist(),
    }
