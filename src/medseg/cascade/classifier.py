"""The classifier of the cascade: chosen by measurement, calibrated, with a recorded decision threshold.

Three candidates, all scikit-learn, all suited to tens of cases, simplest first:

- ``size``: the same logistic regression on the size of each label alone (``<label>_area``: one number
  per label, the measurement a clinician reads first — "fluid present" is "fluid area > 0"); a candidate
  when the feature names are known. With tens of cases the dozen-feature models fit noise that one
  number cannot: on DukeDME (66 B-scans, nested leave-one-patient-out, BENCHMARKS.md session 32) it had
  the lowest log loss on every fold, and the cascade's AUC rose from 0.902 to 0.963;
- ``logistic``: log(1 + x) of every measurement (sizes are heavy-tailed), standardised, L2 logistic
  regression;
- ``gradient_boosting``: 50 depth-2 trees (``GradientBoostingClassifier``), shrinkage 0.1.

Each is wrapped in Platt (sigmoid) calibration (``CalibratedClassifierCV``): isotonic calibration needs
hundreds of cases, sigmoid two parameters. The rules (each recorded with its numbers):

- :func:`rule_classifier_choice`: the candidate with the lower **cross-validated log loss** (grouped by
  patient, out-of-fold probabilities) wins; log loss is a proper score, so it rewards ranking and
  calibration at once. Within ``TIE_LOG_LOSS`` of the best, the simplest candidate wins.
- :func:`rule_threshold`: the decision threshold on the chosen model's out-of-fold probabilities of the
  training cases — ``sensitivity:0.95`` by default (the highest threshold that keeps sensitivity ≥ 0.95:
  the positive class is the one to refer, and a missed referral costs more than an unneeded one), or
  ``youden`` (maximise sensitivity + specificity − 1). Measured on DukeDME (nested leave-one-patient-out,
  BENCHMARKS.md session 32): ``youden`` kept the thresholds high and missed 9 of 50 B-scans with fluid and
  one patient, ``sensitivity:0.95`` missed 2 and no patient, at the same specificity (14 of 16).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = np.r_[rng.normal(0, 1, (20, 2)), rng.normal(3, 1, (20, 2))]; y = np.r_[[0] * 20, [1] * 20]
>>> fit = fit_classifier(X, y, groups=np.arange(40) // 2, seed=0)
>>> fit.name in CANDIDATES, 0 < fit.threshold["value"] < 1
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from medseg.cascade.features import size_columns
from medseg.errors import MedsegError

CANDIDATES = ("size", "logistic", "gradient_boosting")  # simplest first: the order breaks ties
CALIBRATION = "sigmoid"
MAX_FOLDS = 5            # grouped folds of the selection and threshold (fewer when fewer groups/cases)
INNER_FOLDS = 3          # calibration folds inside CalibratedClassifierCV (fewer with fewer cases)
TIE_LOG_LOSS = 0.005     # log-loss difference below which the simpler model wins
DEFAULT_CRITERION = "sensitivity:0.95"  # see rule_threshold in the module docstring
MIN_CASES_PER_CLASS = 3  # every training fold must keep 2 of each class for the inner calibration


def make_classifier(name: str, seed: int = 0, inner_folds: int = INNER_FOLDS,
                    feature_names: Sequence[str] | None = None) -> Any:
    """A fresh, calibrated scikit-learn classifier of candidate ``name`` (see module docstring);
    ``size`` needs the ``feature_names`` of the table's columns."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    if name in ("size", "logistic"):
        columns = size_columns(feature_names or []) if name == "size" else None
        if name == "size" and not columns:
            raise MedsegError("the size classifier needs the table's feature names, with a <label>_area column")
        base = make_pipeline(FunctionTransformer(_log1p, kw_args={"columns": columns}), StandardScaler(),
                             LogisticRegression(C=1.0, max_iter=1000))
    elif name == "gradient_boosting":
        base = GradientBoostingClassifier(n_estimators=50, max_depth=2, learning_rate=0.1, random_state=seed)
    else:
        raise MedsegError(f"unknown classifier {name!r}; choose from {', '.join(CANDIDATES)}")
    # unshuffled stratified folds: the fit is a deterministic function of the table (refit on load)
    return CalibratedClassifierCV(base, method=CALIBRATION, cv=StratifiedKFold(inner_folds))


def _log1p(x: np.ndarray, columns: list[int] | None = None) -> np.ndarray:
    return np.log1p(np.maximum(x if columns is None else x[:, columns], 0.0))


