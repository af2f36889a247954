"""Paired differences with hierarchical-bootstrap intervals: exact where nothing varies, covering the truth where
it does, and a verdict that calls an interval containing 0 no difference."""

import numpy as np
import pytest
from sklearn.metrics import matthews_corrcoef

from nucel.benchmarks.paired_differences import ArmRuns, paired_difference, verdict


def accuracy_score(labels, predictions):  # numpy, not sklearn's: thousands of calls per bootstrap
    return float(np.mean(labels == predictions))


def arm(labels, accuracy_per_seed, rng):
    """Runs whose predictions are right with the given probability, per pre-training seed (3 fine-tuning seeds)."""
    runs = []
    for accuracy in accuracy_per_seed:
        runs.append([np.where(rng.random(len(labels)) < accuracy, labels, 1 - labels) for _ in range(3)])
    return ArmRuns(runs, labels)


def test_identical_arms_differ_by_exactly_zero():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    a = arm(labels, [0.8, 0.7, 0.9], rng)
    result = paired_difference({"t": a}, {"t": a}, accuracy_score, replicates=200)
    assert result["t"]["difference"] == 0 and result["t"]["ci95"] == [0.0, 0.0]
    assert verdict("rtd", "mlm", result["mean"]).startswith("no difference")


def test_a_clear_difference_is_found_and_its_interval_covers_the_truth():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 2000)
    better, worse = arm(labels, [0.85, 0.86, 0.84], rng), arm(labels, [0.70, 0.71, 0.69], rng)
    result = paired_difference({"t": better}, {"t": worse}, accuracy_score, replicates=300)
    low, high = result["t"]["ci95"]
    assert 0 < low < 0.15 < high
    assert verdict("rtd", "mlm", result["t"]).startswith("rtd better than mlm")
    assert result["mean"] == result["t"] | {"replicates": 300}


def test_noise_between_pretraining_seeds_widens_the_interval():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 200)
    steady, baseline = arm(labels, [0.8, 0.8, 0.8], rng), arm(labels, [0.75, 0.75, 0.75], rng)
    unsteady = arm(labels, [0.95, 0.65, 0.8], rng)
    narrow = paired_difference({"t": steady}, {"t": baseline}, matthews_corrcoef, replicates=60)["t"]["ci95"]
    wide = paired_difference({"t": unsteady}, {"t": baseline}, matthews_corrcoef, replicates=60)["t"]["ci95"]
    assert wide[1] - wide[0] > 2 * (narrow[1] - narrow[0])


def test_arms_must_be_paired():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 50)
    with pytest.raises(ValueError, match="as many pre-training seeds and runs"):
        paired_difference({"t": arm(labels, [0.8, 0.8], rng)}, {"t": arm(labels, [0.8], rng)}, accuracy_score)
    with pytest.raises(ValueError, match="different tasks"):
        paired_difference({"t": arm(labels, [0.8], rng)}, {"u": arm(labels, [0.8], rng)}, accuracy_score)


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_matthews_equals_sklearn(classes):
    from nucel.benchmarks.paired_differences import matthews

    rng = np.random.default_rng(classes)
    for _ in range(20):
        labels = rng.integers(0, classes, 300)
        predictions = np.where(rng.random(300) < rng.random(), labels, rng.integers(0, classes, 300))
        assert matthews(labels, predictions) == pytest.approx(matthews_corrcoef(labels, predictions), abs=1e-12)
    constant = np.zeros(50, dtype=int)
    assert matthews(rng.integers(0, 2, 50), constant) == 0.0  # one predicted class: sklearn's 0, not nan
