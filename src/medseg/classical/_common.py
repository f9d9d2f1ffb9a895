"""Input checks and unit conversions shared by every classical method.

Conventions (the same in every ``segment_*`` function):

- ``image``: one-channel 2D ``(Y, X)`` or 3D ``(Z, Y, X)`` array; a one-channel :class:`~medseg.image.Image`
  is accepted too (its spacing and geometry are then used).
- ``spacing``: voxel size per array axis. Lengths (``sigma``, ``block_size``, ``radius``) are in the
  units of ``spacing`` (mm), i.e. in voxels when ``spacing`` is None.
- ``roi``: boolean region of interest; voxels outside it are labelled 0 and do not inform thresholds.
- ``seeds``: voxel indices in array order ``(z, y, x)`` / ``(y, x)``, or physical points (mm, array-axis
  order) with ``physical=True``; ``seed_labels`` gives each seed's label.
- ``polarity``: "bright" (object brighter than background) or "dark".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from medseg.errors import MedsegError
from medseg.image import Image, check_spacing


@dataclass
class Scalar:
    """A checked one-channel image with its grid."""

    array: np.ndarray  # float32/float64
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: np.ndarray

    @property
    def ndim(self) -> int:
        return self.array.ndim


def as_scalar(
    image: np.ndarray | Image,
    spacing: Sequence[float] | None,
    method: str,
    dims: Sequence[int] = (2, 3),
) -> Scalar:
    """Validate ``image`` as one channel of a supported dimensionality and return it as float."""
    origin: tuple[float, ...] | None = None
    direction = None
    if isinstance(image, Image):
        if image.num_channels != 1:
            raise MedsegError(
                f"{method}: image has {image.num_channels} channels ({', '.join(image.channel_names)}); "
                "this method needs one channel: pass image.channel(i) (CLI: --channel)"
            )
        if spacing is None:
            spacing = image.spacing
        origin, direction = image.origin, image.direction
        array = image.array[0]
    else:
        array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] in (3, 4) and min(array.shape[:2]) >= 8 * array.shape[-1]:
        # (Y, X, 3|4) with a large plane and 3-4 "slices" along x is a colour photograph, not a volume.
        raise MedsegError(
            f"{method}: image of shape {array.shape} looks like a colour image (channels last); "
            "this method needs one channel: pass e.g. image[..., 1] (CLI: --channel)"
        )
    if array.ndim not in (2, 3):
        raise MedsegError(f"{method}: image must be a one-channel 2D or 3D array; got shape {array.shape}")
    if array.ndim not in dims:
        supported = " or ".join(f"{d}D" for d in dims)
        raise MedsegError(f"{method}: image is {array.ndim}D but this method supports {supported} images only")
    if array.dtype != bool and (not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array)):
        raise MedsegError(f"{method}: image must be real-valued; got dtype {array.dtype}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise MedsegError(f"{method}: image contains NaN or infinite values")
    sp = check_spacing(spacing, array.ndim)
    return Scalar(
        array,
        sp,
        tuple(origin) if origin is not None else (0.0,) * array.ndim,
        np.asarray(direction) if direction is not None else np.eye(array.ndim),
    )


def to_voxels(length: float | Sequence[float], spacing: Sequence[float], name: str) -> np.ndarray:
    """A length in mm (scalar or per axis) as a per-axis length in voxels."""
    values = np.broadcast_to(np.asarray(length, dtype=np.float64), (len(spacing),)) if np.ndim(length) == 0 else np.asarray(length, float)
    if values.shape != (len(spacing),):
        raise MedsegError(f"{name} has {values.size} values for a {len(spacing)}D image")
    if np.any(values < 0) or not np.all(np.isfinite(values)):
        raise MedsegError(f"{name} must be >= 0; got {np.asarray(length).tolist()}")
    return values / np.asarray(spacing)


def check_polarity(polarity: str) -> bool:
    """True for bright objects."""
    if polarity not in ("bright", "dark"):
        raise MedsegError(f"polarity must be 'bright' or 'dark'; got {polarity!r}")
    return polarity == "bright"


def check_classes(classes: int, minimum: int = 2) -> int:
    if int(classes) != classes or classes < minimum:
        raise MedsegError(f"classes must be an integer >= {minimum}; got {classes}")
    return int(classes)


def seed_indices(
    seeds: Sequence[Sequence[float]] | np.ndarray | None,
    img: Scalar,
    physical: bool = False,
    required: bool = True,
) -> np.ndarray:
    """Seeds as an ``(N, ndim)`` int array of voxel indices, checked to lie inside the image.

    Physical points are mapped with the image geometry (origin, direction, spacing); a point maps to the
    nearest voxel centre.
    """
    if seeds is None or len(seeds) == 0:
        if required:
            raise MedsegError("seeds: this method needs at least one seed point")
        return np.zeros((0, img.ndim), dtype=np.int64)
    points = np.asarray(seeds, dtype=np.float64)
    if points.ndim == 1:
        points = points[None]
    if points.ndim != 2 or points.shape[1] != img.ndim:
        raise MedsegError(f"seeds must be points with {img.ndim} coordinates each (array order); got {np.asarray(seeds).tolist()}")
    if physical:
        offset = points - np.asarray(img.origin)[None]
        points = np.linalg.solve(img.direction, offset.T).T / np.asarray(img.spacing)[None]
    index = np.rint(points).astype(np.int64)
    shape = np.asarray(img.array.shape)
    outside = np.any((index < 0) | (index >= shape[None]), axis=1)
    if outside.any():
        bad = np.asarray(seeds, float).reshape(len(index), -1)[outside][0].tolist()
        where = "physical point" if physical else "voxel index"
        raise MedsegError(
            f"seeds: {where} {bad} lies outside the image of shape {tuple(shape.tolist())}"
            + (f" (maps to voxel {index[outside][0].tolist()})" if physical else "")
        )
    return index


def seed_label_values(seed_labels: Sequence[int] | None, n: int) -> np.ndarray:
    """Label of each seed; default seed ``i`` gets label ``i + 1``."""
    if seed_labels is None:
        return np.arange(1, n + 1)
    values = np.asarray(seed_labels).astype(np.int64).ravel()
    if values.size != n:
        raise MedsegError(f"seed_labels has {values.size} values for {n} seeds")
    if np.any(values < 1):
        raise MedsegError(f"seed_labels must be >= 1 (0 means unlabelled); got {values.tolist()}")
    return values


def label_dtype(max_label: int) -> np.dtype:
    return np.dtype(np.uint8) if max_label < 256 else np.dtype(np.uint16) if max_label < 65536 else np.dtype(np.int32)


def order_by_intensity(labels: np.ndarray, values: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Relabel cluster ids so that label 0 is the darkest class, K-1 the brightest."""
    rank = np.empty(len(centres), dtype=np.int64)
    rank[np.argsort(centres)] = np.arange(len(centres))
    return rank[labels]


def fit_sample(values: np.ndarray, max_samples: int, seed: int = 0) -> np.ndarray:
    """A random subset of ``values`` to fit a model on (fits on a million voxels are no better than on
    100 000 for a 1D intensity model, and many times slower)."""
    if values.shape[0] <= max_samples:
        return values
    rng = np.random.default_rng(seed)
    return values[rng.choice(values.shape[0], max_samples, replace=False)]


def finish(labels: np.ndarray, roi: np.ndarray | None) -> np.ndarray:
    """Zero outside ``roi`` and cast to the smallest unsigned integer type."""
    labels = np.asarray(labels)
    if roi is not None:
        labels = np.where(roi, labels, 0)
    top = int(labels.max()) if labels.size else 0
    return labels.astype(label_dtype(top), copy=False)
