"""The data model: an image array with its physical geometry.

Every reader returns an :class:`Image`, every writer takes one. Channels come first:
2D images are ``(C, Y, X)``, 3D images ``(C, Z, Y, X)``.

Geometry convention
-------------------
All geometry is stored in **array-axis order**, so that ``spacing[i]`` belongs to
``array.shape[1 + i]``, as scipy, scikit-image and the metrics expect:

- ``spacing``: voxel size in millimetres, e.g. ``(sz, sy, sx)``;
- ``origin``: physical position (mm) of the voxel with index 0, coordinates listed in the
  same reversed order, e.g. ``(oz, oy, ox)`` for ITK's ``(ox, oy, oz)``;
- ``direction``: ``D × D`` matrix whose column ``j`` is the physical direction of array axis ``j``
  (again with the physical coordinates in reversed order).

A voxel index ``i`` (array order) maps to the physical point
``origin + direction @ (spacing * i)``. This is SimpleITK's geometry with every axis reversed
(SimpleITK's ``GetArrayFromImage`` reverses the array axes; we reverse the geometry to match),
so conversion to and from ITK is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from medseg.errors import GeometryError, MedsegError


def check_spacing(spacing: float | Sequence[float] | None, ndim: int, name: str = "spacing") -> tuple[float, ...]:
    """Voxel size as ``ndim`` positive, finite millimetres in array-axis order.

    ``None`` means 1 mm on every axis; a single number means isotropic voxels. Used by every function
    that takes a bare array plus a ``spacing`` so they all accept and reject the same values.

    Examples
    --------
    >>> check_spacing(None, 2), check_spacing(0.5, 3), check_spacing([3, 1, 1], 3)
    ((1.0, 1.0), (0.5, 0.5, 0.5), (3.0, 1.0, 1.0))
    """
    if spacing is None:
        return (1.0,) * ndim
    try:
        values = np.asarray(spacing, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise MedsegError(f"{name} must be {ndim} positive numbers (mm, array-axis order); got {spacing!r}") from None
    if values.size == 1:
        values = np.repeat(values, ndim)
    if values.size != ndim or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise MedsegError(f"{name} must be {ndim} positive numbers (mm, array-axis order); got {spacing!r}")
    return tuple(float(v) for v in values)


def is_placeholder_spacing(spacing: Sequence[float]) -> bool:
    """Exactly 1 mm on every axis: what releases that lost the spacing store (PROMISE12, ACDC)."""
    return all(abs(float(v) - 1.0) < 1e-6 for v in spacing)


def check_roi(roi: np.ndarray | Image | None, spatial_shape: Sequence[int], name: str = "roi") -> np.ndarray | None:
    """``roi`` (region of interest) as a non-empty boolean array of ``spatial_shape``, or None.

    An :class:`Image` or an array with a leading channel axis of 1 is accepted as well.

    Examples
    --------
    >>> check_roi(np.array([[[0, 1]]]), (1, 2))
    array([[False,  True]])
    """
    if roi is None:
        return None
    roi = np.asarray(roi.array if isinstance(roi, Image) else roi)
    if roi.ndim == len(spatial_shape) + 1 and roi.shape[0] == 1:
        roi = roi[0]
    if roi.shape != tuple(spatial_shape):
        raise MedsegError(f"{name} of shape {roi.shape} does not match the image's spatial shape "
                          f"{tuple(spatial_shape)}")
    roi = roi.astype(bool, copy=False)
    if not roi.any():
        raise MedsegError(f"{name} is empty: it selects no voxel")
    return roi


#: Former name of :func:`check_roi` (the vocabulary says ``roi``); kept for existing callers.
check_mask = check_roi


def _as_float_tuple(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


@dataclass
class Image:
    """A channels-first image with spacing, origin, direction and channel names.

    Parameters
    ----------
    array : ndarray
        ``(C, Y, X)`` for 2D or ``(C, Z, Y, X)`` for 3D.
    spacing, origin : sequence of float, optional
        Per spatial axis, array order, millimetres. Default 1 mm spacing at the origin.
    direction : (D, D) array, optional
        Direction cosines, column ``j`` for array axis ``j``. Default identity.
    channel_names : sequence of str, optional
        One name per channel. Default ``("0", "1", ...)``.
    spacing_known : bool
        False when the file gave no physical spacing (raster formats: PNG, JPEG, TIFF...): ``spacing``
        is then 1 per pixel, and distances, areas and volumes are reported in pixels, not millimetres.

    Examples
    --------
    >>> import numpy as np
    >>> img = Image(np.zeros((1, 4, 5, 6)), spacing=(3.0, 1.0, 1.0))
    >>> img.spatial_dims, img.spatial_shape, img.num_channels
    (3, (4, 5, 6), 1)
    """

    array: np.ndarray
    spacing: tuple[float, ...] = ()
    origin: tuple[float, ...] = ()
    direction: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    channel_names: tuple[str, ...] = ()
    spacing_known: bool = True

    @property
    def length_unit(self) -> str:
        """``"mm"``, or ``"px"`` (pixels) when the file gave no physical spacing."""
        return "mm" if self.spacing_known else "px"

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        if self.array.ndim not in (3, 4):
            raise GeometryError(
                f"an Image array must be (C, Y, X) or (C, Z, Y, X); got shape {self.array.shape}"
            )
        d = self.array.ndim - 1
        self.spacing = _as_float_tuple(self.spacing) if len(self.spacing) else (1.0,) * d
        self.origin = _as_float_tuple(self.origin) if len(self.origin) else (0.0,) * d
        direction = np.asarray(self.direction, dtype=np.float64)
        self.direction = direction if direction.size else np.eye(d)
        if not self.channel_names:
            self.channel_names = tuple(str(c) for c in range(self.array.shape[0]))
        self.channel_names = tuple(str(n) for n in self.channel_names)
        if len(self.spacing) != d or len(self.origin) != d or self.direction.shape != (d, d):
            raise GeometryError(
                f"geometry does not match a {d}D image: spacing {self.spacing}, origin {self.origin}, "
                f"direction shape {self.direction.shape}"
            )
        if any(s <= 0 or not np.isfinite(s) for s in self.spacing):
            raise GeometryError(f"spacing must be positive and finite; got {self.spacing}")
        if len(self.channel_names) != self.array.shape[0]:
            raise GeometryError(
                f"{len(self.channel_names)} channel names for {self.array.shape[0]} channels"
            )

    # --- shape ---------------------------------------------------------------------------
    @property
    def spatial_dims(self) -> int:
        """2 or 3."""
        return self.array.ndim - 1

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[1:])

    @property
    def num_channels(self) -> int:
        return int(self.array.shape[0])

    # --- geometry ------------------------------------------------------------------------
    @property
    def affine(self) -> np.ndarray:
        """``(D+1, D+1)`` matrix mapping array indices to physical points (array-axis order)."""
        d = self.spatial_dims
        a = np.eye(d + 1)
        a[:d, :d] = self.direction * np.asarray(self.spacing)[None, :]
        a[:d, d] = self.origin
        return a

    def index_to_physical(self, index: Sequence[float]) -> np.ndarray:
        """Physical point (mm, array-axis order) of a (possibly fractional) voxel index."""
        return np.asarray(self.origin) + self.direction @ (np.asarray(self.spacing) * np.asarray(index, float))

    def physical_to_index(self, point: Sequence[float]) -> np.ndarray:
        """Continuous voxel index of a physical point (inverse of :meth:`index_to_physical`)."""
        offset = np.asarray(point, float) - np.asarray(self.origin)
        return np.linalg.solve(self.direction, offset) / np.asarray(self.spacing)

    def same_geometry(self, other: "Image", rtol: float = 1e-4, atol: float = 1e-4) -> bool:
        """True when both images lie on the same voxel grid (shape, spacing, origin, direction)."""
        return (
            self.spatial_shape == other.spatial_shape
            and np.allclose(self.spacing, other.spacing, rtol=rtol, atol=atol)
            and np.allclose(self.origin, other.origin, rtol=rtol, atol=atol)
            and np.allclose(self.direction, other.direction, rtol=rtol, atol=atol)
        )

    def geometry_difference(self, other: "Image", rtol: float = 1e-4, atol: float = 1e-4) -> str | None:
        """A sentence describing how the grids differ, or None when they agree."""
        if self.spatial_shape != other.spatial_shape:
            return f"shape {self.spatial_shape} vs {other.spatial_shape}"
        for name in ("spacing", "origin", "direction"):
            a, b = np.asarray(getattr(self, name)), np.asarray(getattr(other, name))
            if not np.allclose(a, b, rtol=rtol, atol=atol):
                return f"{name} {np.round(a, 5).tolist()} vs {np.round(b, 5).tolist()}"
        return None

    def check_same_geometry(self, other: "Image", what: str = "images") -> None:
        """Raise :class:`GeometryError` naming the difference when the grids differ."""
        diff = self.geometry_difference(other)
        if diff is not None:
            raise GeometryError(f"{what} do not share a voxel grid: {diff}")

    # --- derived images ------------------------------------------------------------------
    def with_array(self, array: np.ndarray, channel_names: Sequence[str] | None = None) -> "Image":
        """A new Image on the same grid with another array (e.g. a label map or probabilities)."""
        array = np.asarray(array)
        if array.ndim == self.spatial_dims:
            array = array[None]
        if tuple(array.shape[1:]) != self.spatial_shape:
            raise GeometryError(
                f"array of spatial shape {tuple(array.shape[1:])} does not fit grid {self.spatial_shape}"
            )
        names = tuple(channel_names) if channel_names is not None else (
            self.channel_names if array.shape[0] == self.num_channels else ()
        )
        return replace(self, array=array, channel_names=names, direction=self.direction.copy())

    def check_finite(self, path=None) -> "Image":
        """Return ``self``; raise :class:`MedsegError` naming ``path`` when a voxel is NaN or ±Inf.

        Every command that reads images calls this: a NaN would otherwise turn into an all-background
        label map with exit code 0.

        Examples
        --------
        >>> Image(np.array([[[np.nan, 1.0]]])).check_finite("x.nii.gz")
        Traceback (most recent call last):
        ...
        medseg.errors.MedsegError: x.nii.gz: image holds 1 NaN/infinite voxel(s); fix or mask them first
        """
        if np.issubdtype(self.array.dtype, np.floating) or np.issubdtype(self.array.dtype, np.complexfloating):
            bad = int(np.count_nonzero(~np.isfinite(self.array)))
            if bad:
                raise MedsegError(f"image holds {bad} NaN/infinite voxel(s); fix or mask them first", path)
        return self

    def channel(self, index: int) -> "Image":
        """One channel as a single-channel Image."""
        return self.with_array(self.array[index : index + 1], (self.channel_names[index],))

    def __repr__(self) -> str:
        return (
            f"Image(shape={self.array.shape}, dtype={self.array.dtype}, spacing={self.spacing}, "
            f"origin={tuple(round(o, 3) for o in self.origin)}, channels={self.channel_names})"
        )
