import numpy as np
import pytest

from medseg.errors import MedsegError
from medseg.metrics import METRICS, evaluate_case, label_mask

sk = pytest.importorskip("sklearn.metrics")


def test_labels_and_regions():
    ref = np.zeros((12, 12, 12), int)
    ref[2:10, 2:10, 2:10] = 1
    ref[4:8, 4:8, 4:8] = 2
    ref[5:7, 5:7, 5:7] = 3
    pred = ref.copy()
    pred[ref == 3] = 2  # enhancing tumour missed, labelled as core
    out = evaluate_case(pred, ref, {"whole": [1, 2, 3], "core": [2, 3], "enhancing": 3, "edema": 1},
                        spacing=(2.0, 1.0, 1.0))
    assert set(out) == {"whole", "core", "enhancing", "edema"}
    assert set(out["whole"]) == set(METRICS)
    assert out["whole"]["dice"] == 1.0 and out["core"]["dice"] == 1.0 and out["edema"]["dice"] == 1.0
    assert out["enhancing"]["dice"] == 0.0 and out["enhancing"]["hd95"] == np.inf
    assert out["whole"]["volume_ref"] == pytest.approx(8**3 * 2 / 1000)
    assert label_mask(ref, [2, 3]).sum() == 64


def test_roi_and_probabilities(rng):
    ref = np.zeros((32, 32), int); ref[8:20, 6:26] = 1
    prob = np.clip(ref * 0.5 + rng.random((32, 32)) * 0.6, 0, 1)
    pred = (prob > 0.5).astype(int)
    roi = np.zeros((32, 32), bool); roi[4:28, 4:28] = True
    pred[0, :] = 1  # errors outside the roi are ignored
    out = evaluate_case(pred, ref, {"vessel": 1}, spacing=(0.5, 0.5), roi=roi, probabilities=prob)["vessel"]
    inside = evaluate_case(pred * roi, ref, {"vessel": 1}, spacing=(0.5, 0.5), roi=roi)["vessel"]
    assert out["dice"] == inside["dice"]
    assert out["roc_auc"] == pytest.approx(sk.roc_auc_score(ref[roi], prob[roi]))
    assert out["pr_auc"] == pytest.approx(sk.average_precision_score(ref[roi], prob[roi]))
    # Multi-class probabilities: a region uses the sum of its classes' channels.
    soft = np.stack([1 - prob, prob * 0.5, prob * 0.5])
    two = evaluate_case(pred, ref, {"a": 1, "ab": [1, 2]}, probabilities=soft)
    assert two["ab"]["roc_auc"] == pytest.approx(sk.roc_auc_score(ref.ravel(), prob.ravel()))


def test_bad_input():
    a = np.zeros((4, 4), int)
    with pytest.raises(MedsegError):
        evaluate_case(a, np.zeros((4, 5), int), {"x": 1})
    with pytest.raises(MedsegError, match="channels"):
        evaluate_case(a, a, {"x": 3}, probabilities=np.zeros((2, 4, 4)))
