"""Seeded region growing with intensity criteria (SimpleITK's ConnectedThreshold and ConfidenceConnected).

Seeds are voxel indices in array order, or physical points (mm, array-axis order) with
``physical=True`` — mapped through the Image's geometry when an :class:`~medseg.image.Image` is passed,
else through ``spacing`` with the origin at voxel 0.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import SimpleITK as sitk

from medseg.classical._common import Scalar, as_scalar, finish, seed_indices
from medseg.classical.registry import register
from medseg.errors import MedsegError
from medseg.image import Image, check_roi

__all__ = ["segment_connected_threshold", "segment_confidence_connected"]


def _to_itk(img: Scalar) -> sitk.Image:
    itk = sitk.GetImageFromArray(img.array.astype(np.float32, copy=False))
    itk.SetSpacing(tuple(reversed(img.spacing)))  # ITK lists axes x, y, z: the reverse of array order
    return itk


def _itk_seeds(index: np.ndarray) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in reversed(p)) for p in index]


def _neighbourhood_stats(array: np.ndarray, index: np.ndarray, radius: int) -> tuple[float, float]:
    values = []
    for p in index:
        sl = tuple(slice(max(int(c) - radius, 0), int(c) + radius + 1) for c in p)
        values.append(array[sl].ravel())
    v = np.concatenate(values)
    return float(v.mean()), float(v.std())


@register("connected_threshold", seeds="required", family="region growing",
          summary="region growing: voxels connected to the seeds within [lower, upper]")
def segment_connected_threshold(
    image: np.ndarray | Image,
    seeds: Sequence[Sequence[float]],
    lower: float | None = None,
    upper: float | None = None,
    *,
    multiplier: float = 2.5,
    radius: int = 1,
    physical: bool = False,
    roi: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Grow from ``seeds`` over face-connected voxels whose value lies in ``[lower, upper]``.

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray or one-channel Image
        Grey-level image.
    seeds : sequence of points
        Voxel indices (array order) or physical points with ``physical=True``.
    lower, upper : float, optional
        Intensity interval; a missing bound is ``mean ± multiplier × std`` of the voxels within
        ``radius`` voxels of the seeds.
    multiplier : float
        Width of the default interval in standard deviations.
    radius : int
        Neighbourhood (voxels) around each seed for the default interval.
    physical : bool
        Seeds are physical points (mm, array-axis order).
    roi : ndarray of bool, optional
        Growth does not leave the roi.
    spacing : sequence of float, optional
        Voxel size (for physical seeds).

    Returns
    -------
    ndarray of uint8
        0/1 label map.

    Raises
    ------
    MedsegError
        A seed outside the image (the message names ``seeds``), or an empty interval.

    Examples
    --------
    >>> x = np.zeros((10, 10)); x[2:5, 2:5] = 100; x[7:9, 7:9] = 100
    >>> int(segment_connected_threshold(x, seeds=[(3, 3)], lower=50, upper=150).sum())
    9
    """
    img = as_scalar(image, spacing, "connected_threshold")
    roi = check_roi(roi, img.array.shape)
    index = seed_indices(seeds, img, physical)
    if lower is None or upper is None:
        mean, std = _neighbourhood_stats(img.array, index, int(radius))
        std = max(std, 1e-6 * max(abs(mean), 1.0))
        lower = mean - multiplier * std if lower is None else lower
        upper = mean + multiplier * std if upper is None else upper
    if lower > upper:
        raise MedsegError(f"lower ({lower}) must not exceed upper ({upper})")
    work = img
    if roi is not None:
        # Voxels outside the roi get a value outside [lower, upper], so growth stops at the roi.
        blocked = np.where(roi, img.array, lower - abs(upper - lower) - 1.0)
        work = Scalar(blocked, img.spacing, img.origin, img.direction)
    grown = sitk.ConnectedThreshold(
        _to_itk(work), seedList=_itk_seeds(index), lower=float(lower), upper=float(upper), replaceValue=1
    )
    return finish(sitk.GetArrayFromImage(grown), roi)


@register("confidence_connected", seeds="required", family="region growing",
          summary="region growing: interval re-estimated from the region (mean ± k·std)")
def segment_confidence_connected(
    image: np.ndarray | Image,
    seeds: Sequence[Sequence[float]],
    *,
    multiplier: float = 2.5,
    iterations: int = 5,
    radius: int = 1,
    physical: bool = False,
    roi: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Confidence-connected region growing: the interval ``mean ± multiplier × std`` is computed from
    the seeds' neighbourhoods, the region grown, and the statistics re-estimated from the region,
    ``iterations`` times.

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray or one-channel Image
        Grey-level image.
    seeds : sequence of points
        Voxel indices (array order) or physical points with ``physical=True``.
    multiplier : float
        Interval half-width in standard deviations.
    iterations : int
        Re-estimation rounds.
    radius : int
        Neighbourhood radius (voxels) around each seed for the first statistics.
    physical : bool
        Seeds are physical points (mm, array-axis order).
    roi : ndarray of bool, optional
        Outside it the result is 0.
    spacing : sequence of float, optional
        Voxel size (for physical seeds).

    Returns
    -------
    ndarray of uint8
        0/1 label map.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(0, 1, (24, 24)); x[6:18, 6:18] += 10
    >>> abs(int(segment_confidence_connected(x, seeds=[(12, 12)], multiplier=3.5).sum()) - 144) <= 3
    True
    """
    img = as_scalar(image, spacing, "confidence_connected")
    roi = check_roi(roi, img.array.shape)
    index = seed_indices(seeds, img, physical)
    work = img
    if roi is not None:
        # Push outside-roi voxels far from any plausible interval so growth stays inside.
        span = float(np.ptp(img.array)) + 1.0
        blocked = np.where(roi, img.array, img.array.min() - 1e3 * span)
        work = Scalar(blocked, img.spacing, img.origin, img.direction)
    grown = sitk.ConfidenceConnected(
        _to_itk(work),
        seedList=_itk_seeds(index),
        numberOfIterations=int(iterations),
        multiplier=float(multiplier),
        initialNeighborhoodRadius=int(radius),
        replaceValue=1,
    )
    return finish(sitk.GetArrayFromImage(grown), roi)
