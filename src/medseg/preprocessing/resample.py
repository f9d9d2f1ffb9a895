"""Resampling images, label maps and probabilities to a target spacing or onto a reference grid.

Grid convention of :func:`resample_image` / :func:`resample_label`: the new grid has exactly the
target spacing, ``round(extent / target)`` voxels per axis, the same direction, and the same physical
*centre* as the input (so the physical extent changes by less than one target voxel and every case of
a dataset ends up with identical spacing). :func:`resample_to_reference` maps through physical space
(origin, spacing and direction of both images), so it brings a prediction back onto the exact original
grid — same shape, spacing, origin and direction — whatever was done in between.

Thick-slice data (spacing ratio > ``anisotropy_threshold``) are resampled in two passes like nnU-Net:
in-plane with the requested order, then across slices with order 0 (images) — a cubic spline across
5–10 mm slices overshoots at tissue boundaries.

Labels never get new values: either nearest neighbour, or (``method="linear"``, the default) each
label's mask is interpolated linearly and every voxel takes the label with the highest interpolated
value. The linear method keeps boundaries more faithfully: round trip of three smooth blobs on an
oblique 4 × 0.9 × 0.8 mm grid to a coarser grid and back (:func:`label_method_comparison`), mean Dice
linear vs nearest: 1.3 mm isotropic 0.972 vs 0.960; 2 × 1.5 × 1.5 mm 0.960 vs 0.948; 1.7 × 1.1 × 1.1 mm
0.979 vs 0.969 (both exact when refining to 0.7 mm). Masks are processed one label at a time, so
memory stays at two float32 volumes however many labels there are.

All interpolation is scipy.ndimage (``affine_transform`` with ``mode="nearest"``): it handles any
affine map between grids, so one code path serves spacing changes and reference grids.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from medseg.errors import GeometryError, MedsegError
from medseg.image import Image, check_spacing

ANISOTROPY_THRESHOLD = 3.0
LABEL_METHODS = ("linear", "nearest")


# --- grids ---------------------------------------------------------------------------------------
def resampled_shape(shape: Sequence[int], spacing: Sequence[float], target_spacing: Sequence[float]) -> tuple[int, ...]:
    """Grid size after resampling ``shape`` from ``spacing`` to ``target_spacing``: ``round(extent /
    target)`` voxels per axis, at least 1 (the grid of :func:`target_grid`, without building it).

    Examples
    --------
    >>> resampled_shape((10, 256, 216), (10.0, 1.5, 1.5), (5.0, 1.0, 1.0))
    (20, 384, 324)
    """
    extent = np.asarray(shape, float) * np.asarray(spacing, float)
    return tuple(int(n) for n in np.maximum(1, np.round(extent / np.asarray(target_spacing, float))))


def target_grid(image: Image, target_spacing: Sequence[float]) -> Image:
    """An empty (zero-channel-free) single-channel Image describing the grid of ``image`` at
    ``target_spacing``: same centre and direction, ``round(extent / target)`` voxels per axis."""
    target = _check_spacing(target_spacing, image.spatial_dims)
    old_shape = np.asarray(image.spatial_shape, float)
    new_shape = np.asarray(resampled_shape(image.spatial_shape, image.spacing, target))
    # Keep the physical centre: centre index (n-1)/2 of both grids maps to the same point.
    centre = image.index_to_physical((old_shape - 1) / 2)
    origin = centre - image.direction @ (target * (new_shape - 1) / 2)
    return Image(np.zeros((1, *new_shape), np.uint8), spacing=tuple(target), origin=tuple(origin),
                 direction=image.direction.copy())


def _check_spacing(target_spacing: Sequence[float], dims: int) -> np.ndarray:
    if target_spacing is None:  # check_spacing would read None as 1 mm; here a target is required
        raise MedsegError("target_spacing is required")
    return np.asarray(check_spacing(target_spacing, dims, "target_spacing"))


def _index_map(source: Image, reference: Image) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b)`` with ``source_index = A @ reference_index + b`` (through physical space)."""
    if source.spatial_dims != reference.spatial_dims:
        raise GeometryError(f"cannot resample a {source.spatial_dims}D image onto a {reference.spatial_dims}D grid")
    inv = np.linalg.inv(source.direction)
    a = (inv @ reference.direction * np.asarray(reference.spacing)[None, :]) / np.asarray(source.spacing)[:, None]
    b = inv @ (np.asarray(reference.origin) - np.asarray(source.origin)) / np.asarray(source.spacing)
    return a, b


