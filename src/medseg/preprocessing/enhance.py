"""Contrast enhancement and site harmonisation: CLAHE and histogram matching (scikit-image)."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from skimage import exposure

from medseg.errors import MedsegError
from medseg.preprocessing._channels import apply_per_channel, as_float, num_channels, pooled_channel_values


def clahe(
    image: np.ndarray,
    clip_limit: float = 0.01,
    kernel_size: int | Sequence[int] | None = None,
    nbins: int = 256,
    mask: np.ndarray | None = None,
    channel_axis: int | None = None,
) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation, 2D or 3D (``skimage.exposure.equalize_adapthist``).

    Each channel is first mapped to [0, 1] by its minimum and maximum (inside ``mask``) because
    scikit-image accepts floats only in that range; the result lies in [0, 1]. Channels are equalised
    independently (scikit-image's own colour handling equalises the HSV value instead, which would
    mix channels).

    Parameters
    ----------
    image : ndarray
        2D or 3D intensities (per channel).
    clip_limit : float
        Contrast limit in (0, 1]; higher gives more contrast.
    kernel_size : int or sequence of int, optional
        Context region size; default 1/8 of each dimension.
    nbins : int
        Number of grey bins.
    mask : ndarray of bool, optional
        Region whose range defines the [0, 1] mapping (e.g. a fundus field of view).
    channel_axis : int, optional
        Axis holding channels.

    Returns
    -------
    ndarray
        Float array in [0, 1].

    Examples
    --------
    >>> x = np.linspace(0, 1, 64 * 64).reshape(64, 64) ** 3
    >>> out = clahe(x)
    >>> float(out.min()) >= 0 and float(out.max()) <= 1
    True
    """
    if not 0 < clip_limit <= 1:
        raise MedsegError(f"clip_limit must be in (0, 1]; got {clip_limit}")
    image = as_float(image)

    def one(x, m):
        values = x[m] if m is not None else x
        lo, hi = float(values.min()), float(values.max())
        unit = np.clip((x - lo) / max(hi - lo, 1e-8), 0.0, 1.0)
        return exposure.equalize_adapthist(unit, kernel_size=kernel_size, clip_limit=clip_limit, nbins=nbins)

    return apply_per_channel(one, image, channel_axis, mask)


def histogram_reference(
    images: Iterable[np.ndarray],
    n_quantiles: int = 256,
    masks: Iterable[np.ndarray | None] | None = None,
    channel_axis: int | None = None,
) -> list[list[float]]:
    """Fit a histogram-matching reference: intensity quantiles of training images, per channel.

    The reference is stored as ``n_quantiles`` values per channel (JSON-friendly), so a model folder
    records it and prediction matches to exactly the same target.

    Parameters
    ----------
    images : iterable of ndarray
        Training images (same number of channels).
    n_quantiles : int
        Number of evenly spaced quantiles (0 to 100 %).
    masks : iterable of ndarray, optional
        One spatial mask (or None) per image; only voxels inside contribute.
    channel_axis : int, optional
        Axis holding channels.

    Returns
    -------
    list of list of float
        ``reference[c]`` is the quantile list of channel ``c``.

    Examples
    --------
    >>> ref = histogram_reference([np.arange(11.0)], n_quantiles=3)
    >>> ref
    [[0.0, 5.0, 10.0]]
    """
    if n_quantiles < 2:
        raise MedsegError(f"n_quantiles must be at least 2; got {n_quantiles}")
    pooled = pooled_channel_values(images, masks, channel_axis, "histogram_reference")
    q = np.linspace(0, 100, n_quantiles)
    return [np.percentile(v, q).tolist() for v in pooled]


def match_histograms(
    image: np.ndarray,
    reference: np.ndarray | Sequence[float] | Sequence[Sequence[float]],
    mask: np.ndarray | None = None,
    channel_axis: int | None = None,
) -> np.ndarray:
    """Map intensities so that their histogram matches a reference (``skimage.exposure.match_histograms``).

    Parameters
    ----------
    image : ndarray
        Image to adjust.
    reference : ndarray or list
        A reference image with the same channel layout, or quantiles from :func:`histogram_reference`
        (a list of values for a single channel, a list of lists with one list per channel).
    mask : ndarray of bool, optional
        Only voxels inside the mask define the source histogram (e.g. a fundus field of view, whose
        black surround would otherwise dominate); the fitted monotone mapping is applied everywhere.
    channel_axis : int, optional
        Axis holding channels.

    Returns
    -------
    ndarray
        Float array whose histogram (inside ``mask``) follows the reference.

    Examples
    --------
    >>> out = match_histograms(np.array([0.0, 1.0, 2.0]), [10.0, 20.0, 30.0])
    >>> out.tolist()
    [10.0, 20.0, 30.0]
    """
    image = as_float(image)
    n = num_channels(image, channel_axis)
    if isinstance(reference, np.ndarray) and reference.ndim == image.ndim and channel_axis is not None:
        refs = [r.ravel() for r in np.moveaxis(reference, channel_axis, 0)]
    elif isinstance(reference, np.ndarray) and channel_axis is None:
        refs = [reference.ravel()]
    else:
        ref = [np.asarray(r, dtype=np.float64) for r in reference] if np.ndim(reference) == 2 else [np.asarray(reference, dtype=np.float64)]
        refs = [r.ravel() for r in ref]
    if len(refs) != n:
        raise MedsegError(f"histogram reference has {len(refs)} channels, the image {n}")
    if any(r.size < 2 or not np.all(np.isfinite(r)) for r in refs):
        raise MedsegError("histogram reference must hold at least 2 finite values per channel")

    def one(x, m, ref):
        if m is None:
            # scikit-image wants equal ndim; the reference's shape is otherwise irrelevant
            return exposure.match_histograms(x, ref.reshape((-1,) + (1,) * (x.ndim - 1)))
        # scikit-image has no mask: match the masked voxels, then extend that monotone mapping to all.
        src = x[m]
        matched = exposure.match_histograms(src, ref)
        order = np.argsort(src, kind="stable")
        xs, ys = src[order], matched[order]
        xs, first = np.unique(xs, return_index=True)
        return np.interp(x, xs, ys[first]) if xs.size > 1 else np.full_like(x, ys[0])

    return apply_per_channel(one, image, channel_axis, mask, ref=refs)
