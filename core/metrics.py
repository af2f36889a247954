"""Benchmark metrics over a whole prediction set (never averaged per batch), computed offline with sklearn.

Every function takes the true labels and the model's scores for the complete split and returns a dict of
plain floats (fractions, not percentages); a metric that is undefined for the data (AUROC with one class
present, correlation of a constant) is None, so it serialises to JSON null instead of a fake number.
"""

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, mean_squared_error, roc_auc_score


def softmax(logits: np.ndarray) -> np.ndarray:
    """In float64, so that near-equal scores are not rounded into ties that would change AUROC."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def classification_metrics(labels, probabilities) -> dict:
    """Single-label classification: labels (n,) ids, probabilities (n, classes). Predictions are the argmax."""
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predictions = probabilities.argmax(axis=-1)
    return {
        "mcc": float(matthews_corrcoef(labels, predictions)),
        "accuracy": float(accuracy_score(labels, predictions)),
        "f1_macro": float(
            f1_score(labels, predictions, average="macro", labels=range(probabilities.shape[1]), zero_division=0)
        ),
        "auroc": auroc(labels, probabilities),
    }


def auroc(labels: np.ndarray, probabilities: np.ndarray) -> float | None:
    """Binary: the positive class's probability; multi-class: one-vs-rest, macro-averaged."""
    if len(np.unique(labels)) < 2:
        return None
    if probabilities.shape[1] == 2:
        return float(roc_auc_score(labels, probabilities[:, 1]))
    if len(np.unique(labels)) < probabilities.shape[1]:
        return None  # one-vs-rest needs every class present
    return float(roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"))


def multilabel_metrics(labels, probabilities, threshold: float = 0.5) -> dict:
    """Multi-label: labels (n, k) in {0, 1}, independent probabilities (n, k)."""
    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predictions = (probabilities >= threshold).astype(int)
    scorable = [k for k in range(labels.shape[1]) if len(np.unique(labels[:, k])) == 2]
    return {
        "f1_macro": float(f1_score(labels, predictions, average="macro", zero_division=0)),
        "subset_accuracy": float(accuracy_score(labels, predictions)),
        "auroc": float(roc_auc_score(labels[:, scorable], probabilities[:, scorable], average="macro"))
        if scorable
        else None,
    }


def regression_metrics(targets, predictions) -> dict:
    """Regression: targets and predictions (n,) or (n, k); correlations are averaged over the k targets."""
    targets = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
    predictions = np.asarray(predictions, dtype=np.float64).reshape(len(predictions), -1)

    def mean_correlation(correlation):
        values = []
        for k in range(targets.shape[1]):
            if np.ptp(targets[:, k]) == 0 or np.ptp(predictions[:, k]) == 0:
                return None  # undefined for a constant column
            values.append(correlation(targets[:, k], predictions[:, k])[0])
        return float(np.mean(values))

    return {
        "pearson": mean_correlation(pearsonr),
        "spearman": mean_correlation(spearmanr),
        "mse": float(mean_squared_error(targets, predictions)),
    }


def compute_metrics(problem_type: str, labels, logits) -> dict:
    """Metrics for a model's raw outputs (logits) on a whole split."""
    logits = np.asarray(logits, dtype=np.float64)
    if problem_type == "single_label_classification":
        return classification_metrics(labels, softmax(logits))
    if problem_type == "multi_label_classification":
        return multilabel_metrics(labels, sigmoid(logits))
    if problem_type == "regression":
        return regression_metrics(labels, logits)
    raise ValueError(f"unknown problem_type {problem_type!r}")
