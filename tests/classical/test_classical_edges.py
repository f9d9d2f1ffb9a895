from __future__ import annotations

import numpy as np
import pytest

from conftest import dice
from medseg.classical import (
    gradient_magnitude,
    segment_canny,
    segment_chan_vese,
    segment_geodesic_active_contour,
    segment_morphological_chan_vese,
    segment_watershed,
)
from medseg.errors import MedsegError


def test_gradient_magnitude_uses_spacing():
    x = np.tile(np.arange(12.0), (12, 1))
    assert gradient_magnitude(x, 1.0)[6, 6] == pytest.approx(1.0, abs=1e-6)
    assert gradient_magnitude(x, 1.0, spacing=(1.0, 2.0))[6, 6] == pytest.approx(0.5, abs=1e-6)


def test_canny_closes_disc(disc):
    image, truth = disc
    assert dice(segment_canny(image, sigma=2.0), truth) > 0.9


def test_canny_3d_is_slice_wise(blobs3d):
    image, a, b, spacing = blobs3d
    lab = segment_canny(image, sigma=1.5, spacing=spacing)
    assert lab.shape == image.shape and dice(lab, a | b) > 0.75


def test_watershed_from_seeds_separates_two_blobs(blobs3d):
    image, a, b, spacing = blobs3d
    lab = segment_watershed(image, seeds=[(5, 10, 10), (10, 22, 22), (0, 0, 0)], sigma=1.0, spacing=spacing)
    assert dice(lab == 1, a) > 0.85 and dice(lab == 2, b) > 0.85
    merged = segment_watershed(image, seeds=[(5, 10, 10), (10, 22, 22), (0, 0, 0)], seed_labels=[1, 1, 2],
                               spacing=spacing)
    assert dice(merged == 1, a | b) > 0.85


def test_watershed_distance_splits_touching_discs():
    yy, xx = np.mgrid[:40, :60]
    one = (yy - 20) ** 2 + (xx - 20) ** 2 < 144
    two = (yy - 20) ** 2 + (xx - 40) ** 2 < 144
    lab = segment_watershed((one | two).astype(float), markers="distance")
    assert set(np.unique(lab)) == {0, 1, 2}
    assert lab[20, 12] != lab[20, 48] and lab[0, 0] == 0


def test_watershed_h_minima_gives_regions(disc):
    image, truth = disc
    lab = segment_watershed(image, markers="h_minima", sigma=2.0)
    assert lab.max() >= 2 and lab.min() >= 1  # every voxel in a basin
    # the basin under the disc centre covers most of the disc
    inside = lab == lab[24, 22]
    assert (inside & truth).sum() > 0.7 * truth.sum()
    with pytest.raises(MedsegError, match="deeper"):
        segment_watershed(image, markers="h_minima", h=1e6)
    with pytest.raises(MedsegError, match="markers"):
        segment_watershed(image, markers="nope")


def test_chan_vese_noisy_disc(disc):
    image, truth = disc
    assert dice(segment_chan_vese(image, iterations=100), truth) > 0.9
    assert dice(segment_chan_vese(image, iterations=100, polarity="dark"), ~truth) > 0.9


def test_chan_vese_refuses_3d(blobs3d):
    with pytest.raises(MedsegError, match="3D.*2D"):
        segment_chan_vese(blobs3d[0])


def test_morphological_chan_vese_2d_and_3d(disc, blobs3d):
    image, truth = disc
    assert dice(segment_morphological_chan_vese(image, iterations=30), truth) > 0.9
    vol, a, b, spacing = blobs3d
    lab = segment_morphological_chan_vese(vol, seeds=[(5, 10, 10), (10, 22, 22)], iterations=15,
                                          spacing=spacing, radius=3.0)
    assert dice(lab, a | b) > 0.8


def test_geodesic_active_contour_grows_from_seed(disc):
    image, truth = disc
    lab = segment_geodesic_active_contour(image, seeds=[(24, 22)], iterations=60, sigma=2.0)
    assert dice(lab, truth) > 0.85
