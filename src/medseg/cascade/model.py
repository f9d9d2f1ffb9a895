"""What a cascade model is on disk, and applying it: segmentation → measurements → class → decision.

    CLS/
      cascade.json     the segmentation model it reads (path relative to CLS + SHA-256 of its weights and
                       of its config.json),
                       its labels, the classes and the positive class, the feature names, the classifier
                       chosen (rule with the cross-validated scores of every candidate), the calibration,
                       the decision threshold (value, criterion, training sensitivity/specificity), the
                       reliability table of the out-of-fold probabilities, scikit-learn's version
      features.csv     the training table: case, patient group, class, every measurement, and the
                       fitted model's probability of the positive class

The classifier itself is not pickled (unpickling executes code): loading refits it from
``features.csv`` — a deterministic fit of a few tens of rows, well under a second — and checks that the
refitted model reproduces the recorded training probabilities (to 1e-6), so a different scikit-learn
that would change the model is an error, not a silent change.

A cascade is bound to its segmentation model: the features mean what they mean only for the tissue
maps of that model. Applying it with other weights (another model, or the same folder retrained) or a
changed configuration (e.g. a new decision threshold from `medseg threshold`) is an error.

Examples
--------
>>> cascade = CascadeModel.load("cls")                                  # doctest: +SKIP
>>> result = cascade.predict(read_image("bscan.png"))                   # doctest: +SKIP
>>> result.decision, result.probability                                 # doctest: +SKIP
('fluid', 0.97)
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from medseg.cascade.classifier import FittedClassifier, make_classifier
from medseg.cascade.features import segmentation_features
from medseg.errors import MedsegError
from medseg.fileutil import atomic_dir
from medseg.image import Image
from medseg.model_folder import config_sha256, weights_sha256  # noqa: F401 (re-exported)

CASCADE_NAME = "cascade.json"
FEATURES_NAME = "features.csv"
FORMAT_VERSION = 1
REFIT_TOLERANCE = 1e-6


def descends_from(folder: Path, weights_sha: str) -> bool:
    """Whether the model in ``folder`` was fine-tuned (``medseg train --init-from``, possibly over several
    generations) from the model whose weights have SHA-256 ``weights_sha`` (its recorded lineage)."""
    from medseg.model_folder import load_config

    lineage = load_config(folder).lineage
    while lineage:
        if lineage.get("weights_sha256") == weights_sha:
            return True
        lineage = lineage.get("source_lineage")
    return False


def check_segmentation_model(record: Mapping[str, Any], folder: Path, cascade_folder: Path | None = None) -> None:
    """Refuse a segmentation model whose weights or configuration are not the ones the classifier was
    trained on — unless it is that model fine-tuned to another device (its lineage names those weights):
    the tissue map means the same there, which is why the cascade's classifier reads it and not the scan."""
    actual = weights_sha256(folder)
    where = f" (trained on {record['path']})" if record.get("path") else ""
    if actual != record["sha256"] and descends_from(folder, record["sha256"]):
        return
    if actual != record["sha256"]:
        raise MedsegError(f"this segmentation model's weights (sha256 {actual[:12]}…) are not the ones the "
                          f"classifier {cascade_folder or ''} was trained on (sha256 {record['sha256'][:12]}…){where}; "
                          "train a classifier on this model's tissue maps (`medseg train-classifier`)", folder)
    if "config_sha256" in record and config_sha256(folder) != record["config_sha256"]:
        raise MedsegError(f"this segmentation model's configuration (config.json: preprocessing, labels or decision "
                          f"threshold) changed since the classifier {cascade_folder or ''} was trained{where}; "
                          "retrain it (`medseg train-classifier`)", folder)


def _write_table(path: Path, names: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(names))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (repr(float(v)) if isinstance(v, (float, np.floating)) else v) for k, v in row.items()})


