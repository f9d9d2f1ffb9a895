"""Measurements of a tissue map: sizes, components, extent, position and probability statistics."""

import numpy as np
import pytest

from medseg.cascade import feature_names, segmentation_features
from medseg.errors import MedsegError

LABELS = {"background": 0, "fluid": 1, "drusen": 2}


def test_measurements_of_a_known_label_map():
    label_map = np.zeros((40, 50), np.uint8)
    label_map[5:10, 10:14] = 1     # 20 px
    label_map[30:32, 40:43] = 1    # 6 px, a second component
    f = segmentation_features(label_map, LABELS, spacing=(0.5, 0.25))
    assert list(f) == feature_names(LABELS, 2, probabilities=False)
    assert f["fluid_area"] == pytest.approx(26 * 0.125)
    assert f["fluid_fraction"] == pytest.approx(26 / 2000)
    assert f["fluid_components"] == 2 and f["fluid_largest_area"] == pytest.approx(20 * 0.125)
    assert f["fluid_extent_0"] == pytest.approx((31 - 5 + 1) * 0.5)
    assert f["fluid_extent_1"] == pytest.approx((42 - 10 + 1) * 0.25)
    ys, xs = np.nonzero(label_map == 1)
    assert f["fluid_centroid_0"] == pytest.approx((ys.mean() + 0.5) / 40)
    # an absent label reads as "nothing there", never nan
    assert f["drusen_area"] == 0 and f["drusen_components"] == 0 and f["drusen_centroid_1"] == 0
    assert all(np.isfinite(v) for v in f.values())


def test_probability_statistics_and_3d_volume():
    label_map = np.zeros((4, 10, 10), np.uint8)
    label_map[1:3, 2:5, 2:5] = 1
    fg = np.where(label_map == 1, 0.9, 0.05)
    probs = np.stack([1 - fg, fg, np.zeros_like(fg)])
    f = segmentation_features(label_map, LABELS, probs, spacing=(2.0, 1.0, 1.0))
    assert f["fluid_area"] == pytest.approx(18 * 2.0 / 1000)  # mL
    assert f["fluid_probability_mean"] == pytest.approx(0.9)
    assert f["fluid_probability_max"] == pytest.approx(0.9)
    assert f["fluid_probability_area"] == pytest.approx((18 * 0.9 + 382 * 0.05) * 2.0 / 1000)
    with pytest.raises(MedsegError, match="do not match"):
        segmentation_features(label_map, LABELS, probs[:2])
