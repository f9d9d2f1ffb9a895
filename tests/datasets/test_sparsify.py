import json

import numpy as np
import pytest

from medseg.datasets import load_dataset, make_organs3d
from medseg.datasets.sparsify import choose_slices, sparsify_dataset
from medseg.errors import MedsegError


@pytest.fixture
def dense(tmp_path):
    return load_dataset(make_organs3d(tmp_path / "dense", cases=3, shape=(12, 24, 24), test_cases=1))


def test_sparse_dataset_keeps_few_slices_and_marks_the_rest_ignore(dense, tmp_path):
    dst = sparsify_dataset(dense, tmp_path / "sparse", slices_per_volume=3, axis=0, seed=1)
    sparse = load_dataset(dst)
    meta = json.loads((dst / "dataset.json").read_text(encoding="utf-8"))
    ignore = max(dense.labels.values()) + 1
    assert meta["labels"]["ignore"] == ignore and sparse.ignore_label == ignore
    assert sparse.labels == dense.labels  # "ignore" is not a class
    record = json.loads((dst / "sparse_slices.json").read_text(encoding="utf-8"))["slices"]
    for dcase, scase in zip(dense.cases, sparse.cases):
        d, s = dcase.read_label().array[0], scase.read_label().array[0]
        kept = record[dcase.name]
        assert len(kept) == 3
        annotated = [z for z in range(d.shape[0]) if not np.all(s[z] == ignore)]
        assert annotated == kept
        np.testing.assert_array_equal(s[kept], d[kept])  # annotated slices unchanged
        assert all(d[z].any() for z in kept)  # slices with foreground are chosen
        # images are byte-identical copies
        assert dcase.image_paths[0].read_bytes() == scase.image_paths[0].read_bytes()
    # test cases are copied dense
    assert sparse.test_cases and sparse.test_cases[0].read_label().array.max() < ignore


def test_sparsify_is_deterministic(dense, tmp_path):
    a = sparsify_dataset(dense, tmp_path / "a", slices_per_volume=2, seed=7)
    b = sparsify_dataset(dense, tmp_path / "b", slices_per_volume=2, seed=7)
    c = sparsify_dataset(dense, tmp_path / "c", slices_per_volume=2, seed=8)
    slices = lambda p: json.loads((p / "sparse_slices.json").read_text(encoding="utf-8"))["slices"]
    assert slices(a) == slices(b)
    assert slices(a) != slices(c)
    for name in slices(a):
        np.testing.assert_array_equal(load_dataset(a).case(name).read_label().array,
                                      load_dataset(b).case(name).read_label().array)


def test_axis_and_existing_destination(dense, tmp_path):
    dst = sparsify_dataset(dense, tmp_path / "s", slices_per_volume=1, axis=2)
    lab = load_dataset(dst).cases[0].read_label().array[0]
    assert sum(not np.all(lab[:, :, x] == 4) for x in range(lab.shape[2])) == 1
    with pytest.raises(MedsegError, match="exists"):
        sparsify_dataset(dense, dst)
    with pytest.raises(MedsegError, match="axis"):
        sparsify_dataset(dense, tmp_path / "t", axis=3)
    assert not (tmp_path / "t").exists()  # nothing half-written
    with pytest.raises(MedsegError, match="ignore_value"):
        sparsify_dataset(dense, tmp_path / "u", ignore_value=2)


def test_choose_slices_fills_up_from_background_slices():
    label = np.zeros((10, 4, 4), np.uint8)
    label[3] = 1
    chosen = choose_slices(label, 3, 0, np.random.default_rng(0))
    assert 3 in chosen and len(chosen) == 3 and chosen == sorted(chosen)