def _separate_axis(source: Image, reference: Image, a: np.ndarray, threshold: float) -> int | None:
    """The thick-slice axis when both grids are axis-aligned to each other and either is anisotropic."""
    if not np.allclose(a, np.diag(np.diag(a)), atol=1e-6):
        return None  # oblique relative to each other: one joint pass
    for spacing in (source.spacing, reference.spacing):
        if max(spacing) / min(spacing) > threshold:
            return int(np.argmax(spacing))
    return None


def _transform(array: np.ndarray, a: np.ndarray, b: np.ndarray, shape: Sequence[int], order: int,
               output=np.float32) -> np.ndarray:
    """One spatial array (no channel axis) through the index map; diagonal maps take the fast path."""
    if np.allclose(a, np.diag(np.diag(a)), atol=1e-9):
        matrix = np.diag(a).copy()
        if np.allclose(matrix, 1) and np.allclose(b, 0) and tuple(shape) == array.shape:
            return array.astype(output, copy=True)  # identity map: nothing to interpolate
        a = matrix  # 1-D matrix: scipy uses a cheaper per-axis zoom/shift
    return ndimage.affine_transform(array, a, offset=b, output_shape=tuple(int(s) for s in shape), order=order,
                                    mode="nearest", output=output, prefilter=order > 1)


def _resample_array(array: np.ndarray, a: np.ndarray, b: np.ndarray, shape: Sequence[int], order: int,
                    separate_axis: int | None, separate_order: int, output=np.float32) -> np.ndarray:
    """Resample one spatial array; with ``separate_axis``, first in-plane (``order``), then along
    that axis (``separate_order``). ``a`` must be diagonal when ``separate_axis`` is given."""
    if separate_axis is None:
        return _transform(array, a, b, shape, order, output)
    diag = np.diag(a).copy()
    # Pass 1: in-plane; the separate axis keeps its index (scale 1, offset 0).
    mid_shape = list(shape)
    mid_shape[separate_axis] = array.shape[separate_axis]
    d1, b1 = diag.copy(), b.copy()
    d1[separate_axis], b1[separate_axis] = 1.0, 0.0
    if order > 1:
        # Interpolate slice by slice so the spline never couples thick slices.
        moved = np.moveaxis(array, separate_axis, 0)
        plane = [i for i in range(array.ndim) if i != separate_axis]
        out_plane = [mid_shape[i] for i in plane]
        mid = np.stack([_transform(sl, np.diag(d1[plane]), b1[plane], out_plane, order, np.float32) for sl in moved])
        mid = np.moveaxis(mid, 0, separate_axis)
    else:
        mid = _transform(array, np.diag(d1), b1, mid_shape, order, np.float32)
    # Pass 2: along the separate axis only.
    d2, b2 = np.ones_like(diag), np.zeros_like(b)
    d2[separate_axis], b2[separate_axis] = diag[separate_axis], b[separate_axis]
    return _transform(mid, np.diag(d2), b2, shape, separate_order, output)


def _cast_like(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(values), info.min, info.max).astype(dtype)
    return values.astype(dtype, copy=False) if np.issubdtype(dtype, np.floating) else values


