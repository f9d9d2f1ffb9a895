"""Overlap, voxel-classification and volume metrics of two binary masks.

All functions take boolean-like arrays of the same shape (2D or 3D), an optional ``roi`` mask
(voxels outside it are ignored: they count neither as true nor as false anything), and return floats.

Conventions
-----------
With ``TP, FP, FN, TN`` the confusion counts inside the roi:

- Dice = F1 = 2 TP / (2 TP + FP + FN); IoU (Jaccard) = TP / (TP + FP + FN);
- precision = TP / (TP + FP); recall (sensitivity) = TP / (TP + FN);
- specificity = TN / (TN + FP); accuracy = (TP + TN) / (TP + FP + FN + TN);
- volume similarity = 1 - |FN - FP| / (2 TP + FP + FN) = 1 - |V_pred - V_ref| / (V_pred + V_ref).

**Empty masks.** A ratio whose denominator is 0 is defined, never ``nan`` from a division:
it is 1.0 when prediction and reference are both empty (perfect agreement: nothing to find, nothing
found) and 0.0 otherwise — so both empty gives Dice 1 and exactly one empty gives Dice 0. The one
exception is specificity when the reference covers the whole roi (no negatives): it is ``nan``
(undefined), and summaries count it as such.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from medseg.errors import MedsegError
from medseg.image import check_spacing


def _check_pair(prediction: np.ndarray, reference: np.ndarray, roi: np.ndarray | None = None):
    prediction = np.asarray(prediction).astype(bool, copy=False)
    reference = np.asarray(reference).astype(bool, copy=False)
    if prediction.shape != reference.shape:
        raise MedsegError(f"prediction shape {prediction.shape} differs from reference shape {reference.shape}")
    if roi is not None:
        roi = np.asarray(roi).astype(bool, copy=False)
        if roi.shape != reference.shape:
            raise MedsegError(f"roi shape {roi.shape} differs from reference shape {reference.shape}")
    return prediction, reference, roi


def confusion_counts(
    prediction: np.ndarray, reference: np.ndarray, roi: np.ndarray | None = None
) -> tuple[int, int, int, int]:
    """Counts ``(TP, FP, FN, TN)`` of two binary masks, inside ``roi`` when given.

    Examples
    --------
    >>> confusion_counts(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]))
    (1, 1, 1, 1)
    """
    prediction, reference, roi = _check_pair(prediction, reference, roi)
    if roi is not None:
        prediction, reference = prediction[roi], reference[roi]
        n = int(roi.sum())
    else:
        n = int(reference.size)
    # np.count_nonzero on a bool array is a popcount: far faster than summing an int array.
    tp = int(np.count_nonzero(prediction & reference))
    p = int(np.count_nonzero(prediction))
    r = int(np.count_nonzero(reference))
    fp, fn = p - tp, r - tp
    return tp, fp, fn, n - tp - fp - fn


def _ratio(num: float, den: float, both_empty: bool) -> float:
    if den == 0:
        return 1.0 if both_empty else 0.0
    return float(num) / float(den)


def overlap_metrics(
    prediction: np.ndarray,
    reference: np.ndarray,
    spacing: Sequence[float] | None = None,
    roi: np.ndarray | None = None,
) -> dict[str, float]:
    """All overlap, classification and volume metrics at once (one pass over the data).

    Parameters
    ----------
    prediction, reference : ndarray of bool
        Masks of the same 2D or 3D shape.
    spacing : sequence of float, optional
        Voxel size in mm, array-axis order. Default 1 mm.
    roi : ndarray of bool, optional
        Only voxels inside it are counted.

    Returns
    -------
    dict
        ``dice, iou, f1, precision, recall, specificity, accuracy, volume_similarity`` and
        ``volume_pred, volume_ref, volume_diff`` (= pred - ref) in mL for 3D, mm² for 2D.

    Examples
    --------
    >>> m = overlap_metrics(np.array([[1, 1], [0, 0]]), np.array([[1, 0], [0, 0]]), spacing=(2.0, 1.0))
    >>> round(m["dice"], 4), m["volume_pred"], m["volume_diff"]
    (0.6667, 4.0, 2.0)
    """
    tp, fp, fn, tn = confusion_counts(prediction, reference, roi)
    unit = _voxel_volume(spacing, np.ndim(reference))
    empty = (tp + fp == 0) and (tp + fn == 0)
    v_pred, v_ref = (tp + fp) * unit, (tp + fn) * unit
    dice = _ratio(2 * tp, 2 * tp + fp + fn, empty)
    return {
        "dice": dice,
        "iou": _ratio(tp, tp + fp + fn, empty),
        "f1": dice,
        "precision": _ratio(tp, tp + fp, empty),
        "recall": _ratio(tp, tp + fn, empty),
        "specificity": float(tn) / (tn + fp) if tn + fp else float("nan"),
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn, empty),
        "volume_similarity": 1.0 if empty else 1.0 - abs(fn - fp) / (2 * tp + fp + fn),
        "volume_pred": v_pred,
        "volume_ref": v_ref,
        "volume_diff": v_pred - v_ref,
    }


def dice(prediction: np.ndarray, reference: np.ndarray, roi: np.ndarray | None = None) -> float:
    """Dice = 2|P∩R| / (|P| + |R|); 1 when both empty, 0 when exactly one is empty.

    Examples
    --------
    >>> dice(np.array([1, 1, 0]), np.array([1, 0, 0]))
    0.6666666666666666
    """
    return overlap_metrics(prediction, reference, roi=roi)["dice"]


def iou(prediction: np.ndarray, reference: np.ndarray, roi: np.ndarray | None = None) -> float:
    """Intersection over union (Jaccard) = |P∩R| / |P∪R|; empty masks as for :func:`dice`.

    Examples
    --------
    >>> iou(np.array([1, 1, 0]), np.array([1, 0, 0]))
    0.5
    """
    return overlap_metrics(prediction, reference, roi=roi)["iou"]


jaccard = iou


def precision(prediction: np.ndarray, reference: np.ndarray, roi: np.ndarray | None = None) -> float:
    """TP / (TP + FP); 1 when both masks are empty, 0 when only the prediction is empty."""
    return overlap_metrics(prediction, reference, roi=roi)["precision"]


def recall(prediction: np.ndarray, reference: np.ndarray, roi: np.ndarray | None = None) -> float:
    """Sensitivity TP / (TP + FN); 1 when both masks are empty, 0 when only the reference is empty."""
    return overlap_metrics(prediction, reference, roi=roi)["recall"]


sensitivity = recall


def specificity(prediction: np.ndarray, reference: np.ndarray, roi: np.ndarray | None = None) -> float:
    """TN / (TN + FP); ``nan`` when the reference has no negatives inside the roi."""
    return overlap_metrics(prediction, reference, roi=roi)["specificity"]


def accuracy(prediction: np.ndarray, reference: np.ndarray, roi: np.ndarray | None = None) -> float:
    """(TP + TN) / number of voxels inside the roi."""
    return overlap_metrics(prediction, reference, roi=roi)["accuracy"]


def f1(prediction: np.ndarray, reference: np.ndarray, roi: np.ndarray | None = None) -> float:
    """F1 score of the voxel classification; identical to :func:`dice`."""
    return dice(prediction, reference, roi)


def volume_similarity(prediction: np.ndarray, reference: np.ndarray, roi: np.ndarray | None = None) -> float:
    """1 - |V_pred - V_ref| / (V_pred + V_ref); 1 when both are empty, 0 when exactly one is."""
    return overlap_metrics(prediction, reference, roi=roi)["volume_similarity"]


def volume(mask: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """Volume of a mask: mL for a 3D mask, mm² for a 2D one (``spacing`` in mm, array-axis order).

    Examples
    --------
    >>> volume(np.ones((10, 10, 10)), spacing=(1.0, 1.0, 1.0))
    1.0
    """
    mask = np.asarray(mask).astype(bool, copy=False)
    return int(np.count_nonzero(mask)) * _voxel_volume(spacing, mask.ndim)


def _voxel_volume(spacing: Sequence[float] | None, ndim: int) -> float:
    # mL = cm³ = 1000 mm³ in 3D; 2D areas stay in mm².
    return float(np.prod(check_spacing(spacing, ndim))) / (1000.0 if ndim == 3 else 1.0)