def save_cascade(folder: str | Path, segmentation_model: str | Path, labels: Mapping[str, int],
                 fitted: FittedClassifier, cases: Sequence[str], groups: Sequence[str], classes: Sequence[str],
                 class_names: Sequence[str], feature_names: Sequence[str], X: np.ndarray,
                 extra: Mapping[str, Any] | None = None) -> Path:
    """Write a cascade model folder atomically (see the module docstring for its content)."""
    import sklearn

    from medseg.metrics.classification import reliability_table

    folder = Path(folder)
    y = np.array([class_names.index(c) for c in classes])
    train_p = fitted.predict_proba(X)
    record = {
        "format_version": FORMAT_VERSION,
        "segmentation_model": {"path": os.path.relpath(Path(segmentation_model).resolve(), folder.resolve()),
                               "sha256": weights_sha256(segmentation_model),
                               "config_sha256": config_sha256(segmentation_model)},
        "labels": dict(labels),
        "classes": list(class_names),
        "positive_class": class_names[1],
        "features": list(feature_names),
        "classifier": {"name": fitted.name, "calibration": "sigmoid (Platt), CalibratedClassifierCV",
                       "inner_folds": fitted.extra["inner_folds"], "seed": fitted.seed,
                       "cross_validation": {"folds": fitted.folds, "grouped_by": "patient", "scores": fitted.scores}},
        "threshold": fitted.threshold,
        "decision": f"{class_names[1]} where P({class_names[1]}) >= {fitted.threshold['value']:.4f}, else {class_names[0]}",
        "rules_fired": fitted.rules_fired,
        "reliability_out_of_fold": reliability_table(y, fitted.out_of_fold),
        "training_cases": len(cases),
        "class_counts": {c: int(np.sum(y == i)) for i, c in enumerate(class_names)},
        "sklearn_version": sklearn.__version__,
        **(dict(extra) if extra else {}),
    }
    rows = [{"case": c, "group": g, "class": k, **dict(zip(feature_names, x)), "probability": p, "out_of_fold": q}
            for c, g, k, x, p, q in zip(cases, groups, classes, X, train_p, fitted.out_of_fold)]
    with atomic_dir(folder) as tmp:
        (tmp / CASCADE_NAME).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        _write_table(tmp / FEATURES_NAME, ["case", "group", "class", *feature_names, "probability", "out_of_fold"], rows)
    return folder


def read_cascade(folder: str | Path) -> dict[str, Any]:
    """``cascade.json`` of a cascade folder."""
    folder = Path(folder)
    path = folder / CASCADE_NAME
    if not path.is_file():
        raise MedsegError(f"not a cascade model folder (no {CASCADE_NAME})", folder)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MedsegError(f"not valid JSON: {exc}", path) from None
    if int(record.get("format_version", 1)) > FORMAT_VERSION:
        raise MedsegError("written by a newer medseg; upgrade medseg", path)
    return record


def _refit(folder: Path, record: Mapping[str, Any]) -> Any:
    path = folder / FEATURES_NAME
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        X = np.array([[float(r[f]) for f in record["features"]] for r in rows])
        y = np.array([record["classes"].index(r["class"]) for r in rows])
        recorded = np.array([float(r["probability"]) for r in rows])
    except (OSError, KeyError, ValueError) as exc:
        raise MedsegError(f"cannot read the training table: {exc}", path) from None
    spec = record["classifier"]
    model = make_classifier(spec["name"], spec["seed"], spec["inner_folds"], record["features"]).fit(X, y)
    difference = float(np.abs(model.predict_proba(X)[:, 1] - recorded).max())
    if difference > REFIT_TOLERANCE:
        import sklearn

        raise MedsegError(f"the classifier refitted from {FEATURES_NAME} differs from the recorded one by {difference:.2g} "
                          f"(trained with scikit-learn {record.get('sklearn_version')}, this is {sklearn.__version__}); "
                          "retrain it with `medseg train-classifier`", folder)
    return model


@dataclass
class CascadeResult:
    """One case through the cascade."""

    label_map: Image
    probabilities: Image | None
    features: dict[str, float]
    probability: float          # of the positive class
    decision: str               # class name
    threshold: float


