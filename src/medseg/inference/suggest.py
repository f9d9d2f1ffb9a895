"""Active learning: which unlabelled cases should a physician label next.

Each case gets an **uncertainty** (mean normalised entropy of the model's probabilities over the
voxels near its predicted structures, see :func:`case_uncertainty`) and a **feature** vector (predicted
class fractions and a histogram of voxel entropies) for diversity. The ranking is a greedy k-center
selection weighted by uncertainty (Sener & Savarese, "Active learning for convolutional neural
networks: a core-set approach", ICLR 2018; uncertainty × diversity as in Yang et al., "Suggestive
annotation", MICCAI 2017): the first case is the most uncertain; each next one maximises
``uncertainty × (1 + distance to the nearest case already chosen / the largest such distance)``, so a
case much like one already chosen loses to an almost as uncertain but different one. For 3D cases the
most uncertain slices (across the model's slice axis, else the first axis) are listed too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medseg.errors import MedsegError
from medseg.inference.pseudolabel import voxel_confidence

ENTROPY_BINS = 10
# Rule: voxels whose foreground probability (1 - p(background)) reaches this share are "near the
# predicted structures"; the background far away is certain in every case and says nothing.
NEAR_STRUCTURE = 0.05
TOP_SLICES = 3


@dataclass
class CaseScore:
    """What :func:`score_case` measures of one case."""

    case: str
    uncertainty: float
    features: np.ndarray
    slices: list[tuple[int, float]] = field(default_factory=list)


def case_uncertainty(entropy: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean normalised entropy over the voxels near the predicted structures (all voxels if none).

    Examples
    --------
    >>> p = np.stack([np.full((4, 4), 0.5), np.full((4, 4), 0.5)])
    >>> case_uncertainty(1 - voxel_confidence(p), p)
    1.0
    """
    near = (1.0 - probabilities[0]) >= NEAR_STRUCTURE
    return float(entropy[near].mean() if near.any() else entropy.mean())


def score_case(case: str, probabilities: np.ndarray, slice_axis: int | None = 0) -> CaseScore:
    """Uncertainty, diversity features and (3D) the most uncertain slices of ``(K, *S)`` probabilities."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    entropy = 1.0 - voxel_confidence(probabilities)
    uncertainty = case_uncertainty(entropy, probabilities)
    near = (1.0 - probabilities[0]) >= NEAR_STRUCTURE
    values = entropy[near] if near.any() else entropy.ravel()
    hist = np.histogram(values, bins=ENTROPY_BINS, range=(0.0, 1.0))[0] / max(values.size, 1)
    fractions = probabilities.reshape(len(probabilities), -1).mean(1)
    features = np.concatenate([fractions, hist]).astype(np.float64)
    slices: list[tuple[int, float]] = []
    if entropy.ndim == 3:
        axis = 0 if slice_axis is None else int(slice_axis)
        moved_e, moved_n = np.moveaxis(entropy, axis, 0), np.moveaxis(near, axis, 0)
        per = [float(e[n].mean()) if n.any() else 0.0 for e, n in zip(moved_e, moved_n)]
        order = np.argsort(per)[::-1][:TOP_SLICES]
        slices = [(int(i), round(per[i], 4)) for i in order if per[i] > 0]
    return CaseScore(case, uncertainty, features, slices)


def rank(scores: Sequence[CaseScore], k: int | None = None) -> list[dict[str, Any]]:
    """Uncertainty-weighted k-center greedy order of ``scores``; the first ``k`` (all when None).

    Returns
    -------
    list of dict
        ``rank``, ``case``, ``score``, ``uncertainty``, ``distance`` (to the nearest case ranked
        before, in standardised feature units), ``reason``, ``slices`` (3D: ``slice:uncertainty``).

    Examples
    --------
    >>> a = CaseScore("a", 0.9, np.array([0.0, 1.0])); b = CaseScore("b", 0.88, np.array([0.0, 1.01]))
    >>> c = CaseScore("c", 0.8, np.array([1.0, 0.0]))
    >>> [r["case"] for r in rank([a, b, c])]
    ['a', 'c', 'b']
    """
    if not scores:
        raise MedsegError("no case to rank")
    k = len(scores) if k is None else max(1, min(int(k), len(scores)))
    features = np.stack([s.features for s in scores])
    std = features.std(0)
    features = (features - features.mean(0)) / np.where(std > 0, std, 1.0)
    uncertainty = np.array([s.uncertainty for s in scores])
    by_uncertainty = {int(i): r + 1 for r, i in enumerate(np.argsort(-uncertainty, kind="stable"))}
    chosen: list[int] = []
    nearest = np.full(len(scores), np.inf)
    rows = []
    for position in range(1, k + 1):
        if not chosen:
            pick, distance, score = int(np.argmax(uncertainty)), float("nan"), float(uncertainty.max())
        else:
            finite = nearest[np.isfinite(nearest)]
            scale = finite.max() if finite.size and finite.max() > 0 else 1.0
            combined = uncertainty * (1.0 + nearest / scale)
            combined[chosen] = -np.inf
            pick = int(np.argmax(combined))
            distance, score = float(nearest[pick]), float(combined[pick])
        chosen.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(features - features[pick], axis=1))
        s = scores[pick]
        reason = f"uncertainty {s.uncertainty:.3f} (#{by_uncertainty[pick]} of {len(scores)})"
        if chosen[1:]:
            reason += f", feature distance {distance:.2f} to the nearest case ranked before"
        rows.append({"rank": position, "case": s.case, "score": round(score, 5), "uncertainty": round(s.uncertainty, 5),
                     "distance": round(distance, 4) if not np.isnan(distance) else "", "reason": reason,
                     "slices": " ".join(f"{i}:{u}" for i, u in s.slices)})
    return rows


def suggest(predictor: Any, cases: Sequence[tuple[str, Sequence[Path]]], k: int | None = None,
            progress: Any = None) -> list[dict[str, Any]]:
    """Rank unlabelled ``cases`` (name, files) for labelling with ``predictor`` (see :func:`rank`)."""
    from medseg.io import read_image

    config = predictor.config
    if config.regions or config.activation != "softmax":
        raise MedsegError("suggest needs a model with one softmax class per label (not region outputs)")
    if not cases:
        raise MedsegError("no input images to rank")
    scores = []
    for i, (name, paths) in enumerate(cases):
        paths = [Path(p) for p in paths]
        image = read_image(paths if len(paths) > 1 else paths[0])
        _, probs = predictor.predict_with_probabilities(image)
        scores.append(score_case(name, probs.array, config.slice_axis))
        if progress is not None:
            progress(i + 1, len(cases), name)
    return rank(scores, k)
