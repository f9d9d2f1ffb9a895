from __future__ import annotations

import numpy as np
import pytest

from conftest import dice
from medseg.classical import segment_frangi, segment_sato, vesselness
from medseg.errors import MedsegError


def _auc(score, truth):
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(truth.ravel(), score.ravel())


@pytest.mark.parametrize("method", ["frangi", "sato"])
def test_dark_tube_score_and_segmentation(method, tube):
    image, truth = tube
    score = vesselness(image, sigmas=(1.0, 2.0, 3.0), method=method)
    assert score.dtype == np.float32 and score.max() == pytest.approx(1.0)
    assert _auc(score, truth) > 0.95
    seg = (segment_frangi if method == "frangi" else segment_sato)(image, sigmas=(1.0, 2.0, 3.0))
    assert dice(seg, truth) > 0.7
    # a bright tube needs polarity="bright"
    assert _auc(vesselness(-image, method=method, polarity="bright"), truth) > 0.95
    assert _auc(vesselness(-image, method=method, polarity="dark"), truth) < 0.7


def test_mask_hides_field_of_view_edge(tube):
    image, truth = tube
    mask = np.zeros(truth.shape, bool)
    mask[4:44, 4:60] = True
    framed = np.where(mask, image, 0.0)  # black surround, like a fundus photograph
    score = vesselness(framed, roi=mask)
    assert not score[~mask].any()
    inner = mask.copy()
    assert _auc(score[inner], truth[inner]) > 0.95
    assert dice(segment_frangi(framed, roi=mask)[inner], truth[inner]) > 0.7


def test_sigmas_in_mm(tube):
    image, truth = tube
    # 0.5 mm pixels: sigmas (0.5, 1, 1.5) mm are (1, 2, 3) px, the same filter
    a = vesselness(image, sigmas=(1.0, 2.0, 3.0))
    b = vesselness(image, sigmas=(0.5, 1.0, 1.5), spacing=(0.5, 0.5))
    assert np.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("method", ["frangi", "sato"])
def test_3d_bright_tube(method):
    zz, yy, xx = np.mgrid[:16, :24, :24]
    r2 = (yy - 12) ** 2 + (xx - 12) ** 2
    truth = r2 <= 4
    image = 10.0 + 90.0 * np.exp(-r2 / (2 * 1.5**2)) + np.random.default_rng(0).normal(0, 2, r2.shape)
    score = vesselness(image, sigmas=(1.0, 2.0), polarity="bright", method=method)
    assert _auc(score, truth) > 0.95


def test_bad_vesselness_arguments(tube):
    image, _ = tube
    with pytest.raises(MedsegError, match="method"):
        vesselness(image, method="hessian")
    with pytest.raises(MedsegError, match="threshold"):
        segment_frangi(image, threshold=3.0)
    with pytest.raises(MedsegError, match="polarity"):
        segment_sato(image, polarity="up")


def test_fraction_is_p_tile_thresholding(tube):
    image, truth = tube
    lab = segment_sato(image, fraction=truth.mean())
    assert abs(lab.mean() - truth.mean()) < 0.01 and dice(lab, truth) > 0.8
    with pytest.raises(MedsegError, match="fraction"):
        segment_sato(image, fraction=1.5)
    with pytest.raises(MedsegError, match="not both"):
        segment_frangi(image, fraction=0.1, threshold=0.2)


@pytest.mark.data
def test_drive_image_sato_p_tile(shared_data):
    from medseg.io import read_image
    from medseg.metrics import f1, roc_auc

    root = shared_data / "DRIVE" / "test"
    if not root.is_dir():
        pytest.skip("DRIVE test set absent")
    green = read_image(root / "images" / "01_test.tif").array[1]
    truth = read_image(root / "1st_manual" / "01_manual1.gif").array[0] > 0
    fov = read_image(root / "mask" / "01_test_mask.gif").array[0] > 0
    score = vesselness(green, (1.0, 2.0, 3.0), method="sato", roi=fov)
    assert roc_auc(score, truth, fov) > 0.9
    assert f1(segment_sato(green, fraction=0.13, roi=fov), truth, fov) > 0.65