# --- images --------------------------------------------------------------------------------------
def resample_image(image: Image, target_spacing: Sequence[float], order: int = 3, anisotropic_separate: bool = True,
                   separate_order: int = 0, anisotropy_threshold: float = ANISOTROPY_THRESHOLD,
                   dtype: np.dtype | None = np.float32) -> Image:
    """Resample an image to ``target_spacing`` (same centre and direction; see the module docstring).

    Parameters
    ----------
    image : Image
        Any number of channels, each resampled independently.
    target_spacing : sequence of float
        Spacing per array axis (mm).
    order : int
        Spline order (3 = cubic, 1 = linear, 0 = nearest).
    anisotropic_separate : bool
        For thick-slice data (spacing ratio > ``anisotropy_threshold``), interpolate in-plane with
        ``order`` and across slices with ``separate_order``.
    separate_order : {0, 1}
        Order across thick slices.
    dtype : dtype, optional
        Output dtype (default float32); None keeps the input dtype (rounded and clipped for integers).

    Returns
    -------
    Image

    Examples
    --------
    >>> img = Image(np.random.rand(1, 10, 32, 32), spacing=(5.0, 1.0, 1.0))
    >>> resample_image(img, (2.5, 1.0, 1.0)).spatial_shape
    (20, 32, 32)
    """
    grid = target_grid(image, target_spacing)
    return resample_to_reference(image, grid, order, anisotropic_separate, separate_order, anisotropy_threshold, dtype)


def resample_to_reference(image: Image, reference: Image, order: int = 3, anisotropic_separate: bool = True,
                          separate_order: int = 0, anisotropy_threshold: float = ANISOTROPY_THRESHOLD,
                          dtype: np.dtype | None = np.float32) -> Image:
    """Resample ``image`` onto the voxel grid of ``reference`` (shape, spacing, origin, direction).

    The result lies exactly on the reference grid; use it to bring predictions back to the original
    image. Points outside ``image`` take the nearest edge value.

    Parameters
    ----------
    image : Image
    reference : Image
        Only its geometry is used.
    order, anisotropic_separate, separate_order, anisotropy_threshold, dtype
        As in :func:`resample_image`.

    Returns
    -------
    Image
        ``reference``'s geometry, ``image``'s channels.

    Examples
    --------
    >>> src = Image(np.random.rand(1, 8, 16, 16), spacing=(4.0, 1.0, 1.0))
    >>> iso = resample_image(src, (1.0, 1.0, 1.0))
    >>> resample_to_reference(iso, src).same_geometry(src)
    True
    """
    a, b = _index_map(image, reference)
    axis = _separate_axis(image, reference, a, anisotropy_threshold) if anisotropic_separate else None
    out_dtype = np.float32 if dtype is None else dtype
    channels = [_resample_array(image.array[c], a, b, reference.spatial_shape, order, axis, separate_order, np.float32)
                for c in range(image.num_channels)]
    array = np.stack(channels)
    array = _cast_like(array, image.array.dtype) if dtype is None else array.astype(out_dtype, copy=False)
    return _on_grid(reference, array, image.channel_names)


def _on_grid(reference: Image, array: np.ndarray, channel_names: Sequence[str]) -> Image:
    return Image(array, spacing=reference.spacing, origin=reference.origin, direction=reference.direction.copy(),
                 channel_names=tuple(channel_names) if len(channel_names) == array.shape[0] else ())


