"""The decision threshold of a binary model, chosen on cases that are not the test set.

A softmax model labels a pixel foreground when ``p(foreground) > p(background)``, i.e. at ``p ≥ 0.5``.
That is the error-minimising rule only when the probabilities are calibrated; a model trained with a Dice
term over-segments thin structures (retinal vessels) and is more accurate at a higher threshold. This
module finds the threshold that maximises a pixel metric over given cases — exactly, over every distinct
probability value, not on a coarse grid — and :class:`medseg.Predictor` applies it when the model
folder's ``config.json`` records it (``decision_threshold``; ``medseg threshold`` writes it).
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import numpy as np

from medseg.errors import MedsegError

Metric = Literal["accuracy", "f1"]


def _pooled(probabilities, references, rois, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and truths of every scored pixel of every case, as two flat arrays."""
    if metric not in ("accuracy", "f1"):
        raise MedsegError(f"metric must be 'accuracy' or 'f1'; got {metric!r}")
    if len(probabilities) != len(references) or not probabilities:
        raise MedsegError("one reference per probability map is needed, and at least one case")
    rois = list(rois) if rois is not None else [None] * len(probabilities)
    scores, truths = [], []
    for p, r, roi in zip(probabilities, references, rois):
        p, r = np.asarray(p, np.float64), np.asarray(r) != 0
        if p.shape != r.shape:
            raise MedsegError(f"probability map shape {p.shape} differs from reference shape {r.shape}")
        inside = np.ones(p.shape, bool) if roi is None else np.asarray(roi) != 0
        scores.append(p[inside])
        truths.append(r[inside])
    score, truth = np.concatenate(scores), np.concatenate(truths)
    if score.size == 0:
        raise MedsegError("no pixels to score (empty regions of interest)")
    return score, truth


def _metric(tp, fp, positives: int, total: int, metric: str):
    if metric == "accuracy":
        return (tp + (total - positives - fp)) / total
    denominator = 2 * tp + fp + (positives - tp)
    return np.divide(2 * tp, denominator, out=np.ones(np.shape(tp)), where=denominator > 0)


def score_at(
    probabilities: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    threshold: float,
    rois: Sequence[np.ndarray | None] | None = None,
    metric: Metric = "accuracy",
) -> float:
    """``metric`` of the labelling ``p ≥ threshold``, pooled over all pixels (arguments as for
    :func:`best_threshold`).

    Examples
    --------
    >>> score_at([np.array([0.2, 0.6, 0.8])], [np.array([0, 0, 1])], 0.5)
    0.6666666666666666
    """
    score, truth = _pooled(probabilities, references, rois, metric)
    labelled = score >= threshold
    tp, fp = np.count_nonzero(labelled & truth), np.count_nonzero(labelled & ~truth)
    return float(_metric(tp, fp, int(truth.sum()), score.size, metric))


def best_threshold(
    probabilities: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    rois: Sequence[np.ndarray | None] | None = None,
    metric: Metric = "accuracy",
) -> tuple[float, float]:
    """The threshold ``t`` maximising ``metric`` of the labelling ``p ≥ t``, pooled over all pixels.

    Parameters
    ----------
    probabilities : sequence of ndarray
        Foreground probability maps, one per case.
    references : sequence of ndarray
        Reference masks (non-zero = foreground), shaped like the probability maps.
    rois : sequence of ndarray or None, optional
        Pixels to score per case (e.g. the retina's field of view); None scores every pixel.
    metric : {"accuracy", "f1"}
        Pixel accuracy, or F1 (= Dice) of the foreground.

    Returns
    -------
    threshold, score : float
        The midpoint between the lowest probability labelled foreground at the optimum and the next
        lower distinct value (robust to float rounding when re-applied), and the metric there.

    Examples
    --------
    >>> p = np.array([0.1, 0.4, 0.6, 0.7, 0.9])
    >>> r = np.array([0, 0, 0, 1, 1])
    >>> best_threshold([p], [r])
    (0.6499999999999999, 1.0)
    """
    score, truth = _pooled(probabilities, references, rois, metric)
    # Sort by decreasing probability: labelling the first k pixels foreground is the threshold
    # "p ≥ k-th value"; only the last index of each run of equal values is a realisable cut.
    order = np.argsort(-score, kind="stable")
    score, truth = score[order], truth[order]
    true_positives = np.cumsum(truth)
    false_positives = np.arange(1, score.size + 1) - true_positives
    cut = np.flatnonzero(np.r_[score[1:] != score[:-1], True])
    tp, fp = true_positives[cut], false_positives[cut]
    values = _metric(tp, fp, int(truth.sum()), score.size, metric)
    best = int(np.argmax(values))
    lowest_in = score[cut[best]]
    next_lower = score[cut[best] + 1] if cut[best] + 1 < score.size else 0.0
    return float((lowest_in + next_lower) / 2), float(values[best])


