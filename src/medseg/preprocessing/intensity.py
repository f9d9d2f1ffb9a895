"""Intensity normalisation: z-score, percentile and fixed clipping, CT windowing, min-max rescaling, gamma.

Every function takes a numpy array and returns a new float array of the same shape. With
``channel_axis=None`` (scikit-image's convention) the array is one channel; with ``channel_axis=0``
(medseg's channels-first arrays) each channel is normalised with its own statistics. ``mask`` (spatial
shape, boolean) restricts where statistics are *computed*; the result is applied to every voxel.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from medseg.errors import MedsegError
from medseg.preprocessing._channels import (apply_per_channel, as_float, num_channels, per_channel_values,
                                            pooled_channel_values)

_EPS = 1e-8


def zscore(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    channel_axis: int | None = None,
) -> np.ndarray:
    """Subtract the mean and divide by the standard deviation.

    Parameters
    ----------
    image : ndarray
        Input intensities.
    mask : ndarray of bool, optional
        Spatial mask (e.g. foreground or field of view); statistics come from inside it only.
    mean, std : float or sequence of float, optional
        Fixed statistics (one value, or one per channel), e.g. fitted on the training set for CT.
        When given they are used instead of the image's own statistics.
    channel_axis : int, optional
        Axis holding channels, normalised independently. None: the array is a single channel.

    Returns
    -------
    ndarray
        Float array; inside ``mask`` it has mean 0 and standard deviation 1 (for image statistics).

    Examples
    --------
    >>> out = zscore(np.array([1.0, 2.0, 3.0]))
    >>> np.round(out, 3).tolist()
    [-1.225, 0.0, 1.225]
    """
    image = as_float(image)
    n = num_channels(image, channel_axis)
    means = per_channel_values(mean, n, "mean") if mean is not None else [None] * n
    stds = per_channel_values(std, n, "std") if std is not None else [None] * n
    if any(s is not None and s <= 0 for s in stds):
        raise MedsegError(f"std must be positive; got {std}")

    def one(x, m, mu, sd):
        values = x[m] if m is not None else x
        mu = float(values.mean(dtype=np.float64)) if mu is None else mu
        sd = float(values.std(dtype=np.float64)) if sd is None else sd
        return (x - mu) / max(sd, _EPS)

    return apply_per_channel(one, image, channel_axis, mask, mu=means, sd=stds)


def clip_percentiles(
    image: np.ndarray,
    lower: float = 0.5,
    upper: float = 99.5,
    mask: np.ndarray | None = None,
    channel_axis: int | None = None,
) -> np.ndarray:
    """Clip intensities to the image's own ``lower`` and ``upper`` percentiles.

    Parameters
    ----------
    image : ndarray
        Input intensities.
    lower, upper : float
        Percentiles in [0, 100], ``lower < upper``.
    mask : ndarray of bool, optional
        Percentiles are computed inside the mask only.
    channel_axis : int, optional
        Axis holding channels, clipped independently.

    Returns
    -------
    ndarray
        Clipped float array.

    Examples
    --------
    >>> float(clip_percentiles(np.arange(101.0), 10, 90).min())
    10.0
    """
    if not 0 <= lower < upper <= 100:
        raise MedsegError(f"percentiles must satisfy 0 <= lower < upper <= 100; got {lower}, {upper}")
    image = as_float(image)

    def one(x, m):
        lo, hi = np.percentile(x[m] if m is not None else x, [lower, upper])
        return np.clip(x, lo, hi)

    return apply_per_channel(one, image, channel_axis, mask)


def clip(
    image: np.ndarray,
    low: float | Sequence[float],
    high: float | Sequence[float],
    channel_axis: int | None = None,
) -> np.ndarray:
    """Clip to fixed bounds (one pair, or one per channel), e.g. dataset percentiles fitted at training.

    Examples
    --------
    >>> clip(np.array([-5.0, 0.0, 5.0]), -1, 1).tolist()
    [-1.0, 0.0, 1.0]
    """
    image = as_float(image)
    n = num_channels(image, channel_axis)
    lows, highs = per_channel_values(low, n, "low"), per_channel_values(high, n, "high")
    if any(lo >= hi for lo, hi in zip(lows, highs)):
        raise MedsegError(f"clip bounds must satisfy low < high; got low={low}, high={high}")
    return apply_per_channel(lambda x, m, lo, hi: np.clip(x, lo, hi), image, channel_axis, None, lo=lows, hi=highs)


def window(
    image: np.ndarray,
    level: float | Sequence[float],
    width: float | Sequence[float],
    output: str = "unit",
    channel_axis: int | None = None,
) -> np.ndarray:
    """CT windowing: clip to ``[level - width/2, level + width/2]``.

    Parameters
    ----------
    image : ndarray
        Intensities, e.g. Hounsfield units.
    level, width : float or sequence of float
        Window centre and width (one value, or one per channel). Soft tissue is level 40, width 400.
    output : {"unit", "clip"}
        "unit" maps the window linearly to [0, 1]; "clip" keeps the original units.
    channel_axis : int, optional
        Axis holding channels.

    Returns
    -------
    ndarray
        Windowed float array.

    Examples
    --------
    >>> window(np.array([-1000.0, 40.0, 1000.0]), level=40, width=400).tolist()
    [0.0, 0.5, 1.0]
    """
    if output not in ("unit", "clip"):
        raise MedsegError(f"window output must be 'unit' or 'clip'; got {output!r}")
    image = as_float(image)
    n = num_channels(image, channel_axis)
    levels, widths = per_channel_values(level, n, "level"), per_channel_values(width, n, "width")
    if any(w <= 0 for w in widths):
        raise MedsegError(f"window width must be positive; got {width}")

    def one(x, m, lv, wd):
        lo = lv - wd / 2.0
        out = np.clip(x, lo, lv + wd / 2.0)
        return (out - lo) / wd if output == "unit" else out

    return apply_per_channel(one, image, channel_axis, None, lv=levels, wd=widths)


def rescale(
    image: np.ndarray,
    out_range: tuple[float, float] = (0.0, 1.0),
    mask: np.ndarray | None = None,
    channel_axis: int | None = None,
) -> np.ndarray:
    """Min-max rescaling of the intensities (minimum and maximum taken inside ``mask``) to ``out_range``.

    Values outside the mask that exceed the masked range fall outside ``out_range``; clip afterwards
    if that matters. A constant image maps to ``out_range[0]``.

    Examples
    --------
    >>> rescale(np.array([2.0, 4.0, 6.0])).tolist()
    [0.0, 0.5, 1.0]
    """
    lo_out, hi_out = (float(v) for v in out_range)
    if not lo_out < hi_out:
        raise MedsegError(f"out_range must be increasing; got {out_range}")
    image = as_float(image)

    def one(x, m):
        values = x[m] if m is not None else x
        lo, hi = float(values.min()), float(values.max())
        return lo_out + (x - lo) * ((hi_out - lo_out) / max(hi - lo, _EPS))

    return apply_per_channel(one, image, channel_axis, mask)


def gamma(image: np.ndarray, gamma: float, mask: np.ndarray | None = None, channel_axis: int | None = None) -> np.ndarray:
    """Gamma correction that keeps the intensity range.

    The image is mapped to [0, 1] by its own minimum and maximum (inside ``mask``), raised to ``gamma``
    and mapped back, so it works on any range (unlike a plain power, which needs non-negative input);
    values outside the masked range are clipped to it first.

    Examples
    --------
    >>> gamma(np.array([0.0, 0.25, 1.0]), 0.5).tolist()
    [0.0, 0.5, 1.0]
    """
    if not gamma > 0:
        raise MedsegError(f"gamma must be positive; got {gamma}")
    image = as_float(image)

    def one(x, m):
        values = x[m] if m is not None else x
        lo, hi = float(values.min()), float(values.max())
        span = max(hi - lo, _EPS)
        unit = np.clip((x - lo) / span, 0.0, 1.0)
        return lo + np.power(unit, gamma) * span

    return apply_per_channel(one, image, channel_axis, mask)


def fit_intensity_statistics(
    images,
    masks=None,
    lower: float = 0.5,
    upper: float = 99.5,
    channel_axis: int | None = None,
) -> dict[str, list[float]]:
    """Dataset statistics for fixed normalisation (nnU-Net's CT scheme), fitted on training images.

    Pools the voxels (inside each mask) of all images per channel and returns the ``lower``/``upper``
    percentiles and the mean and standard deviation of the values clipped to them. Feed them to the
    ``clip`` and ``zscore`` pipeline steps so prediction repeats exactly the training normalisation.

    Parameters
    ----------
    images : iterable of ndarray
        Training images with the same channel layout.
    masks : iterable of ndarray or None, optional
        One spatial mask per image (e.g. the foreground label).
    lower, upper : float
        Percentiles in [0, 100].
    channel_axis : int, optional
        Axis holding channels.

    Returns
    -------
    dict
        ``{"low": [...], "high": [...], "mean": [...], "std": [...]}``, one value per channel.

    Examples
    --------
    >>> s = fit_intensity_statistics([np.arange(101.0)], lower=0, upper=100)
    >>> s["low"], s["high"], s["mean"]
    ([0.0], [100.0], [50.0])
    """
    if not 0 <= lower < upper <= 100:
        raise MedsegError(f"percentiles must satisfy 0 <= lower < upper <= 100; got {lower}, {upper}")
    pooled = pooled_channel_values(images, masks, channel_axis, "fit_intensity_statistics")
    stats: dict[str, list[float]] = {"low": [], "high": [], "mean": [], "std": []}
    for v in pooled:
        lo, hi = np.percentile(v, [lower, upper])
        clipped = np.clip(v, lo, hi)
        stats["low"].append(float(lo))
        stats["high"].append(float(hi))
        stats["mean"].append(float(clipped.mean()))
        stats["std"].append(float(clipped.std()))
    return stats
