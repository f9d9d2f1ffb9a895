"""Shared helpers: apply a single-channel function per channel, check masks and per-channel values."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from medseg.errors import MedsegError


def check_mask(mask: np.ndarray | None, spatial_shape: tuple[int, ...], name: str = "mask") -> np.ndarray | None:
    """Return ``mask`` as a boolean array of ``spatial_shape`` (a leading channel axis of 1 is dropped)."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.ndim == len(spatial_shape) + 1 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.shape != tuple(spatial_shape):
        raise MedsegError(f"{name} of shape {mask.shape} does not match the image's spatial shape {tuple(spatial_shape)}")
    mask = mask.astype(bool, copy=False)
    if not mask.any():
        raise MedsegError(f"{name} is empty: no voxel to compute statistics from")
    return mask


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
