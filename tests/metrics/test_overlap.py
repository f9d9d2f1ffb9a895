import numpy as np
import pytest

from medseg.errors import MedsegError
from medseg.metrics import (
    accuracy, confusion_counts, dice, iou, overlap_metrics, precision, recall, specificity, volume,
    volume_similarity,
)


def test_known_counts():
    p = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    r = np.array([1, 0, 0, 1, 0, 0, 0, 0], bool)
    assert confusion_counts(p, r) == (1, 2, 1, 4)
    m = overlap_metrics(p, r)
    assert m["dice"] == pytest.approx(2 / 5)
    assert m["iou"] == pytest.approx(1 / 4)
    assert m["precision"] == pytest.approx(1 / 3)
    assert m["recall"] == pytest.approx(1 / 2)
    assert m["specificity"] == pytest.approx(4 / 6)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["volume_similarity"] == pytest.approx(1 - 1 / 5)
    assert m["f1"] == m["dice"]


def test_against_sklearn(rng):
    metrics = pytest.importorskip("sklearn.metrics")
    p = rng.random((7, 9, 11)) > 0.6
    r = rng.random((7, 9, 11)) > 0.5
    assert dice(p, r) == pytest.approx(metrics.f1_score(r.ravel(), p.ravel()))
    assert iou(p, r) == pytest.approx(metrics.jaccard_score(r.ravel(), p.ravel()))
    assert precision(p, r) == pytest.approx(metrics.precision_score(r.ravel(), p.ravel()))
    assert recall(p, r) == pytest.approx(metrics.recall_score(r.ravel(), p.ravel()))
    assert accuracy(p, r) == pytest.approx(metrics.accuracy_score(r.ravel(), p.ravel()))
    assert specificity(p, r) == pytest.approx(metrics.recall_score(~r.ravel(), ~p.ravel()))


def test_roi_ignores_outside():
    p = np.zeros((4, 4), bool); p[0, :] = True  # wrong outside the roi only
    r = np.zeros((4, 4), bool); r[2, 2] = True; p[2, 2] = True
    roi = np.zeros((4, 4), bool); roi[1:, :] = True
    assert dice(p, r, roi) == 1.0
    assert dice(p, r) < 1.0
    assert accuracy(p, r, roi) == 1.0
    assert confusion_counts(p, r, roi) == (1, 0, 0, 11)


def test_empty_masks():
    z = np.zeros((3, 3, 3), bool)
    one = z.copy(); one[1, 1, 1] = True
    both = overlap_metrics(z, z)
    assert both["dice"] == both["iou"] == both["precision"] == both["recall"] == both["volume_similarity"] == 1.0
    for p, r in ((z, one), (one, z)):
        m = overlap_metrics(p, r)
        assert m["dice"] == m["iou"] == m["volume_similarity"] == 0.0
    assert overlap_metrics(z, one)["precision"] == 0.0 and overlap_metrics(one, z)["recall"] == 0.0
    full = np.ones((2, 2), bool)
    assert np.isnan(specificity(full, full))


def test_volumes_use_spacing():
    m3 = np.zeros((10, 10, 10), bool); m3[:5] = True  # 500 voxels
    assert volume(m3, (2.0, 1.0, 0.5)) == pytest.approx(0.5)  # 500 mm³ = 0.5 mL
    m2 = np.zeros((4, 4), bool); m2[:2, :3] = True
    assert volume(m2, (0.5, 2.0)) == pytest.approx(6.0)  # mm²
    out = overlap_metrics(m3, np.zeros_like(m3), spacing=(2.0, 1.0, 0.5))
    assert out["volume_pred"] == pytest.approx(0.5) and out["volume_diff"] == pytest.approx(0.5)
    assert volume_similarity(m3, m3) == 1.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(MedsegError, match="shape"):
        dice(np.zeros((2, 2)), np.zeros((2, 3)))


@pytest.mark.parametrize("spacing", [(1.0, -1.0), (1.0, 0.0), (1.0, float("nan")), (1.0, 1.0, 1.0), "x"])
def test_bad_spacing_is_a_user_error(spacing):
    # one check (medseg.image.check_spacing) for volumes, overlap and surface distances alike
    from medseg.metrics.surface import surface_distances

    mask = np.ones((4, 4), bool)
    for call in (lambda: volume(mask, spacing), lambda: overlap_metrics(mask, mask, spacing=spacing),
                 lambda: surface_distances(mask, mask, spacing=spacing)):
        with pytest.raises(MedsegError, match="spacing must be 2 positive numbers"):
            call()


def test_scalar_spacing_is_isotropic():
    assert volume(np.ones((10, 10, 10), bool), 0.5) == pytest.approx(0.125)
