"""Threshold-free metrics of a probability map: exact ROC AUC and average precision (PR AUC).

Both sort the scores once (O(n log n)) and evaluate the curves at every distinct score, exactly as
scikit-learn's ``roc_auc_score`` and ``average_precision_score`` do, including ties: voxels with equal
scores enter the curve together (one step for ROC, trapezoid between its ends; one point for PR).
No threshold sweep, no binning. Our own code (rather than calling scikit-learn) because we need both
from one sort of millions of voxels and an roi restriction, and scikit-learn validates and copies its
input for each call.

Undefined cases return ``nan`` (scikit-learn raises or warns instead): ROC AUC when the reference has
no positives or no negatives inside the roi; average precision when it has no positives.
"""

from __future__ import annotations

import numpy as np

from medseg.errors import MedsegError


def _curve(probabilities: np.ndarray, reference: np.ndarray, roi: np.ndarray | None):
    """Cumulative (tps, fps) at each distinct score, scores descending."""
    scores = np.asarray(probabilities)
    labels = np.asarray(reference).astype(bool, copy=False)
    if scores.shape != labels.shape:
        raise MedsegError(f"probability map shape {scores.shape} differs from reference shape {labels.shape}")
    if roi is not None:
        roi = np.asarray(roi).astype(bool, copy=False)
        if roi.shape != labels.shape:
            raise MedsegError(f"roi shape {roi.shape} differs from reference shape {labels.shape}")
        scores, labels = scores[roi], labels[roi]
    scores, labels = scores.ravel(), labels.ravel()
    if scores.size and not np.all(np.isfinite(scores)):
        raise MedsegError("probability map contains nan or inf")
    order = np.argsort(scores, kind="stable")[::-1]
    scores, labels = scores[order], labels[order]
    # Last index of each run of equal scores: ties form a single step of the curve.
    ends = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1] if scores.size else np.zeros(0, int)
    tps = np.cumsum(labels, dtype=np.int64)[ends]
    fps = ends + 1 - tps
    return tps.astype(np.float64), fps.astype(np.float64)


def roc_auc(probabilities: np.ndarray, reference: np.ndarray, roi: np.ndarray | None = None) -> float:
    """Area under the ROC curve (trapezoidal over all distinct scores; equals scikit-learn).

    Parameters
    ----------
    probabilities : ndarray of float
        Foreground probability (or any score) per voxel.
    reference : ndarray of bool
        Reference mask, same shape.
    roi : ndarray of bool, optional
        Only voxels inside it count (e.g. the retina's field of view).

    Returns
    -------
    float
        In [0, 1]; ``nan`` when the reference has no positives or no negatives.

    Examples
    --------
    >>> roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    0.75
    """
    tps, fps = _curve(probabilities, reference, roi)
    if tps.size == 0 or tps[-1] == 0 or fps[-1] == 0:
        return float("nan")
    tpr = np.r_[0.0, tps] / tps[-1]
    fpr = np.r_[0.0, fps] / fps[-1]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def average_precision(
    probabilities: np.ndarray, reference: np.ndarray, roi: np.ndarray | None = None
) -> float:
    """Average precision ``AP = Σ_k (R_k - R_{k-1}) P_k`` over distinct scores (step-wise PR AUC,
    no interpolation; equals scikit-learn's ``average_precision_score``).

    Returns ``nan`` when the reference has no positives.

    Examples
    --------
    >>> round(average_precision(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])), 4)
    0.8333
    """
    tps, fps = _curve(probabilities, reference, roi)
    if tps.size == 0 or tps[-1] == 0:
        return float("nan")
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


pr_auc = average_precision
