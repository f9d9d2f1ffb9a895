"""Synthetic phantoms: deterministic, well-formed, and showing what they promise."""

from __future__ import annotations

import numpy as np

from medseg.datasets import check_dataset, load_dataset, make_organs3d, make_tumour3d, make_vessels2d
from medseg.datasets.synthetic import organs3d_case, vessels2d_case


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_vessels2d_deterministic_and_valid(tmp_path):
    a = make_vessels2d(tmp_path / "a", cases=2, seed=3, size=64, test_cases=1)
    b = make_vessels2d(tmp_path / "b", cases=2, seed=3, size=64, test_cases=1)
    c = make_vessels2d(tmp_path / "c", cases=2, seed=4, size=64, test_cases=1)
    assert _files(a) == _files(b) and _files(a) != _files(c)
    report = check_dataset(a)
    assert report.ok, report.problems
    ds = load_dataset(a)
    assert len(ds.cases) == 2 and len(ds.test_cases) == 1 and all(x.roi_path for x in ds.cases + ds.test_cases)


def test_vessels2d_content():
    image, label, roi = vessels2d_case(96, seed=0)
    rgb, vessel, fov = image.array.astype(float), label.array[0] > 0, roi.array[0] > 0
    assert 0.03 < vessel.sum() / fov.sum() < 0.3  # a vessel tree, not noise or a flood
    assert not (vessel & ~fov).any()
    inside = fov & ~vessel
    # vessels are darker, most of all in green (relative contrast)
    contrast = [(rgb[c][inside].mean() - rgb[c][vessel].mean()) / rgb[c][inside].mean() for c in range(3)]
    assert contrast[1] > contrast[0] > 0 and contrast[1] > 0.2
    assert rgb[:, ~fov].max() < 10  # dark outside the field of view


def test_organs3d_geometry_and_labels(tmp_path):
    image, label = organs3d_case((12, 24, 24), seed=2, num_organs=4)
    assert image.spacing == (3.0, 1.0, 1.0) and not np.allclose(image.direction, np.eye(3))
    assert set(np.unique(label.array)) == {0, 1, 2, 3, 4}
    means = [image.array[0][label.array[0] == k].mean() for k in range(5)]
    assert len({round(m, 1) for m in means}) == 5  # each organ has its own intensity
    root = make_organs3d(tmp_path / "o", cases=2, seed=0, shape=(8, 16, 16), channels=4)
    ds = load_dataset(root)
    assert ds.channel_names == ["T1", "T1ce", "T2", "FLAIR"] and len(ds.cases[0].image_paths) == 4
    assert check_dataset(ds).ok


def test_tumour3d_regions(tmp_path):
    root = make_tumour3d(tmp_path / "t", cases=1, seed=0, shape=(12, 32, 32))
    ds = load_dataset(root)
    assert ds.regions == {"whole_tumour": [1, 2, 3], "tumour_core": [2, 3], "enhancing": [3]}
    assert set(np.unique(ds.cases[0].read_label().array)) == {0, 1, 2, 3}
    assert check_dataset(ds).ok
