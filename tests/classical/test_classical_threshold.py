from __future__ import annotations

import numpy as np
import pytest

from conftest import dice
from medseg.classical import (
    segment_hysteresis,
    segment_local,
    segment_multi_otsu,
    segment_otsu,
    segment_threshold,
)
from medseg.errors import MedsegError


def test_threshold_exact_on_two_levels(two_level):
    image, truth = two_level
    lab = segment_threshold(image, 600)
    assert lab.dtype == np.uint8 and np.array_equal(lab.astype(bool), truth)
    assert np.array_equal(segment_threshold(image, 600, polarity="dark").astype(bool), ~truth)


def test_otsu_noisy_disc_and_mask(disc):
    image, truth = disc
    assert dice(segment_otsu(image), truth) > 0.95
    mask = np.zeros_like(truth)
    mask[:, :24] = True
    lab = segment_otsu(image, roi=mask)
    assert not lab[:, 24:].any() and dice(lab[:, :24], truth[:, :24]) > 0.95


def test_multi_otsu_three_classes(three_class):
    image, labels = three_class
    lab = segment_multi_otsu(image, classes=3)
    assert (lab == labels).mean() > 0.97


def test_local_threshold_handles_illumination_ramp():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    spots = ((yy % 16) - 8) ** 2 + ((xx % 16) - 8) ** 2 < 9
    image = 2.0 * xx + 30.0 * spots + rng.normal(0, 1, spots.shape)  # global Otsu fails on the ramp
    assert dice(segment_otsu(image), spots) < 0.5
    lab = segment_local(image, block_size=15, offset=-10)
    assert dice(lab, spots) > 0.85
    # block_size in mm: 15 mm with 0.5 mm pixels is 30 px, still fine; 1 mm is too small
    assert dice(segment_local(image, block_size=15, offset=-10, spacing=(0.5, 0.5)), spots) > 0.8
    with pytest.raises(MedsegError, match="block_size"):
        segment_local(image, block_size=1.0)


def test_local_threshold_3d(blobs3d):
    image, a, b, spacing = blobs3d
    lab = segment_local(image, block_size=20, offset=-20, spacing=spacing)
    assert dice(lab, a | b) > 0.8


def test_hysteresis_keeps_connected_weak_voxels():
    x = np.zeros((20, 20))
    x[5, 2:18] = 5.0  # weak line
    x[5, 10] = 10.0  # one strong voxel on it
    x[15, 2:18] = 5.0  # weak line without a strong voxel
    lab = segment_hysteresis(x, lower=3, upper=8)
    assert lab[5, 2:18].all() and not lab[15].any()
    dark = segment_hysteresis(-x, lower=-3, upper=-8, polarity="dark")
    assert np.array_equal(dark, lab)
    with pytest.raises(MedsegError, match="lower"):
        segment_hysteresis(x, lower=9, upper=8)


def test_hysteresis_default_thresholds(disc):
    image, truth = disc
    assert dice(segment_hysteresis(image), truth) > 0.9


def test_constant_image_is_a_clear_error():
    with pytest.raises(MedsegError, match="constant"):
        segment_otsu(np.ones((8, 8)))
    with pytest.raises(MedsegError, match="classes"):
        segment_multi_otsu(np.repeat([0.0, 1.0], 8).reshape(4, 4), classes=3)
