"""Cropping to the non-zero region (or a region of interest) and putting results back.

A bounding box is a list of ``[start, stop)`` pairs, one per spatial axis (JSON-friendly, stored with
preprocessed cases so that predictions can be uncropped onto the full grid).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from medseg.errors import GeometryError
from medseg.image import Image

BBox = list[list[int]]


def bounding_box(mask: np.ndarray, margin: int | Sequence[int] = 0) -> BBox:
    """Bounding box ``[[start, stop), ...]`` of the True voxels, widened by ``margin`` voxels (clipped
    to the array). An empty mask gives the whole array.

    Examples
    --------
    >>> m = np.zeros((5, 6), bool); m[1:3, 2:4] = True
    >>> bounding_box(m)
    [[1, 3], [2, 4]]
    """
    margins = [int(margin)] * mask.ndim if np.isscalar(margin) else [int(m) for m in margin]
    if not mask.any():
        return [[0, int(s)] for s in mask.shape]
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append([max(0, int(hit[0]) - margins[axis]), min(mask.shape[axis], int(hit[-1]) + 1 + margins[axis])])
    return box


def crop_image(image: Image, bbox: BBox) -> Image:
    """The part of ``image`` inside ``bbox``, with its origin moved so geometry stays exact."""
    if len(bbox) != image.spatial_dims:
        raise GeometryError(f"bounding box {bbox} does not fit a {image.spatial_dims}D image")
    slices = tuple(slice(a, b) for a, b in bbox)
    origin = image.index_to_physical([a for a, _ in bbox])
    return Image(image.array[(slice(None), *slices)], spacing=image.spacing, origin=tuple(origin),
                 direction=image.direction.copy(), channel_names=image.channel_names)


def crop_to_nonzero(image: Image, label: Image | None = None, roi: Image | None = None,
                    margin: int | Sequence[int] = 0) -> tuple[Image, Image | None, BBox]:
    """Crop an image (and its label) to the bounding box of its non-zero voxels, or of ``roi``.

    Parameters
    ----------
    image : Image
    label : Image, optional
        Cropped with the same box; must share the image's grid.
    roi : Image, optional
        Region of interest (non-zero inside); when given, its box is used instead of the image's
        non-zero region.
    margin : int or sequence of int
        Voxels added around the box.

    Returns
    -------
    image, label, bbox
        ``bbox`` is ``[[start, stop), ...]`` per axis; see :func:`uncrop`.

    Examples
    --------
    >>> a = np.zeros((1, 4, 10, 10)); a[0, 1:3, 2:8, 3:6] = 1
    >>> cropped, _, box = crop_to_nonzero(Image(a))
    >>> cropped.spatial_shape, box
    ((2, 6, 3), [[1, 3], [2, 8], [3, 6]])
    """
    for other, what in ((label, "label"), (roi, "roi")):
        if other is not None:
            image.check_same_geometry(other, f"image and {what}")
    # Hole filling cannot change a bounding box, so the plain non-zero test suffices here.
    source = roi if roi is not None else image
    mask = np.any(source.array != 0, axis=0)
    box = bounding_box(mask, margin)
    return crop_image(image, box), (crop_image(label, box) if label is not None else None), box


def uncrop(array: np.ndarray, bbox: BBox, full_shape: Sequence[int], fill: float = 0) -> np.ndarray:
    """Put a cropped array back into an array of spatial shape ``full_shape`` filled with ``fill``.

    Leading (channel) axes of ``array`` are kept: ``array.shape[-len(bbox):]`` must equal the box size.

    Examples
    --------
    >>> uncrop(np.ones((2, 2)), [[1, 3], [0, 2]], (4, 3)).tolist()
    [[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    dims = len(bbox)
    size = tuple(b - a for a, b in bbox)
    if tuple(array.shape[-dims:]) != size or len(full_shape) != dims:
        raise GeometryError(f"array of shape {array.shape} does not fit box {bbox} in a grid of {tuple(full_shape)}")
    if any(a < 0 or b > s for (a, b), s in zip(bbox, full_shape)):
        raise GeometryError(f"box {bbox} lies outside a grid of {tuple(full_shape)}")
    out = np.full((*array.shape[:-dims], *full_shape), fill, dtype=np.result_type(array.dtype, np.min_scalar_type(fill)))
    out[(..., *(slice(a, b) for a, b in bbox))] = array
    return out
