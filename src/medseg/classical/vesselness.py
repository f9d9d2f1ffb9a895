"""Vesselness: Frangi and Sato Hessian filters (scikit-image), as a continuous score and thresholded.

Colour fundus photographs: vessels have the most contrast in the green channel, so the CLI uses
channel 1 (green) by default for these methods; every other method asks for ``--channel``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage
from skimage import filters

from medseg.classical._common import as_scalar, check_polarity, finish, to_voxels
from medseg.classical.registry import register
from medseg.classical.threshold import otsu_value
from medseg.errors import MedsegError
from medseg.image import Image, check_roi

__all__ = ["vesselness", "segment_frangi", "segment_sato"]

_FILTERS = {"frangi": filters.frangi, "sato": filters.sato}


def _fill_outside(array: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """Replace voxels outside ``roi`` by the nearest inside value, so the edge of a field of view is not
    mistaken for a vessel wall by the Hessian."""
    _, nearest = ndimage.distance_transform_edt(~roi, return_indices=True)
    return array[tuple(nearest)]


def vesselness(
    image: np.ndarray | Image,
    sigmas: Sequence[float] = (1.0, 2.0, 3.0),
    *,
    method: str = "frangi",
    polarity: str = "dark",
    roi: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Continuous vesselness map in [0, 1] (the score for ROC curves), 2D or 3D.

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray or one-channel Image
        Grey-level image (for colour fundus photographs: the green channel).
    sigmas : sequence of float
        Scales of the Hessian in mm (voxels without ``spacing``); about half the vessel widths sought.
        scikit-image's filters assume isotropic voxels, so mm are converted with the geometric-mean
        spacing.
    method : {"frangi", "sato"}
        Frangi et al. 1998 (tubular, blob-suppressing) or Sato et al. 1998 (line filter).
    polarity : {"dark", "bright"}
        Dark vessels on a bright background (retinal photographs) or bright ones (angiography).
    roi : ndarray of bool, optional
        Field of view: values outside it are replaced by their nearest inside value before filtering
        and the response is 0 outside it.
    spacing : sequence of float, optional
        Voxel size.

    Returns
    -------
    ndarray of float32
        Response scaled so that its maximum (inside the roi) is 1.

    Examples
    --------
    >>> x = np.ones((32, 32)); x[:, 15:18] = 0.0  # a dark vertical vessel
    >>> v = vesselness(x, sigmas=(1.0, 2.0))
    >>> bool(v[16, 16] > 0.5), bool(v[16, 4] < 0.05)
    (True, True)
    """
    img = as_scalar(image, spacing, "vesselness")
    if method not in _FILTERS:
        raise MedsegError(f"method must be one of {', '.join(_FILTERS)}; got {method!r}")
    roi = check_roi(roi, img.array.shape)
    if np.ndim(sigmas) == 0:
        sigmas = (float(sigmas),)  # type: ignore[assignment]
    if len(sigmas) == 0:
        raise MedsegError("sigmas must list at least one scale")
    iso = float(np.prod(img.spacing) ** (1.0 / img.ndim))
    scales = [float(s) for s in to_voxels(np.asarray(sigmas, float), (iso,) * len(sigmas), "sigmas")]
    if any(s <= 0 for s in scales):
        raise MedsegError(f"sigmas must be > 0; got {list(sigmas)}")
    array = img.array.astype(np.float64)
    if roi is not None:
        array = _fill_outside(array, roi)
    black = not check_polarity(polarity)
    response = _FILTERS[method](array, sigmas=scales, black_ridges=black, mode="reflect")
    if roi is not None:
        response = np.where(roi, response, 0.0)
    top = float(response.max())
    if top > 0:
        response = response / top
    return response.astype(np.float32)


def _segment(image, sigmas, threshold, fraction, method, polarity, roi, spacing, name):
    score = vesselness(image, sigmas, method=method, polarity=polarity, roi=roi, spacing=spacing)
    m = check_roi(roi, score.shape)
    inside = score[m] if m is not None else score.ravel()
    if threshold is not None and fraction is not None:
        raise MedsegError(f"{name}: give threshold or fraction, not both")
    if fraction is not None:
        if not 0.0 < fraction < 1.0:
            raise MedsegError(f"{name}: fraction must lie in (0, 1); got {fraction}")
        # p-tile thresholding (Doyle 1962): the object is known to cover about this share of the roi.
        threshold = float(np.quantile(inside, 1.0 - fraction))
    elif threshold is None:
        threshold = otsu_value(inside)
    elif not 0.0 <= threshold <= 1.0:
        raise MedsegError(f"{name}: threshold applies to the [0, 1] vesselness; got {threshold}")
    return finish(score > threshold, m)


@register("frangi", family="vesselness", colour_channel=1,
          summary="Frangi vesselness + Otsu (or --threshold) on the response; green channel on colour input")
def segment_frangi(
    image: np.ndarray | Image,
    sigmas: Sequence[float] = (1.0, 2.0, 3.0),
    *,
    threshold: float | None = None,
    fraction: float | None = None,
    polarity: str = "dark",
    roi: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Vessels as the Frangi vesselness above a threshold (Otsu's, inside the roi, by default).

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray or one-channel Image
        Grey-level image.
    sigmas : sequence of float
        Hessian scales in mm.
    threshold : float, optional
        Threshold on the [0, 1] response; default Otsu's.
    fraction : float, optional
        Instead of a threshold, label this share of the (masked) voxels with the highest response
        (p-tile thresholding; about 0.12 for retinal vessels in the field of view).
    polarity : {"dark", "bright"}
        Vessel polarity.
    roi : ndarray of bool, optional
        Field of view.
    spacing : sequence of float, optional
        Voxel size.

    Returns
    -------
    ndarray of uint8
        0/1 vessel map.

    Examples
    --------
    >>> x = np.ones((32, 32)); x[:, 15:18] = 0.0
    >>> lab = segment_frangi(x, sigmas=(1.0, 2.0))
    >>> bool(lab[16, 16]), bool(lab[16, 4])
    (True, False)
    """
    return _segment(image, sigmas, threshold, fraction, "frangi", polarity, roi, spacing, "frangi")


@register("sato", family="vesselness", colour_channel=1,
          summary="Sato tubeness + Otsu (or --threshold) on the response; green channel on colour input")
def segment_sato(
    image: np.ndarray | Image,
    sigmas: Sequence[float] = (1.0, 2.0, 3.0),
    *,
    threshold: float | None = None,
    fraction: float | None = None,
    polarity: str = "dark",
    roi: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Vessels as the Sato tubeness above a threshold (Otsu's, inside the roi, by default).

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray or one-channel Image
        Grey-level image.
    sigmas : sequence of float
        Hessian scales in mm.
    threshold : float, optional
        Threshold on the [0, 1] response; default Otsu's.
    fraction : float, optional
        Instead of a threshold, label this share of the (masked) voxels with the highest response
        (p-tile thresholding; about 0.12 for retinal vessels in the field of view).
    polarity : {"dark", "bright"}
        Vessel polarity.
    roi : ndarray of bool, optional
        Field of view.
    spacing : sequence of float, optional
        Voxel size.

    Returns
    -------
    ndarray of uint8
        0/1 vessel map.

    Examples
    --------
    >>> x = np.ones((32, 32)); x[:, 15:18] = 0.0
    >>> lab = segment_sato(x, sigmas=(1.0, 2.0))
    >>> bool(lab[16, 16]), bool(lab[16, 4])
    (True, False)
    """
    return _segment(image, sigmas, threshold, fraction, "sato", polarity, roi, spacing, "sato")