#: the grids :func:`best_largest_component_threshold` searches (its score changes with t in jumps: no sorted pass)
COARSE_STEP, FINE_STEP = 0.05, 0.01


def best_largest_component_threshold(
    probabilities: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    rois: Sequence[np.ndarray | None] | None = None,
    metric: Metric = "f1",
    grid: Sequence[float] | None = None,
) -> tuple[float, float]:
    """The threshold ``t`` maximising ``metric`` of the largest connected component of ``p ≥ t``, pooled over
    all pixels: what a model outputs whose postprocessing keeps the largest component (arguments and returns
    as for :func:`best_threshold`). A blob far from the structure lowers the plain optimum's score and pushes
    it up, though the postprocessing removes the blob anyway. Searched every 0.05, then every 0.01 around
    the best (or only on ``grid``); of equal scores, the threshold nearest 0.5 (the argmax).

    Examples
    --------
    >>> r = np.zeros((40, 40), bool); r[2:12, 2:12] = True
    >>> p = np.where(r, 0.8, 0.0); p[4:10, 4:10] = 0.99                     # a confident core, a fainter rim
    >>> for rows, cols in ((20, 20), (30, 2), (20, 2), (30, 20)):            # false blobs, each smaller
    ...     p[rows:rows + 5, cols:cols + 10] = 0.85
    >>> round(best_threshold([p], [r], metric="f1")[0], 3), best_largest_component_threshold([p], [r])
    (0.92, (0.5, 1.0))
    """
    score = _largest_component_scorer(probabilities, references, rois, metric)
    best = _search(score, grid)
    return best, score(best)


def _largest_component_scorer(probabilities: Sequence[np.ndarray], references: Sequence[np.ndarray],
                              rois: Sequence[np.ndarray | None] | None, metric: Metric) -> Callable[[float], float]:
    """``t`` → ``metric`` of the largest component of ``p ≥ t``, pooled over the cases; each ``t`` labelled once."""
    from medseg.postprocessing import keep_largest_component
    from medseg.preprocessing.crop import bounding_box

    _pooled(probabilities, references, rois, metric)  # the same checks as best_threshold's
    rois = list(rois) if rois is not None else [None] * len(probabilities)
    cases = []
    for p, r, roi in zip(probabilities, references, rois):
        p, r = np.asarray(p, np.float32), np.asarray(r) != 0
        inside = np.ones(p.shape, bool) if roi is None else np.asarray(roi) != 0
        # only voxels that some threshold labels, or the reference holds, can change the score: crop to them
        box = tuple(slice(start, stop) for start, stop in bounding_box((p >= FINE_STEP) | r))
        cases.append((p[box], r[box], inside[box], int((r & inside).sum()), int(inside.sum())))
    positives, total = sum(c[3] for c in cases), sum(c[4] for c in cases)
    scores: dict[float, float] = {}

    def score(t: float) -> float:
        if t not in scores:
            tp = fp = 0
            for p, r, inside, _, _ in cases:
                kept = (keep_largest_component((p >= t).astype(np.uint8)) > 0) & inside
                tp += int((kept & r).sum())
                fp += int((kept & ~r).sum())
            scores[t] = float(_metric(tp, fp, positives, total, metric))
        return scores[t]

    return score


def _search(score: Callable[[float], float], grid: Sequence[float] | None) -> float:
    """The best ``t`` on ``grid``, else every 0.05 then every 0.01 around the best; ties go to the one nearest 0.5."""
    def rank(t: float) -> tuple[float, float]:
        return score(t), -abs(t - 0.5)

    if grid is not None:
        return float(max(grid, key=rank))
    best = max(np.round(np.arange(COARSE_STEP, 1.0, COARSE_STEP), 2), key=rank)
    fine = np.round(np.arange(best - COARSE_STEP + FINE_STEP, best + COARSE_STEP, FINE_STEP), 2)
    return float(max((t for t in fine if 0.0 < t < 1.0), key=rank))


def choose_threshold(
    probabilities: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    rois: Sequence[np.ndarray | None] | None = None,
    metric: Metric = "f1",
    largest_component: bool = False,
) -> tuple[float, float, float]:
    """(best threshold, its score, the score at 0.5): of ``p ≥ t`` (:func:`best_threshold`), or with
    ``largest_component`` of its largest component (:func:`best_largest_component_threshold`)."""
    if largest_component:
        score = _largest_component_scorer(probabilities, references, rois, metric)
        chosen = _search(score, None)
        return chosen, score(chosen), score(0.5)  # 0.5 is on the coarse grid: already labelled
    chosen, score = best_threshold(probabilities, references, rois, metric=metric)
    return chosen, score, score_at(probabilities, references, 0.5, rois, metric=metric)
