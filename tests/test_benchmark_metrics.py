"""Benchmark metrics against hand-computed values, and computed over the whole split rather than per batch."""

import math

import numpy as np
import pytest

from nucel.core.metrics import classification_metrics, compute_metrics, multilabel_metrics, regression_metrics


def test_binary_metrics_by_hand():
    # 3 true positives, 2 true negatives, 1 false positive, 0 false negatives.
    labels = [1, 1, 1, 0, 0, 0]
    probabilities = np.array([[0.1, 0.9], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3], [0.9, 0.1], [0.35, 0.65]])
    metrics = classification_metrics(labels, probabilities)
    assert metrics["mcc"] == pytest.approx((3 * 2 - 1 * 0) / math.sqrt((3 + 1) * (3 + 0) * (2 + 1) * (2 + 0)))
    assert metrics["accuracy"] == pytest.approx(5 / 6)
    f1_positive, f1_negative = 2 * 3 / (2 * 3 + 1 + 0), 2 * 2 / (2 * 2 + 0 + 1)
    assert metrics["f1_macro"] == pytest.approx((f1_positive + f1_negative) / 2)
    # Positive scores 0.9, 0.8, 0.6 vs negatives 0.3, 0.1, 0.65: 8 of the 9 pairs are ordered correctly.
    assert metrics["auroc"] == pytest.approx(8 / 9)


def test_whole_split_mcc_is_not_the_mean_of_batch_mccs():
    labels = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    predictions = np.array([1, 0, 0, 0, 1, 1, 0, 1])
    probabilities = np.eye(2)[predictions]
    whole = classification_metrics(labels, probabilities)["mcc"]
    batches = [classification_metrics(labels[i : i + 4], probabilities[i : i + 4])["mcc"] for i in (0, 4)]
    assert whole != pytest.approx(np.mean(batches))


def test_undefined_metrics_are_none_not_numbers():
    assert classification_metrics([1, 1, 1], np.array([[0.2, 0.8]] * 3))["auroc"] is None
    three_classes_two_present = classification_metrics([0, 1, 1], np.full((3, 3), 1 / 3))
    assert three_classes_two_present["auroc"] is None
    assert regression_metrics([1.0, 2.0, 3.0], [0.5, 0.5, 0.5])["pearson"] is None


def test_regression_and_multilabel_metrics():
    targets = np.array([1.0, 2.0, 3.0, 4.0])
    metrics = regression_metrics(targets, 2 * targets + 1)
    assert metrics["pearson"] == pytest.approx(1.0) and metrics["spearman"] == pytest.approx(1.0)
    assert metrics["mse"] == pytest.approx(np.mean((targets + 1) ** 2))
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    scores = multilabel_metrics(labels, np.array([[0.9, 0.2], [0.1, 0.7], [0.8, 0.4], [0.3, 0.1]]))
    assert scores["subset_accuracy"] == pytest.approx(3 / 4) and scores["auroc"] == pytest.approx(1.0)


def test_compute_metrics_takes_logits():
    logits = np.array([[2.0, -1.0], [-0.5, 0.5], [-1.0, 3.0]])
    assert compute_metrics("single_label_classification", [0, 1, 1], logits)["accuracy"] == 1.0
    assert compute_metrics("multi_label_classification", [[1, 0], [0, 1], [0, 1]], logits)["subset_accuracy"] == 1.0
    with pytest.raises(ValueError, match="unknown problem_type"):
        compute_metrics("ranking", [0], logits)
