from __future__ import annotations

import numpy as np
import pytest

from conftest import dice
from medseg.classical import segment_confidence_connected, segment_connected_threshold
from medseg.errors import MedsegError
from medseg.image import Image


def test_connected_threshold_takes_only_the_seeded_blob(blobs3d):
    image, a, b, spacing = blobs3d
    lab = segment_connected_threshold(image, seeds=[(5, 10, 10)], lower=45, upper=200, spacing=spacing)
    assert dice(lab, a) > 0.9 and not (lab.astype(bool) & b).any()
    both = segment_connected_threshold(image, seeds=[(5, 10, 10), (10, 22, 22)], lower=45, upper=200)
    assert dice(both, a | b) > 0.9


def test_connected_threshold_default_interval_from_seed(two_level):
    image, truth = two_level
    lab = segment_connected_threshold(image, seeds=[(16, 20)])
    assert np.array_equal(lab.astype(bool), truth)


def test_connected_threshold_respects_mask(two_level):
    image, truth = two_level
    mask = np.zeros_like(truth)
    mask[:, :20] = True
    lab = segment_connected_threshold(image, seeds=[(16, 12)], lower=800, upper=1000, roi=mask)
    assert np.array_equal(lab.astype(bool), truth & mask)


def test_confidence_connected_noisy_disc(disc):
    image, truth = disc
    lab = segment_confidence_connected(image, seeds=[(24, 22)], multiplier=3.0)
    assert dice(lab, truth) > 0.9


def test_physical_seeds_use_image_geometry(blobs3d):
    image, a, b, spacing = blobs3d
    img = Image(image[None], spacing=spacing, origin=(-10.0, 5.0, 100.0))
    point = img.index_to_physical((10, 22, 22))  # centre of blob b
    lab = segment_connected_threshold(img, seeds=[point], lower=45, upper=200, physical=True)
    assert dice(lab, b) > 0.9
    # with a plain array, physical points use spacing with the origin at voxel 0
    lab2 = segment_confidence_connected(image, seeds=[(20.0, 22.0, 22.0)], physical=True, spacing=spacing)
    assert dice(lab2, b) > 0.85


def test_seed_outside_image_names_seeds(blobs3d):
    image = blobs3d[0]
    with pytest.raises(MedsegError, match="seeds.*outside"):
        segment_connected_threshold(image, seeds=[(16, 0, 0)], lower=0, upper=1)
    with pytest.raises(MedsegError, match="seeds.*outside"):
        segment_confidence_connected(image, seeds=[(-1, 0, 0)])
    with pytest.raises(MedsegError, match="seeds.*physical"):
        segment_confidence_connected(image, seeds=[(40.0, 0, 0)], physical=True, spacing=(2.0, 1.0, 1.0))
    with pytest.raises(MedsegError, match="seeds.*3 coordinates"):
        segment_confidence_connected(image, seeds=[(1, 1)])
    with pytest.raises(MedsegError, match="seeds"):
        segment_confidence_connected(image, seeds=[])
