"""Edges and contours: Canny edges closed into regions, marker-based watershed, Chan–Vese active
contours without edges, and morphological geodesic active contours (all wrapping scikit-image)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage
from skimage import feature, morphology, segmentation

from medseg.classical._common import (
    Scalar,
    as_scalar,
    check_polarity,
    finish,
    seed_indices,
    seed_label_values,
    to_voxels,
)
from medseg.classical.registry import register
from medseg.classical.threshold import otsu_value
from medseg.errors import MedsegError
from medseg.image import Image, check_roi

__all__ = [
    "segment_canny",
    "segment_watershed",
    "segment_chan_vese",
    "segment_morphological_chan_vese",
    "segment_geodesic_active_contour",
    "gradient_magnitude",
]


def _unit(array: np.ndarray, roi: np.ndarray | None) -> np.ndarray:
    """Rescale to [0, 1] using the range inside ``roi`` (edge and contour parameters assume it)."""
    values = array[roi] if roi is not None else array
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        raise MedsegError("image is constant (inside the roi): there is no contrast to segment")
    return np.clip((array.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0)


def gradient_magnitude(image: np.ndarray, sigma: float | Sequence[float] = 1.0,
                       spacing: Sequence[float] | None = None) -> np.ndarray:
    """Gaussian gradient magnitude in intensity per mm (per voxel without ``spacing``).

    Examples
    --------
    >>> x = np.tile(np.arange(10.0), (10, 1))
    >>> round(float(gradient_magnitude(x, 1.0, spacing=(1.0, 2.0))[5, 5]), 3)
    0.5
    """
    img = as_scalar(image, spacing, "gradient_magnitude")
    sig = to_voxels(sigma, img.spacing, "sigma")
    # Smooth, then central differences in mm: exact on ramps even for sub-voxel sigmas, where a sampled
    # Gaussian-derivative kernel loses its normalisation.
    smoothed = ndimage.gaussian_filter(img.array.astype(np.float64), sig, mode="nearest")
    grads = np.gradient(smoothed, *img.spacing)
    grads = grads if isinstance(grads, (list, tuple)) else [grads]
    return np.sqrt(sum(g * g for g in grads))


def _oriented(region: np.ndarray, array: np.ndarray, bright: bool, roi: np.ndarray | None) -> np.ndarray:
    """Level-set methods split the image in two without saying which side is the object: pick the side
    whose mean is brighter (or darker) than the other."""
    inside = region & roi if roi is not None else region
    outside = ~region & roi if roi is not None else ~region
    if not inside.any() or not outside.any():
        return region
    brighter = array[inside].mean() >= array[outside].mean()
    return region if brighter == bright else ~region


def _seed_balls(img: Scalar, seeds, physical: bool, radius: float) -> np.ndarray:
    index = seed_indices(seeds, img, physical)
    marker = np.zeros(img.array.shape, bool)
    marker[tuple(index.T)] = True
    r = to_voxels(radius, img.spacing, "radius")
    if np.all(r < 0.5):
        return marker
    # Ellipsoid of the given physical radius: distance (mm) to the nearest seed voxel.
    dist = ndimage.distance_transform_edt(~marker, sampling=img.spacing)
    return dist <= radius


@register("canny", family="edges", summary="Canny edges closed into filled regions (3D: slice by slice)")
def segment_canny(
    image: np.ndarray | Image,
    sigma: float = 1.0,
    *,
    lower: float | None = None,
    upper: float | None = None,
    radius: float = 1.0,
    roi: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Detect Canny edges, close gaps with a disk, and fill the enclosed regions.

    3D images are processed slice by slice along the first axis (Canny is a 2D operator).

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray or one-channel Image
        Grey-level image, rescaled to [0, 1] inside ``roi`` first.
    sigma : float
        Gaussian smoothing in mm (in-plane spacing; voxels without ``spacing``).
    lower, upper : float, optional
        Hysteresis thresholds on the gradient of the [0, 1] image (scikit-image defaults 0.1, 0.2).
    radius : float
        Radius (in-plane, mm) of the closing that bridges gaps in the edges.
    roi : ndarray of bool, optional
        Edges are searched inside it; outside the result is 0.
    spacing : sequence of float, optional
        Voxel size.

    Returns
    -------
    ndarray of uint8
        0/1 label map: the filled regions enclosed by edges (edges included).

    Examples
    --------
    >>> yy, xx = np.mgrid[:40, :40]
    >>> disc = ((yy - 20) ** 2 + (xx - 20) ** 2 < 100).astype(float)
    >>> bool(segment_canny(disc, sigma=1.0)[20, 20]), bool(segment_canny(disc, sigma=1.0)[2, 2])
    (True, False)
    """
    img = as_scalar(image, spacing, "canny")
    roi = check_roi(roi, img.array.shape)
    unit = _unit(img.array, roi)
    plane_spacing = img.spacing[-2:]
    sig = float(np.mean(to_voxels(sigma, plane_spacing, "sigma")))
    r = int(round(float(np.mean(to_voxels(radius, plane_spacing, "radius")))))
    footprint = morphology.disk(max(r, 0))
    slices = unit[None] if unit.ndim == 2 else unit
    rois = (roi[None] if roi.ndim == 2 else roi) if roi is not None else [None] * len(slices)
    out = np.zeros(slices.shape, bool)
    for k, (plane, m) in enumerate(zip(slices, rois)):
        edges = feature.canny(plane, sigma=sig, low_threshold=lower, high_threshold=upper, mask=m)
        closed = ndimage.binary_closing(np.pad(edges, r), footprint)[r:-r, r:-r] if r > 0 else edges
        out[k] = ndimage.binary_fill_holes(closed)
    return finish(out.reshape(unit.shape), roi)