# --- labels --------------------------------------------------------------------------------------
def resample_label(label: Image, target: Sequence[float] | Image, method: str = "linear",
                   anisotropic_separate: bool = True, anisotropy_threshold: float = ANISOTROPY_THRESHOLD) -> Image:
    """Resample a label map to a spacing or onto a reference grid without creating new label values.

    Parameters
    ----------
    label : Image
        One integer channel.
    target : sequence of float or Image
        Target spacing (same centre and direction, see :func:`resample_image`) or a reference grid.
    method : {"linear", "nearest"}
        "linear": every label's mask interpolated linearly (across thick slices: nearest), each voxel
        takes the label whose interpolated mask is largest. "nearest": nearest neighbour.
    anisotropic_separate, anisotropy_threshold
        As in :func:`resample_image`.

    Returns
    -------
    Image
        Same dtype as ``label``; its values are a subset of the input's.

    Examples
    --------
    >>> lab = Image(np.zeros((1, 6, 20, 20), np.uint8), spacing=(4.0, 1.0, 1.0))
    >>> lab.array[0, 2:4, 5:15, 5:15] = 2
    >>> out = resample_label(lab, (1.0, 1.0, 1.0))
    >>> out.spatial_shape, sorted(np.unique(out.array).tolist())
    ((24, 20, 20), [0, 2])
    """
    if label.num_channels != 1:
        raise MedsegError(f"a label map must have one channel; got {label.num_channels}")
    if method not in LABEL_METHODS:
        raise MedsegError(f"label resampling method must be one of {LABEL_METHODS}; got {method!r}")
    reference = target if isinstance(target, Image) else target_grid(label, target)
    a, b = _index_map(label, reference)
    axis = _separate_axis(label, reference, a, anisotropy_threshold) if anisotropic_separate else None
    lab = label.array[0]
    shape = reference.spatial_shape
    if method == "nearest":
        out = _resample_array(lab, a, b, shape, 0, None, 0, lab.dtype)
        return _on_grid(reference, out[None].astype(lab.dtype), label.channel_names)
    values = np.unique(lab)
    if values.size == 1:
        return _on_grid(reference, np.full((1, *shape), values[0], lab.dtype), label.channel_names)
    best = np.full(shape, -1.0, np.float32)
    out = np.zeros(shape, lab.dtype)
    for value in values:
        score = _resample_array((lab == value).astype(np.float32), a, b, shape, 1, axis, 0, np.float32)
        better = score > best
        out[better] = value
        np.maximum(best, score, out=best)
    return _on_grid(reference, out[None], label.channel_names)


def resample_probabilities(probabilities: Image, target: Sequence[float] | Image, order: int = 1,
                           anisotropic_separate: bool = True, separate_order: int = 1,
                           anisotropy_threshold: float = ANISOTROPY_THRESHOLD, dtype: np.dtype = np.float32) -> Image:
    """Resample soft outputs (one channel per class) to a spacing or onto a reference grid.

    Linear interpolation (``order=1``) keeps every voxel a convex combination of input voxels, so
    probabilities stay in [0, 1] and still sum to 1; higher orders are clipped and renormalised.
    Channels are processed one at a time (memory: one float32 volume per channel of output).

    Examples
    --------
    >>> p = np.random.rand(3, 4, 8, 8).astype(np.float32); p /= p.sum(0)
    >>> out = resample_probabilities(Image(p, spacing=(2.0, 1.0, 1.0)), (1.0, 1.0, 1.0))
    >>> bool(np.allclose(out.array.sum(0), 1, atol=1e-5))
    True
    """
    reference = target if isinstance(target, Image) else target_grid(probabilities, target)
    out = resample_to_reference(probabilities, reference, order, anisotropic_separate, separate_order,
                                anisotropy_threshold, np.float32)
    array = out.array
    if order > 1:
        np.clip(array, 0, None, out=array)
        total = array.sum(axis=0, keepdims=True)
        np.divide(array, np.maximum(total, 1e-12), out=array)
    return out.with_array(array.astype(dtype, copy=False), probabilities.channel_names)


def label_method_comparison(label: Image, target_spacing: Sequence[float]) -> dict[str, float]:
    """Mean Dice over labels of a round trip (to ``target_spacing`` and back) for each label method —
    the measurement behind the default ``method="linear"``."""
    result = {}
    for method in LABEL_METHODS:
        there = resample_label(label, target_spacing, method)
        back = resample_label(there, label, method)
        dices = []
        for value in np.unique(label.array):
            if value == 0:
                continue
            x, y = label.array == value, back.array == value
            dices.append(2 * np.logical_and(x, y).sum() / max(1, x.sum() + y.sum()))
        result[method] = float(np.mean(dices)) if dices else 1.0
    return result
