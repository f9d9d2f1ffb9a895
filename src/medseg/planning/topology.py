"""U-Net topology per axis from spacing and patch size (the nnU-Net rule, written out).

Rule (pooling): starting from the target spacing and the patch size, a level may halve an axis only
while (a) the feature map along that axis stays at least ``min_feature_map`` voxels after halving and
(b) the axis' current spacing is within 2× of the finest current spacing among the axes that (a) still
allows to pool; a single remaining axis is pooled only while it is at least 3 × ``min_feature_map``. Thick-slice axes therefore
are not pooled until in-plane pooling has made the in-plane spacing comparable; they then join.

Rule (kernels): an axis gets kernel size 3 at a level once its current spacing is within 2× of the
finest one; before that it gets 1, because a 3-wide kernel across 5–10 mm slices mixes anatomy that
does not belong together. Once an axis has received 3 it keeps 3 at all deeper levels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: Most resolution levels a U-Net may have (nnU-Net's limits: 7 in 2D, 6 in 3D incl. the first).
MAX_LEVELS = {2: 7, 3: 6}


def network_topology(
    spacing: Sequence[float],
    patch_size: Sequence[int],
    min_feature_map: int = 4,
    max_levels: int | None = None,
) -> tuple[list[list[int]], list[list[int]]]:
    """Strides and kernel sizes per level and axis for a U-Net on ``patch_size`` voxels of ``spacing``.

    Parameters
    ----------
    spacing : sequence of float
        Voxel size per axis (mm) of the network input (the target spacing; 1 for 2D photographs).
    patch_size : sequence of int
        Patch size per axis.
    min_feature_map : int
        Smallest size an axis may reach at the bottom of the U-Net.
    max_levels : int, optional
        Most levels (including the full-resolution one). Default 7 in 2D, 6 in 3D.

    Returns
    -------
    strides : list of list of int
        ``strides[l][a]`` is the downsampling factor entering level ``l`` along axis ``a``
        (``strides[0]`` is all ones).
    kernel_sizes : list of list of int
        ``kernel_sizes[l][a]`` is 3 or 1.

    Examples
    --------
    >>> strides, kernels = network_topology((5.0, 1.25, 1.25), (16, 160, 160))
    >>> strides[1], kernels[0]
    ([1, 2, 2], [1, 3, 3])
    """
    dims = len(spacing)
    if len(patch_size) != dims:
        raise ValueError(f"spacing {tuple(spacing)} and patch_size {tuple(patch_size)} differ in length")
    max_levels = max_levels or MAX_LEVELS.get(dims, 6)
    current_spacing = np.asarray(spacing, dtype=float)
    current_size = np.asarray(patch_size, dtype=float)
    strides: list[list[int]] = [[1] * dims]
    kernel_sizes: list[list[int]] = []
    has_kernel3 = np.zeros(dims, bool)
    while True:
        has_kernel3 |= current_spacing / current_spacing.min() < 2
        kernel_sizes.append([3 if k else 1 for k in has_kernel3])
        if len(strides) >= max_levels:
            break
        # Axes too small to halve drop out first, so that the finest spacing is judged among the axes
        # that can still be pooled (else a short, fine axis would block the others forever).
        big_enough = current_size / 2 >= min_feature_map
        if not big_enough.any():
            break
        finest = current_spacing[big_enough].min()
        poolable = big_enough & (current_spacing / finest < 2)
        # Pooling a single axis alone is only worth it while it stays well above the minimum (nnU-Net).
        if poolable.sum() == 1 and current_size[poolable][0] < 3 * min_feature_map:
            break
        stride = [2 if p else 1 for p in poolable]
        strides.append(stride)
        current_spacing = current_spacing * np.asarray(stride)
        current_size = current_size / np.asarray(stride)
    return strides, kernel_sizes


def divisibility(strides: Sequence[Sequence[int]]) -> list[int]:
    """Per axis, the number the patch size must be divisible by (product of the strides)."""
    return [int(v) for v in np.prod(np.asarray(strides, dtype=int), axis=0)]
