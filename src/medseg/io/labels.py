"""The one label-reading policy (dataset, evaluator, threshold, predict's ROI): a label map or ROI is one
channel of integers. Floating-point files are accepted when every value is a whole number (some tools
write label maps as float NIfTI); a value that is not a whole number, NaN or Inf is an error naming the
file: rounding it would silently change the ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.errors import ImageReadError, MedsegError
from medseg.image import Image


def as_label_map(image: Image, path: str | Path, what: str = "label map",
                 error: type[MedsegError] = ImageReadError) -> Image:
    """``image`` as a one-channel integer label map, or an error naming ``path``.

    Parameters
    ----------
    image : Image
        As read from ``path``.
    path : path
        The file (named in errors).
    what : str
        What the file is ("label map", "roi", "prediction", ...).
    error : MedsegError subclass
        Raised on a bad file (e.g. :class:`~medseg.errors.DatasetError` inside a dataset).

    Returns
    -------
    Image
        Same geometry; bool becomes uint8, whole-number floats the smallest of uint8 / int16 / int32.

    Examples
    --------
    >>> as_label_map(Image(np.array([[[0.0, 2.0]]])), "x.nii.gz").array.dtype
    dtype('uint8')
    >>> as_label_map(Image(np.array([[[0.0, 0.5]]])), "x.nii.gz")
    Traceback (most recent call last):
    ...
    medseg.errors.ImageReadError: x.nii.gz: a label map must hold whole numbers; found 0.5 (float64)
    """
    if image.num_channels != 1:
        raise error(f"a {what} must have one channel; this file has {image.num_channels}", path)
    array = image.array
    if array.dtype == bool:
        array = array.astype(np.uint8)
    elif not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating):
            raise error(f"a {what} must hold integers; this file holds {array.dtype}", path)
        finite = np.isfinite(array)
        if not finite.all():
            raise error(f"a {what} must hold whole numbers; found NaN or infinite values", path)
        fraction = array != np.round(array)
        if fraction.any():
            example = array[fraction].flat[0]
            raise error(f"a {what} must hold whole numbers; found {example:g} ({array.dtype})", path)
        low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
        target = np.uint8 if low >= 0 and high <= 255 else np.int16 if -2**15 <= low and high < 2**15 else np.int32
        array = array.astype(target)
    return image.with_array(array, (what.split()[0],))


def read_label_map(path: str | Path, what: str = "label map", error: type[MedsegError] = ImageReadError) -> Image:
    """Read ``path`` and apply :func:`as_label_map`.

    Examples
    --------
    >>> read_label_map("labelsTr/case_001.nii.gz")  # doctest: +SKIP
    """
    from medseg.io import read_image

    return as_label_map(read_image(path), path, what, error)


def label_histogram(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The values present in a label map and their voxel counts (``np.unique(..., return_counts=True)``,
    by ``np.bincount`` for non-negative values below 65536: several times faster on volumes).

    Examples
    --------
    >>> label_histogram(np.array([[0, 2], [2, 4]]))
    (array([0, 2, 4]), array([1, 2, 1]))
    """
    flat = np.asarray(array).ravel()
    if flat.size and flat.dtype.kind in "iub" and flat.min() >= 0 and flat.max() < 65536:
        counts = np.bincount(flat.astype(np.int64, copy=False))
        values = np.nonzero(counts)[0]
        return values, counts[values]
    return np.unique(flat, return_counts=True)
