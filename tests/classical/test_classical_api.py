"""Registry, shared conventions and bad input common to every method."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import medseg.classical as classical
from medseg.classical import METHODS
from medseg.errors import MedsegError
from medseg.image import Image

EXPECTED = {
    "threshold", "otsu", "multi_otsu", "local", "hysteresis", "canny", "watershed", "chan_vese",
    "morphological_chan_vese", "geodesic_active_contour", "connected_threshold", "confidence_connected",
    "kmeans", "fuzzy_cmeans", "gaussian_mixture", "random_walker", "graph_cut", "frangi", "sato",
}


def _minimal_kwargs(name):
    return {"threshold": {"threshold": 0.5}, "connected_threshold": {"seeds": [(4, 4)]},
            "confidence_connected": {"seeds": [(4, 4)]},
            "random_walker": {"seeds": [(4, 4), (0, 0)]}}.get(name, {})


def test_registry_lists_every_method_with_metadata():
    assert EXPECTED <= set(METHODS.names())
    for entry in METHODS:
        assert entry.factory is getattr(classical, f"segment_{entry.name}")
        assert set(entry.metadata) >= {"dims", "seeds", "output", "family", "summary"}
        params = inspect.signature(entry.factory).parameters
        assert list(params)[0] == "image" and "spacing" in params and "roi" in params
        if entry.metadata["seeds"] != "no":
            assert "seeds" in params and "physical" in params
        assert "Examples" in entry.factory.__doc__


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_method_runs_on_a_small_image_and_refuses_colour(name):
    x = np.zeros((12, 12), np.float32)
    x[3:9, 3:9] = 1.0
    x += np.random.default_rng(0).normal(0, 0.05, x.shape).astype(np.float32)
    func = METHODS.get(name)
    lab = func(x, **_minimal_kwargs(name))
    assert lab.shape == x.shape and np.issubdtype(lab.dtype, np.unsignedinteger)
    rgb = np.repeat(x[..., None], 3, axis=-1) * 255
    rgb = np.tile(rgb, (3, 3, 1))
    with pytest.raises(MedsegError, match="colour|channel"):
        func(rgb, **_minimal_kwargs(name))
    with pytest.raises(MedsegError, match="channel"):
        func(Image(np.stack([x, x])), **_minimal_kwargs(name))


def test_image_input_and_bad_shapes():
    x = np.zeros((10, 10))
    x[2:6, 2:6] = 1
    image = Image(x[None], spacing=(0.5, 2.0), origin=(3.0, -1.0))
    labels = classical.segment_otsu(image)  # an Image in: an Image out, geometry kept
    assert isinstance(labels, Image) and labels.geometry_difference(image) is None
    assert np.array_equal(labels.array[0], classical.segment_otsu(x))
    with pytest.raises(MedsegError, match="2D or 3D"):
        classical.segment_otsu(np.zeros(10))
    with pytest.raises(MedsegError, match="2D or 3D"):
        classical.segment_otsu(np.zeros((2, 3, 4, 5)))
    with pytest.raises(MedsegError, match="spacing"):
        classical.segment_otsu(x, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(MedsegError, match="roi"):
        classical.segment_otsu(x, roi=np.ones((3, 3)))
    with pytest.raises(MedsegError, match="NaN"):
        classical.segment_otsu(np.full((4, 4), np.nan))
