"""Evaluate one case: every metric for every label and label group (region)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from medseg.errors import MedsegError
from medseg.metrics.overlap import overlap_metrics
from medseg.metrics.probability import average_precision, roc_auc
from medseg.metrics.surface import Method, surface_metrics

#: Metric names in the order :func:`evaluate_case` returns them (probability metrics only with probabilities).
METRICS = (
    "dice", "iou", "f1", "precision", "recall", "specificity", "accuracy", "volume_similarity",
    "volume_pred", "volume_ref", "volume_diff", "hausdorff", "hd95", "assd", "nsd",
)
PROBABILITY_METRICS = ("roc_auc", "pr_auc")
#: Metrics for which larger is better (the others are distances or volumes).
HIGHER_IS_BETTER = frozenset(
    {"dice", "iou", "f1", "precision", "recall", "specificity", "accuracy", "volume_similarity", "nsd",
     "roc_auc", "pr_auc"}
)


def label_values(value: int | Sequence[int]) -> tuple[int, ...]:
    """A label (one int) or a region (several ints) as a tuple of label values."""
    if isinstance(value, (int, np.integer)):
        return (int(value),)
    values = tuple(int(v) for v in value)
    if not values:
        raise MedsegError("a region must list at least one label value")
    return values


def label_mask(label_map: np.ndarray, value: int | Sequence[int]) -> np.ndarray:
    """Boolean mask of the voxels whose label is ``value`` or, for a region, any of its values.

    Examples
    --------
    >>> label_mask(np.array([0, 1, 2, 3]), [1, 3]).tolist()
    [False, True, False, True]
    """
    values = label_values(value)
    if len(values) == 1:
        return np.asarray(label_map) == values[0]
    return np.isin(label_map, values)


def _probability_of(probabilities: np.ndarray, values: tuple[int, ...], n_items: int) -> np.ndarray:
    if probabilities.shape[0] == 1 and n_items == 1:
        return probabilities[0]
    if max(values) >= probabilities.shape[0]:
        raise MedsegError(
            f"probabilities have {probabilities.shape[0]} channels but label value {max(values)} needs "
            f"channel {max(values)} (one channel per class value, background = 0)"
        )
    # A region's probability is the sum of its classes' probabilities (softmax outputs are exclusive).
    return probabilities[list(values)].sum(axis=0)


def evaluate_case(
    prediction: np.ndarray,
    reference: np.ndarray,
    labels: Mapping[str, int | Sequence[int]],
    spacing: Sequence[float] | None = None,
    roi: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    nsd_tolerance: float = 1.0,
    method: Method = "auto",
) -> dict[str, dict[str, float]]:
    """All metrics for each label or region of one case.

    Parameters
    ----------
    prediction, reference : ndarray of int
        Label maps, same 2D or 3D shape (no channel axis).
    labels : mapping of str to int or sequence of int
        Name -> label value, or name -> several values for a region (e.g. BraTS whole tumour
        ``[1, 2, 3]``): the region's mask is the union of those labels.
    spacing : sequence of float, optional
        Voxel size in mm, array-axis order. Default 1 mm.
    roi : ndarray of bool, optional
        Region of interest (e.g. the retina's field of view): voxels outside it are ignored by every
        metric (masks are cut to the roi before overlap, volume, surface and probability metrics).
    probabilities : ndarray of float, optional
        ``(C, *shape)`` with channel ``c`` the probability of class value ``c`` (a region uses the sum
        of its classes), or a single foreground channel ``(1, *shape)`` / ``shape`` when exactly one
        label is evaluated. Adds ``roc_auc`` and ``pr_auc``.
    nsd_tolerance : float
        Tolerance of the normalised surface Dice, mm.
    method : {"auto", "edt", "kdtree"}
        Surface-distance backend (all exact).

    Returns
    -------
    dict
        ``{name: {metric: value}}`` with the metrics of :data:`METRICS` (and :data:`PROBABILITY_METRICS`).
        Empty masks follow the documented rules: both empty -> Dice 1, distances 0; exactly one empty
        -> Dice 0, distances inf.

    Examples
    --------
    >>> ref = np.zeros((10, 10), int); ref[2:6, 2:6] = 1
    >>> out = evaluate_case(ref, ref, {"lesion": 1}, spacing=(1.0, 1.0))
    >>> out["lesion"]["dice"], out["lesion"]["hd95"]
    (1.0, 0.0)
    """
    prediction, reference = np.asarray(prediction), np.asarray(reference)
    if prediction.shape != reference.shape:
        raise MedsegError(f"prediction shape {prediction.shape} differs from reference shape {reference.shape}")
    if not labels:
        raise MedsegError("no labels to evaluate")
    if roi is not None:
        roi = np.asarray(roi).astype(bool, copy=False)
        if roi.shape != reference.shape:
            raise MedsegError(f"roi shape {roi.shape} differs from reference shape {reference.shape}")
    if probabilities is not None:
        probabilities = np.asarray(probabilities)
        if probabilities.shape == reference.shape:
            probabilities = probabilities[None]
        if probabilities.shape[1:] != reference.shape:
            raise MedsegError(
                f"probabilities of shape {probabilities.shape} do not fit label maps of shape {reference.shape}"
            )
        if probabilities.shape[0] == 1 and len(labels) != 1:
            raise MedsegError("a single-channel probability map can only be evaluated against one label")
    results: dict[str, dict[str, float]] = {}
    for name, value in labels.items():
        values = label_values(value)
        p, r = label_mask(prediction, values), label_mask(reference, values)
        if roi is not None:
            p, r = p & roi, r & roi
        metrics = overlap_metrics(p, r, spacing, roi=roi)  # roi: true negatives only inside it
        metrics.update(surface_metrics(p, r, spacing, tolerance=nsd_tolerance, method=method))
        if probabilities is not None:
            prob = _probability_of(probabilities, values, len(labels))
            metrics["roc_auc"] = roc_auc(prob, r, roi)
            metrics["pr_auc"] = average_precision(prob, r, roi)
        results[str(name)] = metrics
    return results
