import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from medseg.errors import MedsegError
from medseg.image import Image
from medseg.preprocessing.resample import (
    label_method_comparison,
    resample_image,
    resample_label,
    resample_probabilities,
    resample_to_reference,
    target_grid,
)

SHAPE = (12, 48, 44)
SPACING = (4.0, 0.9, 0.8)  # anisotropic: 4 mm slices


def oblique_grid():
    direction = Rotation.from_euler("xyz", [20, -15, 30], degrees=True).as_matrix()
    return Image(np.zeros((1, *SHAPE), np.float32), spacing=SPACING, origin=(10.0, -20.0, 5.0), direction=direction)


def blobs(grid):
    """Three smooth ellipsoid-ish blobs defined in physical space (labels 1, 2, 3)."""
    idx = np.indices(grid.spatial_shape).reshape(3, -1).T
    phys = np.asarray(grid.origin) + (grid.direction @ (idx * np.asarray(grid.spacing)).T).T
    lab = np.zeros(grid.spatial_shape, np.uint8)
    shape = np.asarray(grid.spatial_shape)
    for value, (frac, radius) in enumerate((([.5, .4, .4], 11), ([.5, .65, .62], 8), ([.4, .35, .72], 7)), 1):
        centre = grid.index_to_physical(shape * np.asarray(frac))
        lab[(np.linalg.norm(phys - centre, axis=1) < radius).reshape(grid.spatial_shape)] = value
    return grid.with_array(lab[None])


def dice(a, b, value):
    x, y = a == value, b == value
    return 2 * np.logical_and(x, y).sum() / (x.sum() + y.sum())


def test_target_grid_keeps_centre_and_direction():
    grid = oblique_grid()
    new = target_grid(grid, (1.0, 1.0, 1.0))
    assert new.spacing == (1.0, 1.0, 1.0)
    assert new.spatial_shape == (48, 43, 35)
    np.testing.assert_allclose(new.direction, grid.direction)
    centre = lambda im: im.index_to_physical((np.asarray(im.spatial_shape) - 1) / 2)
    np.testing.assert_allclose(centre(new), centre(grid), atol=1e-9)


def test_label_round_trip_on_anisotropic_oblique_volume():
    label = blobs(oblique_grid())
    assert set(np.unique(label.array)) == {0, 1, 2, 3}
    for method in ("linear", "nearest"):
        iso = resample_label(label, (1.0, 1.0, 1.0), method=method)
        assert set(np.unique(iso.array)) <= {0, 1, 2, 3}  # no new labels
        assert iso.array.dtype == label.array.dtype
        back = resample_label(iso, label, method=method)
        assert back.same_geometry(label)  # exactly the original grid
        assert back.spacing == label.spacing and back.origin == label.origin
        np.testing.assert_array_equal(back.direction, label.direction)
        assert set(np.unique(back.array)) <= {0, 1, 2, 3}
        for value in (1, 2, 3):
            assert dice(back.array, label.array, value) > 0.95, (method, value)


def test_linear_label_method_beats_nearest_on_coarsening_round_trip():
    label = blobs(oblique_grid())
    scores = label_method_comparison(label, (1.3, 1.3, 1.3))
    assert scores["linear"] > scores["nearest"] > 0.9


def test_image_round_trip_returns_to_exact_grid():
    grid = oblique_grid()
    label = blobs(grid)
    # smooth image: blobs blurred along in-plane axes + a gradient
    image = grid.with_array((label.array * 40.0 + np.linspace(0, 10, SHAPE[2])[None, None, None, :]).astype(np.float32))
    iso = resample_image(image, (1.0, 1.0, 1.0), order=3)
    assert iso.spacing == (1.0, 1.0, 1.0) and iso.array.dtype == np.float32
    back = resample_to_reference(iso, image, order=1)
    assert back.same_geometry(image)
    inner = (slice(None), slice(1, -1), slice(2, -2), slice(2, -2))
    err = np.abs(back.array - image.array)[inner]
    assert np.median(err) < 1.0 and err.mean() < 6.0


