"""Case-level classification metrics against scikit-learn on known inputs."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score, roc_auc_score

from medseg.errors import MedsegError
from medseg.metrics.classification import (binary_metrics, bootstrap_intervals, evaluate_binary,
                                           expected_calibration_error, reliability_table)


@pytest.fixture
def scores():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 80)
    p = np.clip(0.35 * y + rng.random(80) * 0.65, 0, 1).round(2)  # ties on purpose
    return y, p


def test_binary_metrics_equal_sklearn(scores):
    y, p = scores
    m = binary_metrics(y, p, threshold=0.4)
    d = (p >= 0.4).astype(int)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, d))
    assert m["sensitivity"] == pytest.approx(recall_score(y, d))
    assert m["specificity"] == pytest.approx(recall_score(1 - y, 1 - d))
    assert m["f1"] == pytest.approx(f1_score(y, d))
    assert m["confusion_matrix"] == confusion_matrix(y, d, labels=[0, 1]).tolist()
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))


def test_expected_calibration_error_by_hand():
    # bin [0.2, 0.3): p 0.25 x2, observed 0.5 -> |0.5-0.25| ; bin [0.9, 1]: p 0.95 x2, observed 1 -> 0.05
    y = [0, 1, 1, 1]
    p = [0.25, 0.25, 0.95, 0.95]
    assert expected_calibration_error(y, p) == pytest.approx(0.5 * 0.25 + 0.5 * 0.05)
    table = reliability_table(y, p)
    assert [r["n"] for r in table] == [2, 2] and table[1]["observed"] == 1.0
    # perfectly calibrated in the limit: frequencies match the probabilities
    rng = np.random.default_rng(0)
    q = rng.random(200000)
    assert expected_calibration_error(rng.random(200000) < q, q) < 0.01


def test_bootstrap_is_seeded_and_brackets_the_estimate(scores):
    y, p = scores
    a = bootstrap_intervals(y, p, 0.4, n_bootstrap=300, seed=1)
    b = bootstrap_intervals(y, p, 0.4, n_bootstrap=300, seed=1)
    c = bootstrap_intervals(y, p, 0.4, n_bootstrap=300, seed=2)
    assert a == b and a != c
    m = binary_metrics(y, p, 0.4)
    for k in ("auc", "accuracy", "sensitivity", "ece"):
        assert a[k][0] <= m[k] <= a[k][1]
    full = evaluate_binary(y, p, 0.4, n_bootstrap=100)
    assert full["auc_ci"][0] < full["auc_ci"][1] and full["bootstrap"]["seed"] == 0


def test_undefined_and_bad_inputs():
    m = binary_metrics([1, 1, 1], [0.2, 0.6, 0.9], 0.5)
    assert np.isnan(m["auc"]) and np.isnan(m["specificity"]) and m["sensitivity"] == pytest.approx(2 / 3)
    with pytest.raises(MedsegError, match="lie in"):
        binary_metrics([0, 1], [0.2, 1.2])
    with pytest.raises(MedsegError, match="0/1"):
        binary_metrics([0, 2], [0.2, 0.3])
    with pytest.raises(MedsegError, match="probabilities"):
        binary_metrics([0, 1, 1], [0.2, 0.3])


def test_bootstrap_matches_resampling_by_hand(scores, monkeypatch):
    # the weighted (vectorised) bootstrap equals metrics recomputed on the resampled cases
    y, p = scores
    rng = np.random.default_rng(5)
    idx = rng.integers(0, y.size, y.size)
    expected = binary_metrics(y[idx], p[idx], 0.4)

    class OneDraw:  # the generator's one draw of indices, replayed
        def integers(self, low, high, size):
            return idx

    monkeypatch.setattr(np.random, "default_rng", lambda seed: OneDraw())
    ci = bootstrap_intervals(y, p, 0.4, n_bootstrap=1)
    for k in ("auc", "accuracy", "sensitivity", "specificity", "ppv", "f1", "brier", "ece"):
        assert ci[k][0] == pytest.approx(expected[k], abs=1e-12), k