class CascadeModel:
    """A segmentation predictor + the classifier that reads its tissue maps."""

    def __init__(self, folder: Path, record: dict[str, Any], classifier: Any, predictor: Any):
        self.folder, self.record, self.classifier, self.predictor = folder, record, classifier, predictor

    @classmethod
    def load(cls, folder: str | Path, segmentation_model: str | Path | None = None, **predictor_options: Any
             ) -> "CascadeModel":
        """Load a cascade; ``segmentation_model`` overrides the recorded one (it must have the same weights).

        ``predictor_options`` go to :meth:`medseg.inference.predictor.Predictor.from_folder`.
        """
        from medseg.inference.predictor import Predictor

        folder = Path(folder)
        record = read_cascade(folder)
        seg = Path(segmentation_model) if segmentation_model else folder / record["segmentation_model"]["path"]
        if not seg.is_dir():
            raise MedsegError(f"the cascade's segmentation model {record['segmentation_model']['path']} (relative to "
                              f"the cascade folder) is missing; pass its folder explicitly", folder)
        check_segmentation_model(record["segmentation_model"], seg, folder)
        classifier = _refit(folder, record)
        return cls(folder, record, classifier, Predictor.from_folder(seg, **predictor_options))

    @property
    def threshold(self) -> float:
        return float(self.record["threshold"]["value"])

    def classify(self, features: Mapping[str, float]) -> tuple[float, str]:
        """Positive-class probability and decision from one case's measurements."""
        x = np.array([[float(features[f]) for f in self.record["features"]]])
        p = float(self.classifier.predict_proba(x)[0, 1])
        negative, positive = self.record["classes"]
        return p, positive if p >= self.threshold else negative

    def predict(self, image: Image, roi: Image | None = None, notes: list[str] | None = None) -> CascadeResult:
        """Segment, measure and classify one image (``notes`` as the segmentation predictor takes them)."""
        labels, probs = self.predictor.predict_with_probabilities(image, roi, probabilities=True, notes=notes)
        features = measure(labels, probs, self.record["labels"])
        p, decision = self.classify(features)
        return CascadeResult(labels, probs, features, p, decision, self.threshold)


def measure(labels: Image, probabilities: Image | None, label_names: Mapping[str, int]) -> dict[str, float]:
    """:func:`segmentation_features` of a predicted label map :class:`Image` (and its probabilities)."""
    return segmentation_features(labels.array[0], label_names,
                                 None if probabilities is None else probabilities.array, labels.spacing)


def read_classes(path: str | Path, cases: Sequence[str] | None = None) -> dict[str, str]:
    """Class per case from a CSV (columns ``case,class``; a header row is optional) or a dataset.json
    (key ``classes``: ``{case: class}``). Cases not in ``cases`` are an error naming them."""
    path = Path(path)
    if not path.is_file():
        raise MedsegError("class file not found", path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MedsegError(f"not valid JSON: {exc}", path) from None
        raw = data.get("classes") if isinstance(data, dict) else None
        if not isinstance(raw, dict) or not raw:
            raise MedsegError('no "classes" ({case: class}) in this JSON file', path)
        classes = {str(k): str(v) for k, v in raw.items()}
    else:
        rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
        if rows and [c.strip().lower() for c in rows[0][:2]] == ["case", "class"]:
            rows = rows[1:]
        bad = [i for i, r in enumerate(rows, 1) if len(r) < 2 or not r[0].strip() or not r[1].strip()]
        if bad:
            raise MedsegError(f"row {bad[0]} does not hold a case and a class (columns case,class)", path)
        classes = {}
        for r in rows:
            case = r[0].strip()
            if case in classes:
                raise MedsegError(f"case {case!r} is listed twice", path)
            classes[case] = r[1].strip()
        if not classes:
            raise MedsegError("no cases listed (columns case,class)", path)
    if cases is not None:
        unknown = sorted(set(classes) - set(cases))
        if unknown:
            raise MedsegError(f"class labels for {len(unknown)} case(s) not in the dataset: {', '.join(unknown[:5])}", path)
    return classes


def rule_positive_class(names: Sequence[str], positive: str | None,
                        reason: str = "given") -> tuple[list[str], dict[str, str]]:
    """The two class names ordered (negative, positive): ``positive`` when given (``reason`` says why), else
    the last in sorted order (``0``/``1``, ``no``/``yes``, ``routine``/``urgent`` sort that way)."""
    names = sorted(set(names))
    if positive is not None:
        if positive not in names:
            raise MedsegError(f"positive class {positive!r} is not among the classes {', '.join(names)}")
        why = reason
    else:
        positive, why = (names[-1] if names else ""), "the last class in sorted order (pass --positive to choose)"
    ordered = [n for n in names if n != positive] + [positive]
    return ordered, {"rule": "positive_class", "decision": positive, "reason": why}
