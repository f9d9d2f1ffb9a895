from __future__ import annotations

import numpy as np
import pytest

from conftest import dice
from medseg.classical import fuzzy_cmeans, segment_fuzzy_cmeans, segment_gaussian_mixture, segment_kmeans
from medseg.errors import MedsegError

METHODS = [segment_kmeans, segment_fuzzy_cmeans, segment_gaussian_mixture]


@pytest.mark.parametrize("method", METHODS, ids=lambda f: f.__name__)
def test_three_tissue_classes_ordered_by_intensity(method, three_class):
    image, labels = three_class
    lab = method(image, classes=3)
    assert lab.dtype == np.uint8 and (lab == labels).mean() > 0.97
    # reversed contrast reverses the labels: 0 is always the darkest class
    assert (method(-image, classes=3) == 2 - labels).mean() > 0.97


@pytest.mark.parametrize("method", METHODS, ids=lambda f: f.__name__)
def test_mask_and_3d(method, blobs3d):
    image, a, b, spacing = blobs3d
    mask = np.zeros(image.shape, bool)
    mask[:, :, :16] = True
    lab = method(image, classes=2, roi=mask)
    assert not lab[~mask].any()
    assert dice(lab[mask], (a | b)[mask]) > 0.9


def test_fuzzy_cmeans_memberships():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 300), rng.normal(20, 1, 300)])
    centres, u = fuzzy_cmeans(x, classes=2)
    assert sorted(np.round(centres[:, 0]).tolist()) == [0.0, 20.0]
    assert np.allclose(u.sum(axis=1), 1.0)
    with pytest.raises(MedsegError, match="fuzzifier"):
        fuzzy_cmeans(x, classes=2, m=1.0)


def test_bad_classes():
    with pytest.raises(MedsegError, match="classes"):
        segment_kmeans(np.arange(16.0).reshape(4, 4), classes=1)
    with pytest.raises(MedsegError, match="distinct"):
        segment_kmeans(np.repeat([0.0, 1.0], 8).reshape(4, 4), classes=4)