def available_candidates(feature_names: Sequence[str] | None) -> tuple[str, ...]:
    """The candidates a table allows: ``size`` only where the size columns are known."""
    return tuple(c for c in CANDIDATES if c != "size" or size_columns(feature_names or []))


def check_classes(y: np.ndarray, groups: np.ndarray, class_names: Sequence[str]) -> int:
    """Number of grouped folds the table allows; a single class or too few cases is an error."""
    counts = np.bincount(y, minlength=2)
    if len(class_names) == 2 and counts.min() == 0 or len(class_names) == 1:
        present = class_names[int(np.argmax(counts))]
        raise MedsegError(f"all training cases are of class {present!r}: a classifier needs both classes")
    if len(class_names) != 2 or len(counts) != 2:
        raise MedsegError(f"the cascade classifies two classes (e.g. refer / do not refer); got {len(class_names)}: "
                          f"{', '.join(class_names)}")
    for c in (0, 1):
        if counts[c] < MIN_CASES_PER_CLASS:
            raise MedsegError(f"class {class_names[c]!r} has {counts[c]} case(s); at least {MIN_CASES_PER_CLASS} "
                              "are needed to cross-validate and calibrate the classifier")
        if len(np.unique(groups[y == c])) < 2:
            raise MedsegError(f"class {class_names[c]!r} has {counts[c]} case(s) from fewer than 2 patients: "
                              "too few to cross-validate and calibrate")
    return int(min(MAX_FOLDS, len(np.unique(groups)), counts.min()))


def out_of_fold(name: str, X: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, seed: int = 0,
                feature_names: Sequence[str] | None = None) -> np.ndarray:
    """Positive-class probabilities of every case from a model that did not see its patient."""
    from sklearn.model_selection import StratifiedGroupKFold

    p = np.full(len(y), np.nan)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(X, y, groups):
        inner = int(min(INNER_FOLDS, np.bincount(y[train], minlength=2).min()))
        if inner < 2 or len(np.unique(y[train])) < 2:
            raise MedsegError("a cross-validation fold holds fewer than 2 cases of a class; add cases or patients")
        model = make_classifier(name, seed, inner, feature_names).fit(X[train], y[train])
        p[test] = model.predict_proba(X[test])[:, 1]
    return p


