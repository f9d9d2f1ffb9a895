"""Patch sampling: a configurable share of patches centred on foreground, the rest uniform, centres
restricted to the region of interest when there is one; 2D and 3D alike.

Thin or rare structures (retinal vessels, small lesions) starve under uniform sampling; nnU-Net forces a
third of the patches onto foreground. Here the share is a parameter, the foreground class is drawn
uniformly among the classes present in the case (so a rare class gets as many patches as a common one),
and a patch larger than the image is padded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class SamplingIndex:
    """Voxel coordinates from which patch centres are drawn (computed once per case).

    Attributes
    ----------
    foreground : dict
        Class index -> ``(n, D)`` int array of voxel coordinates of that class (inside the ROI).
    roi : ndarray or None
        ``(n, D)`` coordinates inside the ROI, or None (uniform over the whole image).
    shape : tuple of int
        Spatial shape of the case.
    """

    foreground: dict[int, np.ndarray]
    roi: np.ndarray | None
    shape: tuple[int, ...]


def build_sampling_index(
    label: np.ndarray,
    roi: np.ndarray | None = None,
    *,
    ignore_index: int | None = None,
    max_per_class: int = 20000,
    seed: int = 0,
) -> SamplingIndex:
    """Precompute candidate centres for one case.

    Parameters
    ----------
    label : ndarray
        Class indices, ``(*S)`` or ``(1, *S)``; 0 is background.
    roi : ndarray of bool, optional
        Region of interest of the same shape; centres are drawn inside it.
    ignore_index : int, optional
        Class value of unlabelled voxels. They are never a centre: in a sparsely annotated case
        (a few labelled slices) a centre drawn anywhere would mostly give a patch that trains nothing.
    max_per_class : int
        Coordinates kept per class (random subset) so that large 3D cases stay cheap in RAM.
    seed : int
        For the subset.

    Returns
    -------
    SamplingIndex
    """
    label = np.asarray(label)
    if label.ndim >= 2 and label.shape[0] == 1 and roi is not None and np.asarray(roi).ndim == label.ndim - 1:
        label = label[0]
    elif label.ndim >= 3 and label.shape[0] == 1:
        label = label[0]
    roi_mask = None if roi is None else np.asarray(roi).reshape(label.shape).astype(bool)
    if ignore_index is not None:
        labelled = label != ignore_index
        if labelled.any() and not labelled.all():
            roi_mask = labelled if roi_mask is None else roi_mask & labelled
    rng = np.random.default_rng(seed)

    def subset(coords: np.ndarray) -> np.ndarray:
        if len(coords) > max_per_class:
            coords = coords[np.sort(rng.choice(len(coords), max_per_class, replace=False))]
        return coords.astype(np.int32)

    foreground = {}
    valid = label > 0
    if ignore_index is not None:
        valid &= label != ignore_index
    if roi_mask is not None:
        valid &= roi_mask
    for cls in np.unique(label[valid]):
        foreground[int(cls)] = subset(np.argwhere(valid & (label == cls)))
    roi_coords = None
    if roi_mask is not None and roi_mask.any() and not roi_mask.all():
        roi_coords = subset(np.argwhere(roi_mask))
    return SamplingIndex(foreground, roi_coords, tuple(label.shape))


def choose_centre(index: SamplingIndex, rng: np.random.Generator, foreground_share: float) -> np.ndarray:
    """One patch centre: on foreground with probability ``foreground_share``, else uniform (in the ROI).

    Examples
    --------
    >>> lab = np.zeros((20, 20), int); lab[5, 7] = 1
    >>> idx = build_sampling_index(lab)
    >>> choose_centre(idx, np.random.default_rng(0), 1.0).tolist()
    [5, 7]
    """
    if index.foreground and rng.random() < foreground_share:
        classes = sorted(index.foreground)
        coords = index.foreground[classes[rng.integers(len(classes))]]
        return coords[rng.integers(len(coords))].astype(np.int64)
    if index.roi is not None:
        return index.roi[rng.integers(len(index.roi))].astype(np.int64)
    return np.array([rng.integers(s) for s in index.shape], dtype=np.int64)


def patch_start(
    centre: Sequence[int], shape: Sequence[int], patch_size: Sequence[int], rng: np.random.Generator
) -> np.ndarray:
    """Start corner of a patch around ``centre``, kept inside the image where the image is large enough.

    Where the image is smaller than the patch along an axis, the start is negative (the patch is padded)
    and placed at random so that the image may sit anywhere inside the patch.
    """
    start = np.empty(len(shape), dtype=np.int64)
    for axis, (c, s, p) in enumerate(zip(centre, shape, patch_size)):
        if s >= p:
            start[axis] = min(max(int(c) - p // 2, 0), s - p)
        else:
            start[axis] = -int(rng.integers(0, p - s + 1))
    return start


def crop_with_padding(
    array: np.ndarray, start: Sequence[int], patch_size: Sequence[int], pad_value: float = 0
) -> np.ndarray:
    """The box ``[start, start + patch_size)`` of the trailing spatial axes of ``array``; outside is padded.

    Parameters
    ----------
    array : ndarray
        ``(C, *S)``.
    start : sequence of int
        May be negative or run past the end.
    patch_size : sequence of int
    pad_value : float
        Fill value outside the image.

    Returns
    -------
    ndarray
        ``(C, *patch_size)``, same dtype.
    """
    d = len(patch_size)
    shape = array.shape[-d:]
    out = np.full(array.shape[:-d] + tuple(patch_size), pad_value, dtype=array.dtype)
    src, dst = [], []
    for st, p, s in zip(start, patch_size, shape):
        lo, hi = max(int(st), 0), min(int(st) + p, s)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - int(st), hi - int(st)))
    lead = (slice(None),) * (array.ndim - d)
    out[lead + tuple(dst)] = array[lead + tuple(src)]
    return out


def sample_patch(
    image: np.ndarray,
    label: np.ndarray,
    index: SamplingIndex,
    patch_size: Sequence[int],
    rng: np.random.Generator,
    *,
    foreground_share: float = 0.5,
    label_pad_value: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut one training patch.

    Parameters
    ----------
    image : ndarray
        ``(C, *S)`` (a memory-mapped array works: only the patch is read).
    label : ndarray
        ``(1, *S)`` class indices.
    index : SamplingIndex
        From :func:`build_sampling_index`.
    patch_size : sequence of int
    rng : numpy Generator
    foreground_share : float
    label_pad_value : int
        Label of padded voxels (the ignore index, if the dataset has one, so padding trains nothing).

    Returns
    -------
    (image_patch, label_patch) : ndarrays ``(C, *P)`` float32 and ``(1, *P)``.

    Examples
    --------
    >>> img = np.zeros((1, 10, 10), np.float32); lab = np.zeros((1, 10, 10), np.int16)
    >>> idx = build_sampling_index(lab)
    >>> p, l = sample_patch(img, lab, idx, (16, 8), np.random.default_rng(0))
    >>> p.shape, l.shape
    ((1, 16, 8), (1, 16, 8))
    """
    centre = choose_centre(index, rng, foreground_share)
    start = patch_start(centre, index.shape, patch_size, rng)
    img = crop_with_padding(image, start, patch_size, 0).astype(np.float32, copy=False)
    lab = crop_with_padding(label, start, patch_size, label_pad_value)
    return img, lab
