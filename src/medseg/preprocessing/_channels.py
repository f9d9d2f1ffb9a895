"""Shared helpers: apply a single-channel function per channel, check masks and per-channel values."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

from medseg.errors import MedsegError
from medseg.image import check_mask


def per_channel_values(value: float | Sequence[float], num_channels: int, name: str) -> list[float]:
    """Broadcast a scalar or a one-per-channel list to ``num_channels`` floats."""
    if np.ndim(value) == 0:
        return [float(value)] * num_channels
    values = [float(v) for v in value]
    if len(values) != num_channels:
        raise MedsegError(f"{name} has {len(values)} values for {num_channels} channels")
    return values


def apply_per_channel(
    func: Callable[..., np.ndarray],
    image: np.ndarray,
    channel_axis: int | None,
    mask: np.ndarray | None = None,
    **per_channel_kwargs: Sequence,
) -> np.ndarray:
    """Call ``func(channel, mask, **kwargs_for_that_channel)`` on each channel and stack the results.

    ``per_channel_kwargs`` holds one value per channel (lists); with ``channel_axis=None`` the whole
    array is one channel and each list must have length 1.
    """
    image = np.asarray(image)
    if channel_axis is None:
        spatial = image.shape
        mask = check_mask(mask, spatial)
        return func(image, mask, **{k: v[0] for k, v in per_channel_kwargs.items()})
    axis = channel_axis % image.ndim
    moved = np.moveaxis(image, axis, 0)
    mask = check_mask(mask, moved.shape[1:])
    out = [
        func(moved[c], mask, **{k: v[c] for k, v in per_channel_kwargs.items()})
        for c in range(moved.shape[0])
    ]
    return np.moveaxis(np.stack(out), 0, axis)


def num_channels(image: np.ndarray, channel_axis: int | None) -> int:
    return 1 if channel_axis is None else int(np.asarray(image).shape[channel_axis])


def as_float(image: np.ndarray) -> np.ndarray:
    """Float copy-free view where possible; integers become float32 (enough for 16-bit scanners)."""
    image = np.asarray(image)
    return image if np.issubdtype(image.dtype, np.floating) else image.astype(np.float32)


def pooled_channel_values(
    images: Iterable[np.ndarray],
    masks: Iterable[np.ndarray | None] | None,
    channel_axis: int | None,
    caller: str,
) -> list[np.ndarray]:
    """Every voxel value (inside each image's mask) of a set of images, pooled per channel as float64.

    ``caller`` names the public function in error messages.
    """
    images = [np.asarray(i) for i in images]
    if not images:
        raise MedsegError(f"{caller} needs at least one image")
    masks = list(masks) if masks is not None else [None] * len(images)
    if len(masks) != len(images):
        raise MedsegError(f"{caller}: {len(masks)} masks for {len(images)} images")
    n = num_channels(images[0], channel_axis)
    pooled: list[list[np.ndarray]] = [[] for _ in range(n)]
    for img, m in zip(images, masks):
        if num_channels(img, channel_axis) != n:
            raise MedsegError(f"{caller}: all images must have the same number of channels")
        chans = [img] if channel_axis is None else list(np.moveaxis(img, channel_axis, 0))
        m = check_mask(m, chans[0].shape)
        for c, x in enumerate(chans):
            pooled[c].append((x[m] if m is not None else x.ravel()).astype(np.float64))
    return [np.concatenate(values) for values in pooled]
