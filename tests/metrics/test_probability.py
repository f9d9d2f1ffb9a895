import numpy as np
import pytest

from medseg.metrics import average_precision, roc_auc

sk = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("quantise", [None, 10, 3])  # 10 and 3 levels: many ties
def test_matches_sklearn(rng, quantise):
    ref = rng.random((20, 30)) > 0.7
    prob = np.clip(ref * 0.3 + rng.random((20, 30)) * 0.8, 0, 1)
    if quantise:
        prob = np.round(prob * quantise) / quantise
    assert roc_auc(prob, ref) == pytest.approx(sk.roc_auc_score(ref.ravel(), prob.ravel()), abs=1e-12)
    assert average_precision(prob, ref) == pytest.approx(
        sk.average_precision_score(ref.ravel(), prob.ravel()), abs=1e-12
    )


def test_roi_restricts(rng):
    ref = rng.random((8, 16, 16)) > 0.6
    prob = rng.random((8, 16, 16)).astype(np.float32)
    roi = rng.random((8, 16, 16)) > 0.3
    assert roc_auc(prob, ref, roi) == pytest.approx(sk.roc_auc_score(ref[roi], prob[roi]), abs=1e-12)
    assert average_precision(prob, ref, roi) == pytest.approx(
        sk.average_precision_score(ref[roi], prob[roi]), abs=1e-12
    )


def test_perfect_and_undefined():
    ref = np.array([0, 0, 1, 1])
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), ref) == 1.0
    assert average_precision(np.array([0.1, 0.2, 0.8, 0.9]), ref) == 1.0
    assert roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), ref) == 0.5
    assert np.isnan(roc_auc(np.array([0.1, 0.2]), np.array([1, 1])))
    assert np.isnan(average_precision(np.array([0.1, 0.2]), np.array([0, 0])))
