"""Measurements of a segmentation that a classifier reads: the tissue map as a short row of numbers.

For every foreground label the row holds its size (area in mm² in 2D, volume in mL in 3D, and the
share of the image it covers), its component count and largest component, its extent (bounding box per
axis in mm) and its position (centroid as a fraction of each axis), plus statistics of its probability
map when one is given (mean, maximum, 99th percentile, soft size = sum of probabilities). These are
the measurements the survey's cascade reads (area/volume, count, extent, position); they do not depend
on the scanner once the segmentation is right, which is what lets a classifier move between devices.

Names are ``<label>_<measurement>`` so that a feature table explains itself, e.g. ``fluid_area``.
A label that is absent gets size 0, component count 0 and position/extent 0 (not nan: a classifier
must be able to read "nothing there").

Examples
--------
>>> import numpy as np
>>> label_map = np.zeros((20, 20), np.uint8); label_map[2:6, 3:5] = 1
>>> f = segmentation_features(label_map, {"background": 0, "fluid": 1}, spacing=(0.5, 0.5))
>>> f["fluid_area"], f["fluid_components"], f["fluid_extent_0"]
(2.0, 1.0, 2.0)
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage

from medseg.errors import MedsegError
from medseg.image import check_spacing

#: measurements per label without / with a probability map (axis-wise ones get a suffix _0, _1, ...)
SIZE_FEATURES = ("area", "fraction", "components", "largest_area")
AXIS_FEATURES = ("extent", "centroid")
PROBABILITY_FEATURES = ("probability_mean", "probability_max", "probability_p99", "probability_area")


def feature_names(labels: Mapping[str, int], ndim: int, probabilities: bool) -> list[str]:
    """The feature names :func:`segmentation_features` returns, in order.

    Examples
    --------
    >>> feature_names({"background": 0, "fluid": 1}, 2, False)[:3]
    ['fluid_area', 'fluid_fraction', 'fluid_components']
    """
    names = []
    for label, value in labels.items():
        if value == 0:
            continue
        names += [f"{label}_{m}" for m in SIZE_FEATURES]
        names += [f"{label}_{m}_{a}" for m in AXIS_FEATURES for a in range(ndim)]
        if probabilities:
            names += [f"{label}_{m}" for m in PROBABILITY_FEATURES]
    return names


def size_columns(names: Sequence[str]) -> list[int]:
    """Positions of the per-label size features (``<label>_area``: mm² in 2D, mL in 3D) in a list of
    feature names, one per foreground label.

    Examples
    --------
    >>> size_columns(feature_names({"background": 0, "fluid": 1}, 2, True))
    [0]
    """
    # the other size-like measurements end in "_area" too; they are not the label's size
    others = tuple(f"_{m}" for m in (*SIZE_FEATURES, *PROBABILITY_FEATURES) if m != "area" and m.endswith("area"))
    return [i for i, n in enumerate(names) if n.endswith("_area") and not n.endswith(others)]


def _unit_size(spacing: Sequence[float]) -> float:
    # mm² per pixel in 2D; mL (= 1000 mm³) per voxel in 3D, as `medseg predict`'s volumes.csv
    size = float(np.prod(spacing))
    return size / 1000.0 if len(spacing) == 3 else size


def segmentation_features(label_map: np.ndarray, labels: Mapping[str, int],
                          probabilities: np.ndarray | None = None,
                          spacing: float | Sequence[float] | None = None) -> dict[str, float]:
    """Per-label measurements of one case's label map (and probability map).

    Parameters
    ----------
    label_map : ndarray of int, shape ([Z,] Y, X)
        The segmentation (a leading channel axis of 1 is accepted).
    labels : mapping str -> int
        Label names and values; value 0 (background) is not measured.
    probabilities : ndarray of float, shape (C, [Z,] Y, X), optional
        Per-class probabilities, channel ``c`` = ``sorted(labels.values())[c]`` (the predictor's layout).
    spacing : sequence of float, optional
        Pixel/voxel size in mm (array-axis order); default 1 mm.

    Returns
    -------
    dict
        ``{name: value}`` in the order of :func:`feature_names`.
    """
    label_map = np.asarray(label_map)
    if label_map.ndim in (3, 4) and label_map.shape[0] == 1:
        label_map = label_map[0]
    if label_map.ndim not in (2, 3):
        raise MedsegError(f"a label map must be 2D or 3D; got shape {label_map.shape}")
    spacing = check_spacing(spacing, label_map.ndim)
    unit = _unit_size(spacing)
    values = sorted(labels.values())
    if probabilities is not None:
        probabilities = np.asarray(probabilities)
        if probabilities.shape != (len(values),) + label_map.shape:
            raise MedsegError(f"probabilities of shape {probabilities.shape} do not match {len(values)} labels "
                              f"on a {label_map.shape} label map")
    out: dict[str, float] = {}
    structure = ndimage.generate_binary_structure(label_map.ndim, label_map.ndim)
    for name, value in labels.items():
        if value == 0:
            continue
        roi = label_map == value
        count = int(roi.sum())
        out[f"{name}_area"] = count * unit
        out[f"{name}_fraction"] = count / roi.size
        components, n = ndimage.label(roi, structure)
        out[f"{name}_components"] = float(n)
        sizes = np.bincount(components.ravel())[1:] if n else np.zeros(1, np.int64)
        out[f"{name}_largest_area"] = float(sizes.max()) * unit
        coords = np.nonzero(roi)
        for axis in range(label_map.ndim):
            if count:
                lower, upper = int(coords[axis].min()), int(coords[axis].max())
                out[f"{name}_extent_{axis}"] = (upper - lower + 1) * spacing[axis]
            else:
                out[f"{name}_extent_{axis}"] = 0.0
        for axis in range(label_map.ndim):
            # position as a fraction of the axis: comparable between image sizes (devices)
            out[f"{name}_centroid_{axis}"] = (float(coords[axis].mean()) + 0.5) / label_map.shape[axis] if count else 0.0
        if probabilities is not None:
            p = probabilities[values.index(value)].astype(np.float64, copy=False)
            out[f"{name}_probability_mean"] = float(p[roi].mean()) if count else 0.0
            out[f"{name}_probability_max"] = float(p.max())
            out[f"{name}_probability_p99"] = float(np.percentile(p, 99))
            out[f"{name}_probability_area"] = float(p.sum()) * unit
    return out
