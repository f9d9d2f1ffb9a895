import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.spatial.distance import cdist

from medseg.metrics import (
    assd, boundary, hausdorff_distance, hd95, normalized_surface_dice, surface_distances, surface_metrics,
)
from medseg.metrics.surface import _erode_faces

METHODS = ["edt", "kdtree"]


def brute_force(p, r, spacing):
    """The definition, literally: boundaries by scipy erosion, all pairwise distances."""
    bp = p & ~ndi.binary_erosion(p, border_value=0)
    br = r & ~ndi.binary_erosion(r, border_value=0)
    d = cdist(np.argwhere(bp) * spacing, np.argwhere(br) * spacing)
    return d.min(axis=1), d.min(axis=0)


def ball(shape, centre, radius, spacing):
    grids = np.meshgrid(*[(np.arange(n) - c) * s for n, c, s in zip(shape, centre, spacing)], indexing="ij")
    return sum(g**2 for g in grids) <= radius**2


def test_boundary_matches_scipy(rng):
    m = ndi.binary_opening(rng.random((12, 13, 14)) > 0.4)
    m[0, 3:6, 3:6] = True  # touching the image border: that face is a surface too
    expected = m & ~ndi.binary_erosion(m, border_value=0)
    assert np.array_equal(boundary(m), expected)
    full = np.ones((5, 6), bool)
    assert boundary(full).sum() == 2 * 5 + 2 * 6 - 4
    m2 = rng.random((9, 9, 9)) > 0.3
    assert np.array_equal(boundary(m2, connectivity=3),
                          m2 & ~ndi.binary_erosion(m2, ndi.generate_binary_structure(3, 3), border_value=0))
    assert np.array_equal(_erode_faces(np.pad(m2, 1))[1:-1, 1:-1, 1:-1], ndi.binary_erosion(m2, border_value=0))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 0.7, 1.3)])
