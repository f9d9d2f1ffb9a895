"""The shape of the labelled structures, measured on the training labels.

How thin they are (the share of foreground voxels on their own boundary): two stages decide by it — the
planner (a coarser grid would erase a structure a few voxels wide) and the run's training rules (foreground
share, augmentation, threshold metric for vessels vs organs). How much they continue from one slice of a stack
to the next: the planner's configuration rule (2D slices or a 3D network). Each measurement and its threshold
live here, once.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from medseg.constants import ANISOTROPY_RATIO, SLICE_SHAPE_RATIO

THIN_BOUNDARY_SHARE = 0.5             # foreground share within 2 voxels of its boundary above which it is thin
BOUNDARY_DEPTH = 2                    # measured: DRIVE vessels 0.76, ACDC heart 0.12, LA atrium 0.22
#: Overlap of the labels on neighbouring slices (:func:`slice_continuity`) from which structures continue across
#: a stack's slices: PROMISE12's prostate 0.88 (slices 2.2–4 mm apart), ACDC's heart 0.76 (5–10 mm), halfway.
CONTINUOUS_SLICES = 0.82


def _slice_axis(shape: Sequence[int], spacing: Sequence[float] | None, slice_axis: int | None) -> int | None:
    """The axis across which a volume is a stack of slices: the network's slice axis, a thick-slice axis
    (spacing > 3 × the finest), or an axis with 4× fewer voxels than the others (a short stack whose
    recorded spacing may not say so); None for a volume to erode in 3D."""
    if slice_axis is not None:
        return slice_axis
    if spacing is not None:
        sp = np.asarray(spacing, float)
        if sp.max() > ANISOTROPY_RATIO * sp.min():
            return int(np.argmax(sp))
    fewest = int(np.argmin(shape))
    others = [s for a, s in enumerate(shape) if a != fewest]
    return fewest if min(others) > SLICE_SHAPE_RATIO * shape[fewest] else None


def boundary_share(labels: Sequence[np.ndarray], spacings: Sequence[Sequence[float]] | None = None,
                   depth: int = BOUNDARY_DEPTH, slice_axis: int | None = None) -> float:
    """Share of foreground voxels within ``depth`` voxels of the foreground's boundary (removed by
    ``depth`` erosions).

    Near 1 for vessels a few pixels wide (DRIVE: 0.76), small for organs (ACDC: 0.12). In a stack of
    slices (see :func:`_slice_axis`) the erosion stays within slices, where the first and last slice of a
    structure are not its boundary.

    Examples
    --------
    >>> line = np.zeros((20, 20), int); line[9:12, 2:18] = 1
    >>> disc = np.zeros((30, 30), int); disc[4:26, 4:26] = 1
    >>> boundary_share([line]), round(boundary_share([disc]), 2)
    (1.0, 0.33)
    """
    from scipy import ndimage

    total = edge = 0
    for i, label in enumerate(labels):
        fg = np.asarray(label) > 0
        if not fg.any():
            continue
        structure = ndimage.generate_binary_structure(fg.ndim, 1)
        if fg.ndim == 3:
            axis = _slice_axis(fg.shape, spacings[i] if spacings is not None else None, slice_axis)
            if axis is not None:
                structure = structure.copy()
                idx = [1, 1, 1]
                for k in (0, 2):
                    idx[axis] = k
                    structure[tuple(idx)] = False
        inner = ndimage.binary_erosion(fg, structure, iterations=depth, border_value=1)
        total += int(fg.sum())
        edge += int((fg & ~inner).sum())
    return edge / total if total else 0.0


def slice_continuity(label: np.ndarray, spacing: Sequence[float] | None = None,
                     ignore_label: int | None = None) -> float | None:
    """How much each labelled structure continues from one slice of a stack to the next.

    The Dice coefficient between a label's masks on neighbouring slices (over the pairs of slices that both
    hold it), its median over the pairs, the mean over the labels. None when the volume is not a stack of
    slices (:func:`_slice_axis`) or no label spans two slices. Near 1 where slices lie close together for the
    structure's size (PROMISE12's prostate: 0.88 median over cases), lower where the next slice shows another
    part of it (ACDC's heart, slices 5–10 mm apart: 0.76).

    Examples
    --------
    >>> cone = np.zeros((6, 40, 40), int)
    >>> for z in range(6): cone[z, 20 - 3 * z:20 + 3 * z + 1, 20 - 3 * z:20 + 3 * z + 1] = 1
    >>> round(slice_continuity(cone), 2), slice_continuity(cone[:, :, :10]) is None
    (0.64, True)
    """
    label = np.asarray(label)
    if label.ndim != 3:
        return None
    axis = _slice_axis(label.shape, spacing, None)
    if axis is None:
        return None
    stack = np.moveaxis(label, axis, 0)
    per_label = []
    for value in np.unique(stack):
        if value == 0 or value == ignore_label:
            continue
        areas = (stack == value).reshape(len(stack), -1)
        size = areas.sum(axis=1)
        both = (size[:-1] > 0) & (size[1:] > 0)
        if both.any():
            common = (areas[:-1] & areas[1:]).sum(axis=1)
            per_label.append(float(np.median(2 * common[both] / (size[:-1] + size[1:])[both])))
    return float(np.mean(per_label)) if per_label else None


def is_thin(share: float) -> bool:
    """Structures are thin (vessels, nerves, membranes) when at least half their voxels lie within
    :data:`BOUNDARY_DEPTH` voxels of their own boundary (:func:`boundary_share`)."""
    return share >= THIN_BOUNDARY_SHARE
