"""Same values as MONAI and MedPy under the same definitions (run with -m peers; skips without them)."""

import numpy as np
import pytest
from scipy import ndimage as ndi

import medseg.metrics as ms

pytestmark = pytest.mark.peers


@pytest.fixture
def masks():
    rng = np.random.default_rng(3)
    shape = (24, 40, 36)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    ref = ((z - 12) * 2.0) ** 2 + ((y - 20) * 0.7) ** 2 + ((x - 18) * 0.9) ** 2 < 14**2
    pred = ndi.binary_dilation(np.roll(ref, 2, axis=1), iterations=1) & (rng.random(shape) > 0.02)
    pred[2:4, 3:6, 3:6] = True  # a false-positive island far away
    return pred, ref, (2.0, 0.7, 0.9)


@pytest.mark.parametrize("method", ["edt", "kdtree"])
def test_monai(masks, method):
    torch = pytest.importorskip("torch")
    metrics = pytest.importorskip("monai.metrics")
    pred, ref, spacing = masks
    p, r = torch.from_numpy(pred)[None, None], torch.from_numpy(ref)[None, None]
    kw = dict(include_background=True, spacing=spacing)
    assert ms.hd95(pred, ref, spacing, method=method) == pytest.approx(
        metrics.compute_hausdorff_distance(p, r, percentile=95, **kw).item(), rel=1e-5)
    assert ms.hausdorff_distance(pred, ref, spacing, method=method) == pytest.approx(
        metrics.compute_hausdorff_distance(p, r, **kw).item(), rel=1e-5)
    assert ms.assd(pred, ref, spacing, method=method) == pytest.approx(
        metrics.compute_average_surface_distance(p, r, symmetric=True, **kw).item(), rel=1e-5)
    for tol in (0.5, 1.0, 2.0):
        assert ms.normalized_surface_dice(pred, ref, spacing, tolerance=tol, method=method) == pytest.approx(
            metrics.compute_surface_dice(p, r, class_thresholds=[tol], **kw).item(), rel=1e-5)
    assert ms.dice(pred, ref) == pytest.approx(metrics.compute_dice(p, r, include_background=True).item(), rel=1e-6)


@pytest.mark.parametrize("method", ["edt", "kdtree"])
def test_medpy(masks, method):
    binary = pytest.importorskip("medpy.metric.binary")
    pred, ref, spacing = masks
    assert ms.hd95(pred, ref, spacing, percentile_mode="pooled", method=method) == pytest.approx(
        binary.hd95(pred, ref, voxelspacing=spacing), rel=1e-5)
    assert ms.hausdorff_distance(pred, ref, spacing, method=method) == pytest.approx(
        binary.hd(pred, ref, voxelspacing=spacing), rel=1e-5)
    # MedPy >= 0.5 pools both directed sets, like MONAI (older MedPy averaged the two means).
    assert ms.assd(pred, ref, spacing, method=method) == pytest.approx(
        binary.assd(pred, ref, voxelspacing=spacing), rel=1e-5)
    assert ms.dice(pred, ref) == pytest.approx(binary.dc(pred, ref))
    assert ms.recall(pred, ref) == pytest.approx(binary.recall(pred, ref))
    assert ms.specificity(pred, ref) == pytest.approx(binary.specificity(pred, ref))