def test_anisotropic_separate_uses_order0_across_slices():
    # a volume whose slices differ strongly: separate resampling must not overshoot across slices
    array = np.zeros((1, 6, 16, 16), np.float32)
    array[0, ::2] = 100.0
    image = Image(array, spacing=(5.0, 1.0, 1.0))
    fine = resample_image(image, (1.0, 1.0, 1.0), order=3, anisotropic_separate=True)
    assert set(np.unique(np.round(fine.array, 3))) <= {0.0, 100.0}  # nearest across slices: no overshoot
    joint = resample_image(image, (1.0, 1.0, 1.0), order=3, anisotropic_separate=False)
    assert joint.array.max() > 100.0 or joint.array.min() < 0.0  # cubic across slices overshoots


def test_integer_images_keep_dtype_when_asked():
    image = Image(np.arange(4 * 8 * 8, dtype=np.int16).reshape(1, 4, 8, 8), spacing=(2.0, 1.0, 1.0))
    out = resample_image(image, (1.0, 1.0, 1.0), order=1, dtype=None)
    assert out.array.dtype == np.int16 and out.spatial_shape == (8, 8, 8)


def test_multichannel_and_2d():
    image = Image(np.random.default_rng(0).random((3, 20, 30)).astype(np.float32), spacing=(0.5, 0.5))
    out = resample_image(image, (1.0, 1.0))
    assert out.array.shape == (3, 10, 15) and out.channel_names == image.channel_names


def test_probabilities_stay_normalised_and_come_back():
    grid = oblique_grid()
    label = blobs(grid)
    onehot = np.stack([(label.array[0] == v).astype(np.float32) for v in range(4)])
    probs = grid.with_array(onehot)
    iso = resample_probabilities(probs, (1.0, 1.0, 1.0))
    np.testing.assert_allclose(iso.array.sum(0), 1.0, atol=1e-5)
    assert iso.array.min() >= 0 and iso.array.max() <= 1 + 1e-6
    back = resample_probabilities(iso, grid)
    assert back.same_geometry(grid)
    for order in (3,):
        cubic = resample_probabilities(probs, (1.0, 1.0, 1.0), order=order)
        np.testing.assert_allclose(cubic.array.sum(0), 1.0, atol=1e-5)
        assert cubic.array.min() >= 0


def test_bad_spacing_is_rejected():
    with pytest.raises(MedsegError, match="target_spacing"):
        resample_image(oblique_grid(), (1.0, 0.0, 1.0))
    with pytest.raises(MedsegError, match="target_spacing"):
        resample_image(oblique_grid(), (1.0, 1.0))


def test_round_trip_through_an_axis_aligned_grid_of_other_orientation():
    """Oblique 4 mm grid -> axis-aligned 1 mm grid covering it (a full affine map) -> back."""
    grid = oblique_grid()
    label = blobs(grid)
    corners = np.array([grid.index_to_physical(c) for c in np.ndindex(2, 2, 2) for c in
                        [np.asarray(c) * (np.asarray(SHAPE) - 1)]])
    lo, hi = corners.min(0) - 2, corners.max(0) + 2
    shape = tuple(int(v) for v in np.ceil(hi - lo) + 1)
    aligned = Image(np.zeros((1, *shape), np.uint8), spacing=(1.0, 1.0, 1.0), origin=tuple(lo))
    there = resample_label(label, aligned)
    assert there.same_geometry(aligned)
    back = resample_label(there, label)
    assert back.same_geometry(label)
    for value in (1, 2, 3):
        assert dice(back.array, label.array, value) > 0.93
    # images too, through resample_to_reference
    image = label.with_array(label.array.astype(np.float32) * 10)
    img_back = resample_to_reference(resample_to_reference(image, aligned, order=1), image, order=1)
    assert img_back.same_geometry(image)
    assert np.abs(img_back.array - image.array).mean() < 1.0