def test_distances_equal_the_definition(rng, method, spacing):
    # Random blobs, so the nearest surface voxel may lie anywhere in the joint box: checks that the
    # cropping (to the union's bounding box, then to the surfaces' box) never changes a distance.
    p = ndi.binary_dilation(rng.random((14, 20, 22)) > 0.985, iterations=2)
    r = ndi.binary_dilation(rng.random((14, 20, 22)) > 0.985, iterations=2)
    d_pr, d_rp = surface_distances(p, r, spacing, method=method)
    e_pr, e_rp = brute_force(p, r, np.asarray(spacing))
    np.testing.assert_allclose(d_pr, e_pr, rtol=1e-6)
    np.testing.assert_allclose(d_rp, e_rp, rtol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_crop_equals_uncropped_distance_transform(rng, method):
    # Two far-apart objects near opposite corners of a larger image: the uncropped scipy EDT of the
    # complement of the other surface, read at this surface, must give the same distances.
    spacing = np.array([3.0, 0.8, 1.1])
    p = np.zeros((30, 40, 40), bool); p[2:6, 3:9, 30:37] = True
    r = np.zeros_like(p); r[20:27, 30:36, 2:5] = True; r[22:24, 31:33, 3] = False
    bp, br = boundary(p), boundary(r)
    full_pr = ndi.distance_transform_edt(~br, sampling=spacing)[bp]
    full_rp = ndi.distance_transform_edt(~bp, sampling=spacing)[br]
    d_pr, d_rp = surface_distances(p, r, spacing, method=method)
    np.testing.assert_allclose(np.sort(d_pr), np.sort(full_pr), rtol=1e-6)
    np.testing.assert_allclose(np.sort(d_rp), np.sort(full_rp), rtol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_concentric_boxes_closed_form(method):
    # Centred boxes of half-widths R and r (voxels): the farthest outer boundary voxel is a corner,
    # whose nearest inner boundary voxel is the inner corner: HD = |(R - r) * spacing|.
    spacing = np.array([2.0, 0.5, 1.0])
    R, r_ = 6, 3
    outer = np.zeros((17, 17, 17), bool); outer[8 - R:9 + R, 8 - R:9 + R, 8 - R:9 + R] = True
    inner = np.zeros_like(outer); inner[8 - r_:9 + r_, 8 - r_:9 + r_, 8 - r_:9 + r_] = True
    expected = float(np.linalg.norm((R - r_) * spacing))
    assert hausdorff_distance(outer, inner, spacing, method=method) == pytest.approx(expected)
    # The closest pair of boundary voxels is a face pair across the finest axis.
    d_out_in, d_in_out = surface_distances(outer, inner, spacing, method=method)
    assert d_out_in.max() == pytest.approx(expected)
    assert d_in_out.min() == pytest.approx((R - r_) * spacing.min())


@pytest.mark.parametrize("method", METHODS)
def test_concentric_spheres_radius_difference(method):
    # Physical balls of radii 12 and 8 mm on an anisotropic grid whose poles fall on voxel centres:
    # HD is at least the radius difference (at the poles) and within one voxel diagonal of it.
    spacing = (2.0, 1.0, 1.0)
    shape, centre = (17, 31, 31), (8, 15, 15)
    outer, inner = ball(shape, centre, 12, spacing), ball(shape, centre, 8, spacing)
    hd = hausdorff_distance(outer, inner, spacing, method=method)
    assert 4.0 <= hd <= 4.0 + np.linalg.norm(spacing)
    d_out_in, _ = surface_distances(outer, inner, spacing, method=method)
    assert np.median(d_out_in) == pytest.approx(4.0, abs=1.0)
    # 2D discs, isotropic: same statement
    disc_o, disc_i = ball((41, 41), (20, 20), 15, (1.0, 1.0)), ball((41, 41), (20, 20), 10, (1.0, 1.0))
    assert 5.0 <= hausdorff_distance(disc_o, disc_i, method=method) <= 5.0 + np.sqrt(2)


@pytest.mark.parametrize("method", METHODS)
def test_shifted_cubes(method):
    spacing = (3.0, 1.0, 0.5)
    a = np.zeros((20, 20, 20), bool); a[5:12, 5:12, 5:12] = True
    for axis, k in ((0, 2), (2, 3)):
        b = np.roll(a, k, axis=axis)
        assert hausdorff_distance(a, b, spacing, method=method) == pytest.approx(k * spacing[axis])
        assert hd95(a, b, spacing, method=method) == pytest.approx(k * spacing[axis])
        assert normalized_surface_dice(a, b, spacing, tolerance=k * spacing[axis], method=method) == 1.0
        assert normalized_surface_dice(a, b, spacing, tolerance=0.99 * k * spacing[axis], method=method) < 1.0


@pytest.mark.parametrize("method", METHODS)
def test_single_voxels(method):
    a = np.zeros((6, 7, 8), bool); a[1, 2, 3] = True
    b = np.zeros_like(a); b[4, 2, 7] = True
    spacing = (1.5, 1.0, 0.25)
    expected = float(np.hypot(3 * 1.5, 4 * 0.25))
    m = surface_metrics(a, b, spacing, tolerance=1.0, method=method)
    assert m["hausdorff"] == m["hd95"] == pytest.approx(expected)
    assert m["assd"] == pytest.approx(expected)
    assert m["nsd"] == 0.0
    assert surface_metrics(a, a, spacing, method=method) == {"hausdorff": 0.0, "hd95": 0.0, "assd": 0.0, "nsd": 1.0}


def test_percentile_and_average_modes(rng):
    p = ndi.binary_dilation(rng.random((16, 16, 16)) > 0.99, iterations=2)
    r = ndi.binary_dilation(rng.random((16, 16, 16)) > 0.99, iterations=2)
    spacing = (1.2, 1.0, 0.9)
    d_pr, d_rp = brute_force(p, r, np.asarray(spacing))
    assert hd95(p, r, spacing) == pytest.approx(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)))
    assert hd95(p, r, spacing, percentile_mode="pooled") == pytest.approx(np.percentile(np.r_[d_pr, d_rp], 95))
    assert assd(p, r, spacing) == pytest.approx(np.r_[d_pr, d_rp].mean())
    assert assd(p, r, spacing, average_mode="mean_of_means") == pytest.approx((d_pr.mean() + d_rp.mean()) / 2)
    tol = 2.0
    assert normalized_surface_dice(p, r, spacing, tolerance=tol) == pytest.approx(
        (np.sum(d_pr <= tol) + np.sum(d_rp <= tol)) / (d_pr.size + d_rp.size)
    )


def test_empty_masks():
    z = np.zeros((8, 8, 8), bool)
    one = z.copy(); one[2:4, 2:4, 2:4] = True
    assert surface_metrics(z, z) == {"hausdorff": 0.0, "hd95": 0.0, "assd": 0.0, "nsd": 1.0}
    for p, r in ((z, one), (one, z)):
        m = surface_metrics(p, r)
        assert m["hausdorff"] == m["hd95"] == m["assd"] == np.inf and m["nsd"] == 0.0


def test_edge_of_image_is_background():
    full = np.ones((5, 5), bool)
    inner = np.zeros((5, 5), bool); inner[1:4, 1:4] = True
    # The full mask's surface is the image frame; its corners are one diagonal step from the inner ring.
    assert hausdorff_distance(full, inner) == pytest.approx(np.sqrt(2))
    d_full, _ = surface_distances(full, inner)
    assert np.sort(d_full)[:12].tolist() == pytest.approx([1.0] * 12)


def test_bad_arguments_are_errors():
    from medseg.errors import MedsegError

    z = np.zeros((4, 4), bool)
    with pytest.raises(MedsegError, match="percentile_mode"):
        hd95(z, z, percentile_mode="mean")
    with pytest.raises(MedsegError, match="average_mode"):
        assd(z, z, average_mode="x")
    with pytest.raises(MedsegError, match="spacing"):
        hd95(z, z, spacing=(1.0, 0.0))
    with pytest.raises(MedsegError, match="method"):
        hd95(z, z, method="brute")
