"""The cascade's classifier on phantoms where the right class is known, its rules, and bad tables."""

import numpy as np
import pytest

from medseg.cascade import feature_names, fit_classifier, segmentation_features
from medseg.cascade.classifier import available_candidates, make_classifier, rule_classifier_choice, rule_threshold
from medseg.errors import MedsegError

LABELS = {"background": 0, "lesion": 1}


def phantom_label_map(rng, lesion: bool, size: int = 48) -> np.ndarray:
    """A tissue map with (or without) a lesion disc, plus a few pixels of segmentation noise."""
    label_map = np.zeros((size, size), np.uint8)
    if lesion:
        cy, cx, r = rng.integers(12, size - 12, 2).tolist() + [int(rng.integers(4, 9))]
        yy, xx = np.mgrid[:size, :size]
        label_map[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    noise = rng.random((size, size)) < 0.0008  # isolated false-positive pixels in either class
    label_map[noise] = 1
    return label_map


def phantom_table(seed: int, cases: int):
    rng = np.random.default_rng(seed)
    y = np.array([i % 2 for i in range(cases)])
    X = [list(segmentation_features(phantom_label_map(rng, bool(c)), LABELS).values()) for c in y]
    return np.array(X), y


NAMES = feature_names(LABELS, 2, False)


def test_phantoms_with_and_without_a_lesion_are_classified():
    X, y = phantom_table(0, 40)
    fit = fit_classifier(X, y, groups=np.arange(40) // 2, seed=0, class_names=("healthy", "lesion"))
    assert fit.name in ("logistic", "gradient_boosting")  # without feature names the size model is no candidate
    assert [r["rule"] for r in fit.rules_fired] == ["classifier_choice", "threshold"]
    assert set(fit.scores) == {"logistic", "gradient_boosting"}
    assert fit.scores[fit.name]["auc"] > 0.95
    X_new, y_new = phantom_table(1, 20)
    decided = fit.predict_proba(X_new) >= fit.threshold["value"]
    assert (decided == y_new).mean() >= 0.95


def test_the_size_model_reads_only_the_label_sizes():
    # lesion size decides the class; the other measurements are noise that a dozen-feature model can fit
    rng = np.random.default_rng(3)
    y = np.arange(48) % 2
    X = rng.normal(5.0, 1.0, (48, len(NAMES))).clip(0)
    X[:, NAMES.index("lesion_area")] = np.where(y == 1, rng.uniform(20, 60, 48), rng.uniform(0, 25, 48))
    fit = fit_classifier(X, y, groups=np.arange(48) // 2, seed=0, feature_names=NAMES)
    assert set(fit.scores) == {"size", "logistic", "gradient_boosting"}
    assert fit.name == "size" and fit.scores["size"]["log_loss"] < fit.scores["logistic"]["log_loss"]
    shuffled = X.copy()
    others = [i for i, n in enumerate(NAMES) if n != "lesion_area"]
    shuffled[:, others] = rng.permutation(shuffled[:, others])  # changing the other columns changes nothing
    np.testing.assert_allclose(fit.predict_proba(shuffled), fit.predict_proba(X))
    assert available_candidates(["a", "b"]) == ("logistic", "gradient_boosting")
    with pytest.raises(MedsegError, match="feature names"):
        make_classifier("size")
    with pytest.raises(MedsegError, match="3 feature names"):
        fit_classifier(X, y, feature_names=NAMES[:3])


def test_rules_choose_by_log_loss_and_state_the_threshold():
    scores = {"logistic": {"log_loss": 0.30, "auc": 0.9, "ece": 0.05},
              "gradient_boosting": {"log_loss": 0.20, "auc": 0.95, "ece": 0.04}}
    assert rule_classifier_choice(scores)[0] == "gradient_boosting"
    scores["logistic"]["log_loss"] = 0.203  # within the tie margin: the simpler model
    name, record = rule_classifier_choice(scores)
    assert name == "logistic" and "simpler" in record["reason"]
    scores["size"] = {"log_loss": 0.204, "auc": 0.95, "ece": 0.04}  # the simplest of three within the margin
    assert rule_classifier_choice(scores)[0] == "size"
    scores["size"]["log_loss"] = 0.21
    assert rule_classifier_choice(scores)[0] == "logistic"
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.5, 0.8, 0.9])
    assert rule_threshold(y, p)[2]["criterion"] == "sensitivity:0.95"  # the default: referral must not miss
    value, rule, rec = rule_threshold(y, p, "youden")
    assert 0.2 < value <= 0.5 and rec["sensitivity"] == 1.0 and "Youden" in rule["reason"]
    value, _, rec = rule_threshold(y, p, "sensitivity:1.0")
    assert rec["sensitivity"] == 1.0 and value == pytest.approx(0.35)  # between 0.2 and the lowest positive
    with pytest.raises(MedsegError, match="criterion"):
        rule_threshold(y, p, "accuracy")


def test_single_class_and_too_few_patients_are_refused():
    X, y = phantom_table(0, 12)
    with pytest.raises(MedsegError, match="all training cases are of class 'lesion'"):
        fit_classifier(X, np.ones(12, int), class_names=("healthy", "lesion"))
    with pytest.raises(MedsegError, match="fewer than 2 patients"):
        fit_classifier(X, y, groups=np.where(y == 1, "p1", np.arange(12).astype(str)))
    with pytest.raises(MedsegError, match="nan"):
        fit_classifier(np.full_like(X, np.nan), y)
