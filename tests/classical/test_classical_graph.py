from __future__ import annotations

import numpy as np
import pytest

from conftest import dice
from medseg.classical import segment_graph_cut, segment_otsu, segment_random_walker
from medseg.errors import MedsegError


def test_random_walker_two_labels(disc):
    image, truth = disc
    lab = segment_random_walker(image, seeds=[(24, 22), (2, 2), (45, 45)], seed_labels=[1, 2, 2])
    assert dice(lab == 1, truth) > 0.9 and (lab[~truth] == 2).mean() > 0.95


def test_random_walker_3d_with_mask_and_spacing(blobs3d):
    image, a, b, spacing = blobs3d
    mask = np.ones(image.shape, bool)
    mask[:, :, 28:] = False
    lab = segment_random_walker(image, seeds=[(5, 10, 10), (10, 22, 22), (0, 0, 0)], seed_labels=[1, 1, 2],
                                spacing=spacing, roi=mask)
    assert not lab[~mask].any() and dice(lab == 1, a | b) > 0.85


def test_random_walker_needs_two_labels(disc):
    with pytest.raises(MedsegError, match="two different labels"):
        segment_random_walker(disc[0], seeds=[(1, 1)])


def test_graph_cut_smoother_than_otsu_on_heavy_noise():
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:48, :48]
    truth = (yy - 24) ** 2 + (xx - 24) ** 2 < 150
    image = truth * 2.0 + rng.normal(0, 1.0, truth.shape)
    d_otsu = dice(segment_otsu(image), truth)
    d_cut = dice(segment_graph_cut(image, smoothness=6.0), truth)
    assert d_cut > 0.9 and d_cut > d_otsu + 0.05


def test_graph_cut_seeds_are_hard_constraints(disc):
    image, truth = disc
    lab = segment_graph_cut(image, seeds=[(24, 22), (2, 2)])
    assert dice(lab, truth) > 0.9
    # a background seed inside the object keeps its label whatever the data say
    forced = segment_graph_cut(image, seeds=[(24, 22), (20, 20)], seed_labels=[1, 2])
    assert forced[20, 20] == 0 and forced[24, 22] == 1
    with pytest.raises(MedsegError, match="seed_labels"):
        segment_graph_cut(image, seeds=[(1, 1), (2, 2), (3, 3)])


def test_graph_cut_3d_anisotropic(blobs3d):
    image, a, b, spacing = blobs3d
    assert dice(segment_graph_cut(image, smoothness=1.0, spacing=spacing), a | b) > 0.9
