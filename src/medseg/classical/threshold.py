"""Thresholding: a global value, Otsu, multi-Otsu, a local (adaptive) mean, and hysteresis.

Thresholds are computed from the voxels inside ``roi`` only (e.g. a fundus field of view), so the
black surround of a photograph does not pull them down.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage
from skimage import filters

from medseg.classical._common import as_scalar, check_classes, check_polarity, finish, to_voxels
from medseg.classical.registry import register
from medseg.errors import MedsegError
from medseg.image import Image, check_roi

__all__ = ["segment_threshold", "segment_otsu", "segment_multi_otsu", "segment_local", "segment_hysteresis",
           "otsu_value"]


def _values(array: np.ndarray, roi: np.ndarray | None) -> np.ndarray:
    return array[roi] if roi is not None else array.ravel()


def _compare(array: np.ndarray, threshold, bright: bool) -> np.ndarray:
    return array > threshold if bright else array < threshold


def otsu_value(values: np.ndarray, nbins: int = 256) -> float:
    """Otsu's threshold of a set of values (raises a clear error on a constant image)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0 or values.min() == values.max():
        raise MedsegError("image is constant (inside the roi): no threshold separates two classes")
    return float(filters.threshold_otsu(values, nbins=nbins))


@register("threshold", family="threshold", summary="global threshold at a given value (--threshold)")
def segment_threshold(
    image: np.ndarray | Image,
    threshold: float,
    *,
    roi: np.ndarray | None = None,
    polarity: str = "bright",
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Label the voxels above (``polarity="bright"``) or below (``"dark"``) a value.

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray or one-channel Image
        Grey-level image.
    threshold : float
        The value; voxels equal to it are background.
    roi : ndarray of bool, optional
        Region of interest; outside it the result is 0.
    polarity : {"bright", "dark"}
        Whether the object is brighter or darker than the background.
    spacing : sequence of float, optional
        Voxel size (unused; accepted for a uniform interface).

    Returns
    -------
    ndarray of uint8
        0/1 label map.

    Examples
    --------
    >>> segment_threshold(np.array([[0, 5], [10, 20]]), 7).tolist()
    [[0, 0], [1, 1]]
    """
    img = as_scalar(image, spacing, "threshold")
    if threshold is None or not np.isfinite(threshold):
        raise MedsegError(f"threshold must be a finite number; got {threshold}")
    roi = check_roi(roi, img.array.shape)
    return finish(_compare(img.array, threshold, check_polarity(polarity)), roi)


@register("otsu", family="threshold", summary="Otsu's global threshold (inside the roi)")
def segment_otsu(
    image: np.ndarray | Image,
    *,
    roi: np.ndarray | None = None,
    polarity: str = "bright",
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Threshold at Otsu's value, which maximises the between-class variance of the histogram.

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray or one-channel Image
        Grey-level image.
    roi : ndarray of bool, optional
        The threshold is computed inside the roi; outside it the result is 0.
    polarity : {"bright", "dark"}
        Whether the object is brighter or darker than the background.
    spacing : sequence of float, optional
        Voxel size (unused; accepted for a uniform interface).

    Returns
    -------
    ndarray of uint8
        0/1 label map.

    Examples
    --------
    >>> x = np.zeros((8, 8)); x[2:6, 2:6] = 10
    >>> int(segment_otsu(x).sum())
    16
    """
    img = as_scalar(image, spacing, "otsu")
    roi = check_roi(roi, img.array.shape)
    t = otsu_value(_values(img.array, roi))
    return finish(_compare(img.array, t, check_polarity(polarity)), roi)


@register("multi_otsu", output="classes", family="threshold", summary="multi-Otsu: K intensity classes (--classes)")
def segment_multi_otsu(
    image: np.ndarray | Image,
    classes: int = 3,
    *,
    roi: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Split the histogram into ``classes`` classes with the multi-level Otsu criterion.

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray or one-channel Image
        Grey-level image.
    classes : int
        Number of classes (2 to 5 is practical; the search is exhaustive over 256 bins).
    roi : ndarray of bool, optional
        Thresholds are computed inside the roi; outside it the result is 0.
    spacing : sequence of float, optional
        Voxel size (unused; accepted for a uniform interface).

    Returns
    -------
    ndarray of uint8
        Labels 0 (darkest class) to ``classes - 1`` (brightest).

    Examples
    --------
    >>> x = np.repeat([0.0, 5.0, 10.0], 6).reshape(3, 6)
    >>> segment_multi_otsu(x, classes=3)[:, 0].tolist()
    [0, 1, 2]
    """
    img = as_scalar(image, spacing, "multi_otsu")
    classes = check_classes(classes)
    roi = check_roi(roi, img.array.shape)
    values = _values(img.array, roi)
    if np.unique(values[: 200_000]).size < classes and np.unique(values).size < classes:
        raise MedsegError(f"classes={classes} but the image has only {np.unique(values).size} distinct values")
    try:
        thresholds = filters.threshold_multiotsu(values, classes=classes)
    except ValueError as exc:
        raise MedsegError(f"multi_otsu with classes={classes} failed: {exc}") from None
    return finish(np.digitize(img.array, thresholds), roi)


@register("local", family="threshold", summary="adaptive threshold against the local (Gaussian) mean")
def segment_local(
    image: np.ndarray | Image,
    block_size: float | Sequence[float] = 15.0,
    *,
    offset: float = 0.0,
    roi: np.ndarray | None = None,
    polarity: str = "bright",
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Compare each voxel with the Gaussian-weighted mean of its neighbourhood (plus ``offset``).

    The neighbourhood follows :func:`skimage.filters.threshold_local` with ``method="gaussian"``:
    a Gaussian of ``sigma = (block_size - 1) / 6`` voxels, in 2D and 3D alike.

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray or one-channel Image
        Grey-level image.
    block_size : float or sequence of float
        Neighbourhood width in mm (voxels when ``spacing`` is None), per axis or for all axes.
    offset : float
        Subtracted from the local mean: a voxel is object when ``value > mean - offset`` (bright).
    roi : ndarray of bool, optional
        Outside it the result is 0.
    polarity : {"bright", "dark"}
        Whether the object is brighter or darker than its surround.
    spacing : sequence of float, optional
        Voxel size, so that ``block_size`` is physical.

    Returns
    -------
    ndarray of uint8
        0/1 label map.

    Examples
    --------
    >>> x = np.tile(np.linspace(0, 100, 40), (40, 1)); x[18:22, 18:22] += 30  # bright spot on a ramp
    >>> bool(segment_local(x, block_size=11, offset=-10)[20, 20]), bool(segment_local(x, block_size=11, offset=-10)[5, 35])
    (True, False)
    """
    img = as_scalar(image, spacing, "local")
    roi = check_roi(roi, img.array.shape)
    size = to_voxels(block_size, img.spacing, "block_size")
    if np.any(size < 3):
        raise MedsegError(f"block_size is smaller than 3 voxels along some axis ({np.round(size, 2).tolist()} voxels)")
    # Same rule as skimage's threshold_local(method="gaussian"), with a per-axis physical size.
    sigma = (size - 1) / 6.0
    local_mean = ndimage.gaussian_filter(img.array.astype(np.float64), sigma, mode="reflect")
    bright = check_polarity(polarity)
    result = img.array > local_mean - offset if bright else img.array < local_mean + offset
    return finish(result, roi)


@register("hysteresis", family="threshold", summary="hysteresis: strong voxels plus connected weak ones")
def segment_hysteresis(
    image: np.ndarray | Image,
    lower: float | None = None,
    upper: float | None = None,
    *,
    roi: np.ndarray | None = None,
    polarity: str = "bright",
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Keep voxels above ``lower`` that are connected to a voxel above ``upper``.

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray or one-channel Image
        Grey-level image (for ``polarity="dark"`` it is negated first, and so are the thresholds).
    lower, upper : float, optional
        Thresholds; default: ``upper`` = Otsu's value and ``lower`` = half-way between the mean of the
        background class and ``upper``.
    roi : ndarray of bool, optional
        Outside it the result is 0.
    polarity : {"bright", "dark"}
        Whether the object is brighter or darker than the background.
    spacing : sequence of float, optional
        Voxel size (unused; accepted for a uniform interface).

    Returns
    -------
    ndarray of uint8
        0/1 label map.

    Examples
    --------
    >>> x = np.array([[0, 3, 3, 9, 0, 3]], float)
    >>> segment_hysteresis(x, lower=2, upper=8).tolist()
    [[0, 1, 1, 1, 0, 0]]
    """
    img = as_scalar(image, spacing, "hysteresis")
    roi = check_roi(roi, img.array.shape)
    sign = 1.0 if check_polarity(polarity) else -1.0
    array = sign * img.array
    if lower is not None:
        lower = sign * lower
    if upper is not None:
        upper = sign * upper
    values = _values(array, roi)
    if upper is None:
        upper = otsu_value(values)
    if lower is None:
        below = values[values <= upper]
        lower = 0.5 * (float(below.mean()) + upper) if below.size else upper
    if lower > upper:
        raise MedsegError(f"lower ({sign * lower}) must not exceed upper ({sign * upper}) for polarity {polarity!r}")
    work = np.where(roi, array, array.min()) if roi is not None else array
    return finish(filters.apply_hysteresis_threshold(work, lower, upper), roi)