@register("watershed", seeds="optional", output="regions", family="edges",
          summary="watershed of the gradient from seeds, h-minima or distance-transform peaks")
def segment_watershed(
    image: np.ndarray | Image,
    seeds: Sequence[Sequence[float]] | None = None,
    *,
    seed_labels: Sequence[int] | None = None,
    markers: str | None = None,
    h: float | None = None,
    sigma: float = 1.0,
    compactness: float = 0.0,
    physical: bool = False,
    roi: np.ndarray | None = None,
    polarity: str = "bright",
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Flood the gradient magnitude (or the distance map) from markers.

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray or one-channel Image
        Grey-level image.
    seeds : sequence of points, optional
        Marker points (voxel indices, or physical points with ``physical=True``).
    seed_labels : sequence of int, optional
        Label of each seed (several seeds may share one); default seed ``i`` gets ``i + 1``.
    markers : {"seeds", "h_minima", "distance"}, optional
        Where markers come from; default "seeds" when seeds are given, else "h_minima".
        "h_minima": regional minima of the gradient deeper than ``h`` (every catchment basin becomes a
        region); "distance": peaks (higher than ``h`` mm) of the distance map of the Otsu foreground,
        flooded within it — splits touching round objects.
    h : float, optional
        Depth of the minima (default 5 % of the gradient range) or height of the distance peaks in mm
        (default one voxel).
    sigma : float
        Gaussian scale of the gradient, in mm.
    compactness : float
        Compact watershed (0 = classic).
    physical : bool
        Seeds are physical points (mm, array-axis order) rather than voxel indices.
    roi : ndarray of bool, optional
        Flooding is restricted to it.
    polarity : {"bright", "dark"}
        Object polarity for ``markers="distance"`` (Otsu foreground).
    spacing : sequence of float, optional
        Voxel size.

    Returns
    -------
    ndarray of uint8 / uint16
        One label per marker (0 outside ``roi`` and, for "distance", in the background).

    Examples
    --------
    >>> x = np.zeros((20, 20)); x[5:15, 5:15] = 1.0
    >>> lab = segment_watershed(x, seeds=[(10, 10), (1, 1)])
    >>> int(lab[10, 10]), int(lab[1, 1]), bool((lab[6:14, 6:14] == 1).all()), bool((lab[:4] == 2).all())
    (1, 2, True, True)
    """
    img = as_scalar(image, spacing, "watershed")
    roi = check_roi(roi, img.array.shape)
    kind = markers or ("seeds" if seeds is not None and len(seeds) else "h_minima")
    if kind == "seeds":
        index = seed_indices(seeds, img, physical)
        values = seed_label_values(seed_labels, len(index))
        marker_map = np.zeros(img.array.shape, np.int32)
        marker_map[tuple(index.T)] = values
        relief = gradient_magnitude(img.array, sigma, img.spacing)
        flood_mask = roi
    elif kind == "h_minima":
        relief = gradient_magnitude(img.array, sigma, img.spacing)
        depth = h if h is not None else 0.05 * float(np.ptp(relief))
        if depth <= 0:
            raise MedsegError("image is constant: the gradient has no minima to flood from")
        marker_map = ndimage.label(morphology.h_minima(relief, depth))[0]
        if marker_map.max() == 0:
            raise MedsegError(f"h={depth:g} is deeper than every minimum of the gradient (range {np.ptp(relief):g}): no markers")
        flood_mask = roi
    elif kind == "distance":
        values = img.array[roi] if roi is not None else img.array
        t = otsu_value(values)
        fg = img.array > t if check_polarity(polarity) else img.array < t
        if roi is not None:
            fg &= roi
        dist = ndimage.distance_transform_edt(fg, sampling=img.spacing)
        height = h if h is not None else float(min(img.spacing))
        marker_map = ndimage.label(morphology.h_maxima(dist, height) & fg)[0]
        relief = -dist
        flood_mask = fg
    else:
        raise MedsegError(f"markers must be 'seeds', 'h_minima' or 'distance'; got {markers!r}")
    labels = segmentation.watershed(relief, marker_map, mask=flood_mask, compactness=compactness)
    return finish(labels, roi)


@register("chan_vese", dims=(2,), family="edges", summary="Chan-Vese active contour without edges (2D)")
def segment_chan_vese(
    image: np.ndarray | Image,
    *,
    mu: float = 0.25,
    iterations: int = 200,
    roi: np.ndarray | None = None,
    polarity: str = "bright",
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Two-phase Chan–Vese level set (Mumford–Shah with piecewise-constant regions), 2D only.

    Parameters
    ----------
    image : (Y, X) ndarray or one-channel Image
        Grey-level image, rescaled to [0, 1] first.
    mu : float
        Length penalty: larger gives smoother, rounder regions.
    iterations : int
        Maximum number of iterations.
    roi : ndarray of bool, optional
        Outside it the result is 0 (the contour still evolves on the whole image).
    polarity : {"bright", "dark"}
        Which phase is returned as the object.
    spacing : sequence of float, optional
        Voxel size (unused: scikit-image's level set assumes square pixels).

    Returns
    -------
    ndarray of uint8
        0/1 label map.

    Examples
    --------
    >>> yy, xx = np.mgrid[:32, :32]
    >>> disc = ((yy - 16) ** 2 + (xx - 16) ** 2 < 64).astype(float)
    >>> int(segment_chan_vese(disc, iterations=50).sum()) == int(disc.sum())
    True
    """
    from skimage.segmentation import chan_vese

    img = as_scalar(image, spacing, "chan_vese", dims=(2,))
    roi = check_roi(roi, img.array.shape)
    unit = _unit(img.array, roi)
    region = chan_vese(unit, mu=mu, max_num_iter=int(iterations), tol=1e-3)
    return finish(_oriented(region, unit, check_polarity(polarity), roi), roi)


@register("morphological_chan_vese", seeds="optional", family="edges",
          summary="morphological Chan-Vese (2D/3D), initialised from seeds or a checkerboard")
def segment_morphological_chan_vese(
    image: np.ndarray | Image,
    seeds: Sequence[Sequence[float]] | None = None,
    *,
    iterations: int = 100,
    smoothing: int = 1,
    radius: float = 5.0,
    physical: bool = False,
    roi: np.ndarray | None = None,
    polarity: str = "bright",
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Morphological approximation of Chan–Vese (Márquez-Neila et al. 2014), 2D and 3D.

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray or one-channel Image
        Grey-level image, rescaled to [0, 1] first.
    seeds : sequence of points, optional
        The initial region is the union of balls of ``radius`` mm around the seeds; default a checkerboard.
    iterations : int
        Number of iterations.
    smoothing : int
        Smoothing steps per iteration.
    radius : float
        Radius (mm) of the initial balls around seeds.
    physical : bool
        Seeds are physical points.
    roi : ndarray of bool, optional
        Outside it the result is 0.
    polarity : {"bright", "dark"}
        Which phase is returned as the object.
    spacing : sequence of float, optional
        Voxel size (for seeds and ``radius``).

    Returns
    -------
    ndarray of uint8
        0/1 label map.

    Examples
    --------
    >>> x = np.zeros((16, 24, 24)); x[4:12, 6:18, 6:18] = 1.0
    >>> lab = segment_morphological_chan_vese(x, iterations=20)
    >>> bool(lab[8, 12, 12]), bool(lab[0, 0, 0]), abs(int(lab.sum()) - 1152) < 200
    (True, False, True)
    """
    img = as_scalar(image, spacing, "morphological_chan_vese")
    roi = check_roi(roi, img.array.shape)
    unit = _unit(img.array, roi)
    init = _seed_balls(img, seeds, physical, radius).astype(np.int8) if seeds is not None and len(seeds) else "checkerboard"
    region = segmentation.morphological_chan_vese(unit, int(iterations), init_level_set=init, smoothing=int(smoothing))
    return finish(_oriented(region.astype(bool), unit, check_polarity(polarity), roi), roi)


@register("geodesic_active_contour", seeds="optional", family="edges",
          summary="morphological geodesic active contour: grows from seeds / shrinks onto edges")
def segment_geodesic_active_contour(
    image: np.ndarray | Image,
    seeds: Sequence[Sequence[float]] | None = None,
    *,
    iterations: int = 100,
    sigma: float = 1.0,
    alpha: float = 100.0,
    balloon: float | None = None,
    smoothing: int = 1,
    radius: float = 3.0,
    physical: bool = False,
    roi: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Morphological geodesic active contour on the inverse Gaussian gradient.

    The contour stops on edges. From seeds (balls of ``radius`` mm) it inflates (``balloon=+1``);
    without seeds it starts from a large disk/ball and deflates (``balloon=-1``).

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray or one-channel Image
        Grey-level image, rescaled to [0, 1] first.
    seeds : sequence of points, optional
        Initial points.
    iterations : int
        Number of iterations (the contour moves about one voxel per iteration).
    sigma : float
        Gaussian scale of the edge map, in mm (mean over axes).
    alpha : float
        Steepness of the inverse gradient (larger: sharper stop at edges).
    balloon : float, optional
        Balloon force; default +1 with seeds, -1 without.
    smoothing : int
        Smoothing steps per iteration.
    radius : float
        Radius (mm) of the initial balls.
    physical : bool
        Seeds are physical points.
    roi : ndarray of bool, optional
        Outside it the result is 0.
    spacing : sequence of float, optional
        Voxel size.

    Returns
    -------
    ndarray of uint8
        0/1 label map.

    Examples
    --------
    >>> yy, xx = np.mgrid[:40, :40]
    >>> disc = ((yy - 20) ** 2 + (xx - 20) ** 2 < 100).astype(float)
    >>> lab = segment_geodesic_active_contour(disc, seeds=[(20, 20)], iterations=40)
    >>> bool(lab[20, 20]), bool(lab[2, 2])
    (True, False)
    """
    img = as_scalar(image, spacing, "geodesic_active_contour")
    roi = check_roi(roi, img.array.shape)
    unit = _unit(img.array, roi)
    sig = float(np.mean(to_voxels(sigma, img.spacing, "sigma")))
    gimage = segmentation.inverse_gaussian_gradient(unit, alpha=alpha, sigma=sig)
    if seeds is not None and len(seeds):
        init = _seed_balls(img, seeds, physical, radius).astype(np.int8)
        force = 1.0 if balloon is None else balloon
    else:
        init = "disk"
        force = -1.0 if balloon is None else balloon
    region = segmentation.morphological_geodesic_active_contour(
        gimage, int(iterations), init_level_set=init, smoothing=int(smoothing), threshold="auto", balloon=force
    )
    return finish(region.astype(bool), roi)
