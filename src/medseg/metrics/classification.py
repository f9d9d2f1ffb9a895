"""Case-level classification metrics: AUC, accuracy, sensitivity/specificity at a threshold, confusion
matrix, expected calibration error, and bootstrap confidence intervals (seeded).

Binary tasks take the probability of the positive class; ``threshold`` turns it into the decision
(positive where ``p >= threshold``), as the cascade decides. AUC is medseg's exact ROC AUC
(equal to scikit-learn's, faster for the bootstrap); the expected calibration error is ours (scikit-learn has the reliability curve but not
the ECE): equal-width bins of the predicted probability, ``sum_b n_b/n * |mean(y)_b - mean(p)_b|``.

Examples
--------
>>> import numpy as np
>>> y = np.array([0, 0, 1, 1]); p = np.array([0.1, 0.6, 0.7, 0.9])
>>> m = binary_metrics(y, p, threshold=0.5)
>>> m["auc"], m["sensitivity"], m["specificity"], m["confusion_matrix"]
(1.0, 1.0, 0.5, [[1, 1], [0, 2]])
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from medseg.errors import MedsegError

#: bins of the expected calibration error (Guo et al., ICML 2017 use 15; 10 suits tens of cases)
ECE_BINS = 10
BOOTSTRAP_SAMPLES = 2000
CONFIDENCE = 0.95


def _check(y_true: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(np.int64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise MedsegError(f"{y.size} true classes but {p.size} probabilities")
    if y.size == 0:
        raise MedsegError("no cases to evaluate")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise MedsegError("probabilities must be finite and lie in [0, 1]")
    if not np.isin(y, (0, 1)).all():
        raise MedsegError("binary metrics need true classes 0/1")
    return y, p


def expected_calibration_error(y_true: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of positive-class probabilities (equal-width bins on [0, 1]).

    Examples
    --------
    >>> expected_calibration_error([0, 1, 1, 0], [0.0, 1.0, 1.0, 0.0])
    0.0
    >>> round(expected_calibration_error([0, 0, 0, 0], [0.8, 0.8, 0.8, 0.8]), 3)
    0.8
    """
    y, p = _check(y_true, p)
    # bin b holds p in [b/bins, (b+1)/bins); p == 1 goes into the last bin
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in np.unique(index):
        inside = index == b
        total += inside.sum() / y.size * abs(y[inside].mean() - p[inside].mean())
    return float(total)