def cv_scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Log loss, AUC, Brier score and ECE of out-of-fold probabilities."""
    from medseg.metrics.classification import binary_metrics

    eps = 1e-15
    q = np.clip(p, eps, 1 - eps)
    m = binary_metrics(y, p)
    return {"log_loss": float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))),
            "auc": m["auc"], "brier": m["brier"], "ece": m["ece"]}


def rule_classifier_choice(scores: dict[str, dict[str, float]]) -> tuple[str, dict[str, str]]:
    """Lower cross-validated log loss wins; within TIE_LOG_LOSS of it, the simplest candidate (fewest
    parameters: earliest in CANDIDATES)."""
    lowest = min(scores, key=lambda k: scores[k]["log_loss"])
    ties = [k for k in scores if scores[k]["log_loss"] - scores[lowest]["log_loss"] < TIE_LOG_LOSS]
    best = min(ties, key=lambda k: CANDIDATES.index(k) if k in CANDIDATES else len(CANDIDATES))
    if best != lowest:
        why = f"log loss within {TIE_LOG_LOSS} of {lowest}'s: the simpler model"
    else:
        why = "lowest cross-validated log loss"
    text = "; ".join(f"{k}: log loss {v['log_loss']:.4f}, AUC {v['auc']:.3f}, ECE {v['ece']:.3f}"
                     for k, v in scores.items())
    return best, {"rule": "classifier_choice", "decision": best, "reason": f"{why} (patient-grouped CV: {text})"}


def parse_criterion(criterion: str) -> tuple[str, float | None]:
    """``youden`` or ``sensitivity:S`` (0 < S ≤ 1)."""
    if criterion == "youden":
        return "youden", None
    if criterion.startswith("sensitivity:"):
        try:
            target = float(criterion.split(":", 1)[1])
        except ValueError:
            target = -1.0
        if 0 < target <= 1:
            return "sensitivity", target
    raise MedsegError(f"unknown threshold criterion {criterion!r}; use youden or sensitivity:0.95")


def rule_threshold(y: np.ndarray, p: np.ndarray, criterion: str = DEFAULT_CRITERION) -> tuple[float, dict[str, str], dict]:
    """Decision threshold from out-of-fold probabilities. Candidates are the midpoints between
    consecutive distinct probabilities (a threshold that sits on a case's probability is fragile)."""
    kind, target = parse_criterion(criterion)
    distinct = np.unique(p)
    candidates = np.r_[distinct[0] / 2, (distinct[:-1] + distinct[1:]) / 2, (distinct[-1] + 1) / 2]
    pos, neg = y == 1, y == 0
    sens = np.array([(p[pos] >= t).mean() for t in candidates])
    spec = np.array([(p[neg] < t).mean() for t in candidates])
    if kind == "youden":
        j = sens + spec - 1
        best = np.flatnonzero(np.isclose(j, j.max()))
        i = int(best[np.argmin(np.abs(candidates[best] - 0.5))])  # ties: the threshold nearest 0.5
        why = f"maximum Youden J = {j[i]:.3f} on out-of-fold probabilities of the training cases"
    else:
        ok = np.flatnonzero(sens >= target)
        i = int(ok[np.argmax(candidates[ok])])
        why = f"highest threshold keeping out-of-fold sensitivity ≥ {target:g}"
        if criterion == DEFAULT_CRITERION:
            why += " (the default: a missed referral costs more than an unneeded one)"
    value = float(candidates[i])
    record = {"value": value, "criterion": criterion, "sensitivity": float(sens[i]), "specificity": float(spec[i])}
    return value, {"rule": "threshold", "decision": f"{value:.4f}",
                   "reason": f"{why} (sensitivity {sens[i]:.3f}, specificity {spec[i]:.3f})"}, record


@dataclass
class FittedClassifier:
    """A classifier fitted by :func:`fit_classifier`, with how it was chosen."""

    name: str
    model: Any
    threshold: dict[str, Any]
    scores: dict[str, dict[str, float]]
    rules_fired: list[dict[str, str]]
    out_of_fold: np.ndarray
    folds: int
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Positive-class probability per row."""
        return self.model.predict_proba(np.asarray(X, dtype=np.float64))[:, 1]


def fit_classifier(X: np.ndarray, y: np.ndarray, groups: Sequence[Any] | None = None, *, seed: int = 0,
                   criterion: str = DEFAULT_CRITERION, candidates: Sequence[str] | None = None,
                   class_names: Sequence[str] = ("negative", "positive"),
                   feature_names: Sequence[str] | None = None) -> FittedClassifier:
    """Choose, calibrate and fit the classifier; choose its threshold.

    Parameters
    ----------
    X : ndarray, shape (cases, features)
        Measurements (:func:`medseg.cascade.features.segmentation_features` rows).
    y : ndarray of 0/1
        Class per case (1 = positive, e.g. refer).
    groups : sequence, optional
        Patient per case: cross-validation never splits a patient (default: every case its own).
    seed : int
        Seed of the fold shuffle and of the boosted trees.
    criterion : str
        Threshold criterion (:func:`rule_threshold`).
    candidates : sequence of str, optional
        Classifiers to compare (default: every one the table allows, :func:`available_candidates`).
    class_names : pair of str
        Negative and positive class, for messages.
    feature_names : sequence of str, optional
        Name of each column of ``X`` (:func:`~medseg.cascade.features.feature_names`); the ``size``
        candidate needs them.

    Returns
    -------
    FittedClassifier
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    if X.ndim != 2 or len(X) != len(y) or len(groups) != len(y):
        raise MedsegError(f"feature table {X.shape} does not match {len(y)} classes / {len(groups)} groups")
    if not np.all(np.isfinite(X)):
        raise MedsegError("feature table contains nan or inf")
    parse_criterion(criterion)
    folds = check_classes(y, groups, list(class_names))
    if feature_names is not None and len(feature_names) != X.shape[1]:
        raise MedsegError(f"{len(feature_names)} feature names for a table of {X.shape[1]} columns")
    candidates = available_candidates(feature_names) if candidates is None else tuple(candidates)
    oof = {name: out_of_fold(name, X, y, groups, folds, seed, feature_names) for name in candidates}
    scores = {name: cv_scores(y, p) for name, p in oof.items()}
    name, choice = rule_classifier_choice(scores)
    _, threshold_rule, threshold = rule_threshold(y, oof[name], criterion)
    inner = int(min(INNER_FOLDS, np.bincount(y, minlength=2).min()))
    model = make_classifier(name, seed, inner, feature_names).fit(X, y)
    return FittedClassifier(name, model, threshold, scores, [choice, threshold_rule], oof[name], folds, seed,
                            {"inner_folds": inner})
