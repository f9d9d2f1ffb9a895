"""Patch sampling: foreground share, ROI restriction, padding, 2D/3D, reproducibility."""

import numpy as np
import pytest

from medseg.training.sampling import (build_sampling_index, choose_centre, crop_with_padding, patch_start,
                                      sample_patch)


def _sparse_label(shape, rng, fraction=0.002):
    label = np.zeros(shape, np.int16)
    flat = rng.choice(label.size, max(1, int(fraction * label.size)), replace=False)
    label.flat[flat] = 1
    return label


@pytest.mark.parametrize("share", [0.0, 0.3, 0.8, 1.0])
def test_foreground_share_is_respected(share):
    rng = np.random.default_rng(0)
    label = _sparse_label((200, 200), rng)
    index = build_sampling_index(label)
    centres = [choose_centre(index, rng, share) for _ in range(2000)]
    on_fg = np.mean([label[tuple(c)] > 0 for c in centres])
    # uniform centres hit foreground with probability 0.002, so the observed share is ~ share
    assert abs(on_fg - share) < 0.04


def test_centres_stay_inside_the_roi():
    rng = np.random.default_rng(1)
    label = _sparse_label((120, 130), rng, 0.01)
    yy, xx = np.mgrid[:120, :130]
    roi = (yy - 60) ** 2 + (xx - 65) ** 2 < 40 ** 2
    index = build_sampling_index(label, roi)
    for share in (0.0, 0.5, 1.0):
        for _ in range(500):
            assert roi[tuple(choose_centre(index, rng, share))]
    # foreground outside the ROI is never a centre
    assert all(roi[tuple(c)] for coords in index.foreground.values() for c in coords)


def test_rare_classes_get_patches():
    rng = np.random.default_rng(2)
    label = np.zeros((100, 100), np.int16)
    label[:50] = 1
    label[90, 90] = 2  # one voxel of a rare class
    index = build_sampling_index(label)
    hits = sum(label[tuple(choose_centre(index, rng, 1.0))] == 2 for _ in range(400))
    assert 150 < hits < 250  # classes drawn uniformly: about half the foreground patches


def test_ignored_voxels_are_not_foreground_centres():
    label = np.full((20, 20), -1, np.int16)
    label[5, 5] = 1
    index = build_sampling_index(label, ignore_index=-1)
    assert list(index.foreground) == [1]
    assert len(index.foreground[1]) == 1


def test_background_centres_avoid_unlabelled_slices():
    # a sparsely annotated volume: slices 2 and 6 labelled, the rest ignored (-1)
    label = np.full((9, 40, 40), -1, np.int16)
    label[[2, 6]] = 0
    label[2, 10:14, 10:14] = 1
    rng = np.random.default_rng(3)
    index = build_sampling_index(label, ignore_index=-1)
    slices = {int(choose_centre(index, rng, 0.0)[0]) for _ in range(300)}
    assert slices == {2, 6}


def test_patch_contains_its_centre_and_stays_inside():
    rng = np.random.default_rng(3)
    shape = (50, 60)
    for _ in range(200):
        centre = np.array([rng.integers(s) for s in shape])
        start = patch_start(centre, shape, (32, 32), rng)
        assert np.all(start >= 0) and np.all(start + 32 <= np.array(shape))
        assert np.all(start <= centre) and np.all(centre < start + 32)


def test_small_images_are_padded():
    rng = np.random.default_rng(4)
    image = np.ones((2, 10, 12), np.float32)
    label = np.ones((1, 10, 12), np.int16)
    index = build_sampling_index(label)
    img, lab = sample_patch(image, label, index, (16, 16), rng, label_pad_value=-1)
    assert img.shape == (2, 16, 16) and lab.shape == (1, 16, 16)
    assert img.sum() == 2 * 10 * 12  # the whole image, once
    assert (lab == -1).sum() == 16 * 16 - 120


def test_crop_with_padding_matches_numpy_pad():
    rng = np.random.default_rng(5)
    array = rng.normal(size=(1, 7, 9, 5))
    padded = np.pad(array, ((0, 0), (20, 20), (20, 20), (20, 20)))
    for _ in range(50):
        start = rng.integers(-8, 8, size=3)
        size = tuple(rng.integers(1, 12, size=3))
        expected = padded[(slice(None),) + tuple(slice(s + 20, s + 20 + p) for s, p in zip(start, size))]
        np.testing.assert_array_equal(crop_with_padding(array, start, size), expected)


def test_3d_sampling_is_reproducible_from_a_seed():
    rng = np.random.default_rng(6)
    image = rng.normal(size=(1, 20, 30, 30)).astype(np.float32)
    label = _sparse_label((1, 20, 30, 30), rng, 0.01)
    index = build_sampling_index(label)
    a = [sample_patch(image, label, index, (8, 16, 16), np.random.default_rng(42)) for _ in range(2)]
    np.testing.assert_array_equal(a[0][0], a[1][0])
    np.testing.assert_array_equal(a[0][1], a[1][1])
    assert a[0][0].shape == (1, 8, 16, 16)
    b = sample_patch(image, label, index, (8, 16, 16), np.random.default_rng(43))
    assert not np.array_equal(a[0][0], b[0])