def reliability_table(y_true: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Per non-empty bin: its range, case count, mean predicted probability and observed frequency."""
    y, p = _check(y_true, p)
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    rows = []
    for b in np.unique(index):
        inside = index == b
        rows.append({"lower": b / bins, "upper": (b + 1) / bins, "n": int(inside.sum()),
                     "mean_probability": float(p[inside].mean()), "observed": float(y[inside].mean())})
    return rows


def binary_metrics(y_true: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """AUC, accuracy, sensitivity, specificity, PPV, NPV, F1, Brier score, ECE and confusion matrix.

    Parameters
    ----------
    y_true : array of 0/1
        True class per case (1 = positive, e.g. "refer").
    p : array of float
        Predicted probability of the positive class.
    threshold : float
        Decision: positive where ``p >= threshold``.

    Returns
    -------
    dict
        Metrics; ``confusion_matrix`` is ``[[TN, FP], [FN, TP]]`` (rows: true class). Undefined ratios
        (e.g. sensitivity without positives, AUC with one class) are ``nan``.
    """
    from medseg.metrics.probability import roc_auc

    y, p = _check(y_true, p)
    decision = p >= threshold
    positive = y == 1
    tp, fn = int((decision & positive).sum()), int((~decision & positive).sum())
    fp, tn = int((decision & ~positive).sum()), int((~decision & ~positive).sum())

    def ratio(a: float, b: float) -> float:
        return float(a / b) if b else float("nan")

    return {
        "n": int(y.size), "positives": int(y.sum()), "threshold": float(threshold),
        "auc": roc_auc(p, positive),  # exact, equals scikit-learn's roc_auc_score; nan with one class
        "accuracy": float((tp + tn) / y.size),
        "sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp), "npv": ratio(tn, tn + fn), "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "brier": float(np.mean((p - y) ** 2)),
        "ece": expected_calibration_error(y, p),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


SCALAR_METRICS = ("auc", "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "brier", "ece")


def bootstrap_intervals(y_true: np.ndarray, p: np.ndarray, threshold: float = 0.5,
                        n_bootstrap: int = BOOTSTRAP_SAMPLES, confidence: float = CONFIDENCE,
                        seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap confidence intervals of :func:`binary_metrics` (cases resampled with
    replacement, ``seed`` fixed: the same inputs give the same intervals). Resamples where a metric is
    undefined (e.g. AUC with one class drawn) are left out of that metric's interval.

    The expected calibration error is biased upwards under resampling (duplicated cases fill bins
    unevenly), so its interval can lie above the estimate: read it as a range of how large it may be.

    A resample is a vector of case weights (how often each case was drawn), so every metric of all
    resamples is a few matrix products (AUC with ties handled as in :func:`binary_metrics`).

    Examples
    --------
    >>> ci = bootstrap_intervals([0, 0, 1, 1, 0, 1], [0.2, 0.4, 0.6, 0.9, 0.1, 0.8], n_bootstrap=200)
    >>> ci["auc"]
    (1.0, 1.0)
    """
    y, p = _check(y_true, p)
    n = y.size
    rng = np.random.default_rng(seed)
    w = np.zeros((n_bootstrap, n))
    np.add.at(w, (np.repeat(np.arange(n_bootstrap), n), rng.integers(0, n, n_bootstrap * n)), 1.0)
    pos, d = y.astype(np.float64), (p >= threshold).astype(np.float64)
    tp, fn = w @ (pos * d), w @ (pos * (1 - d))
    fp, tn = w @ ((1 - pos) * d), w @ ((1 - pos) * (1 - d))
    # AUC: per distinct score, the positive weight times (negative weight below + half the tied one)
    values, inverse = np.unique(p, return_inverse=True)
    onehot = np.zeros((n, values.size))
    onehot[np.arange(n), inverse] = 1.0
    wp, wn = (w * pos) @ onehot, (w * (1 - pos)) @ onehot
    below = np.cumsum(wn, axis=1) - wn
    # ECE: per calibration bin |sum of outcomes - sum of probabilities| / n
    bins = np.minimum((p * ECE_BINS).astype(np.int64), ECE_BINS - 1)
    onebin = np.zeros((n, ECE_BINS))
    onebin[np.arange(n), bins] = 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = {
            "auc": (wp * (below + 0.5 * wn)).sum(1) / (wp.sum(1) * wn.sum(1)),
            "accuracy": (tp + tn) / n, "sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp),
            "ppv": tp / (tp + fp), "npv": tn / (tn + fn), "f1": 2 * tp / (2 * tp + fp + fn),
            "brier": w @ ((p - y) ** 2) / n,
            "ece": np.abs((w * pos) @ onebin - (w * p) @ onebin).sum(1) / n,
        }
    alpha = (1.0 - confidence) / 2.0
    out = {}
    for k in SCALAR_METRICS:
        v = draws[k][np.isfinite(draws[k])]
        out[k] = (float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))) if v.size else (float("nan"),) * 2
    return out


def evaluate_binary(y_true: np.ndarray, p: np.ndarray, threshold: float = 0.5, *,
                    n_bootstrap: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict[str, Any]:
    """:func:`binary_metrics` with bootstrap intervals (``<metric>_ci``) and the reliability table."""
    metrics = binary_metrics(y_true, p, threshold)
    for k, (lo, hi) in bootstrap_intervals(y_true, p, threshold, n_bootstrap=n_bootstrap, seed=seed).items():
        metrics[f"{k}_ci"] = [lo, hi]
    metrics["reliability"] = reliability_table(y_true, p)
    metrics["bootstrap"] = {"samples": n_bootstrap, "confidence": CONFIDENCE, "seed": seed}
    return metrics


def decisions_by_class(true_classes: Sequence[str], p: np.ndarray, threshold: float) -> dict[str, dict[str, Any]]:
    """Per true class: its cases, how many were decided positive (``p >= threshold``), that share and the
    mean probability — each diagnosis's referral rate when several diagnoses share one decision (CNV and DME
    referred, drusen and normal not).

    Examples
    --------
    >>> d = decisions_by_class(["CNV", "DME", "NORMAL", "NORMAL"], np.array([0.9, 0.4, 0.2, 0.7]), 0.5)
    >>> d["CNV"]["decided_positive"], d["NORMAL"]["share_positive"]
    (1, 0.5)
    """
    p = np.asarray(p, dtype=np.float64)
    names = np.asarray(true_classes, dtype=object)
    if names.shape != p.shape:
        raise MedsegError(f"{names.size} true classes for {p.size} probabilities")
    out = {}
    for name in sorted(set(names.tolist())):
        mine = p[names == name]
        positive = int((mine >= threshold).sum())
        out[str(name)] = {"cases": int(mine.size), "decided_positive": positive,
                          "share_positive": positive / mine.size, "mean_probability": float(mine.mean())}
    return out
