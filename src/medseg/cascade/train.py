"""Training a cascade: segment every labelled case with the segmentation model, measure, fit the classifier.

``train_cascade(SEG, DATASET, classes, OUT)`` is what ``medseg train-classifier`` runs. The measurements
come from the segmentation model's *predictions* (the tissue maps it will see at prediction time), never
from the reference labels. Cases the segmentation model was trained on give cleaner tissue maps than new
scans do; the function warns (through ``log``) when they make up the table — for an unbiased classifier
use cases it did not train on (e.g. its validation cases, or out-of-fold models).

Examples
--------
>>> train_cascade("seg_model", "dataset", "classes.csv", "cls")     # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from medseg.cascade.classifier import DEFAULT_CRITERION, fit_classifier
from medseg.cascade.model import measure, read_classes, rule_positive_class, save_cascade
from medseg.errors import MedsegError


def fit_and_save(out: str | Path, segmentation_model: str | Path, labels: Mapping[str, int],
                 table: Mapping[str, Mapping[str, float]], classes: Mapping[str, str], *,
                 groups: Mapping[str, str] | None = None, positive: str | None = None,
                 criterion: str = DEFAULT_CRITERION, seed: int = 0, extra: Mapping[str, Any] | None = None):
    """Fit the classifier on a measurement table ``{case: {feature: value}}`` and write the cascade folder.

    Returns the :class:`~medseg.cascade.classifier.FittedClassifier`.
    """
    from medseg.datasets.splits import case_group

    cases = [c for c in table if c in classes]
    missing = sorted(set(classes) - set(table))
    if missing:
        raise MedsegError(f"no measurements for {len(missing)} labelled case(s): {', '.join(missing[:5])}")
    class_names, positive_rule = rule_positive_class([classes[c] for c in cases], positive)
    names = list(next(iter(table.values())))
    X = np.array([[table[c][f] for f in names] for c in cases])
    y = np.array([class_names.index(classes[c]) for c in cases])
    group_of = [groups[c] if groups else case_group(c) for c in cases]
    fitted = fit_classifier(X, y, group_of, seed=seed, criterion=criterion, class_names=class_names,
                            feature_names=names)
    fitted.rules_fired.insert(0, positive_rule)
    save_cascade(out, segmentation_model, labels, fitted, cases, group_of, [classes[c] for c in cases], class_names,
                 names, X, extra)
    return fitted


def train_cascade(segmentation_model: str | Path, dataset: str | Path, classes_path: str | Path | None,
                  out: str | Path, *, positive: str | None = None, criterion: str = DEFAULT_CRITERION,
                  seed: int = 0, log: Callable[[str], None] = print, **predictor_options: Any):
    """Segment and measure a dataset's labelled cases, fit the classifier, write the cascade folder.

    Parameters
    ----------
    segmentation_model : path
        Trained segmentation model folder.
    dataset : path
        Dataset folder (dataset.json); its training and test cases may be classified.
    classes_path : path, optional
        CSV ``case,class`` or a JSON file with ``"classes": {case: class}``; default the dataset's
        own dataset.json.
    out : path
        Cascade folder to write.
    positive, criterion, seed
        Positive class (default: last in sorted order), threshold criterion, seed.
    log : callable
        Receives progress and warnings.
    """
    from medseg.datasets import load_dataset
    from medseg.inference.predictor import Predictor
    from medseg.model_folder import load_config

    ds = load_dataset(dataset)
    all_cases = {c.name: c for c in ds.cases + ds.test_cases}
    classes_path = Path(classes_path or Path(dataset) / "dataset.json")
    classes = read_classes(classes_path, list(all_cases))
    names = sorted(set(classes.values()))
    if len(names) != 2:  # before segmenting anything
        what = f"all {len(classes)} labelled cases are of class {names[0]!r}" if len(names) == 1 else \
            f"{len(names)} classes ({', '.join(names[:6])})"
        raise MedsegError(f"{what}: the cascade classifier needs exactly two classes (e.g. refer / do not refer)",
                          classes_path)
    config = load_config(segmentation_model)
    seen = sorted(set(classes) & set(config.train_cases))
    if seen:
        log(f"warning: {len(seen)} of {len(classes)} case(s) were the segmentation model's training cases: their "
            "tissue maps are cleaner than on new scans, so the classifier may trust them too much")
    predictor = Predictor.from_folder(segmentation_model, **predictor_options)
    labels = config.labels
    table: dict[str, dict[str, float]] = {}
    for i, name in enumerate(sorted(classes), 1):
        label_map, probs = predictor.predict_with_probabilities(all_cases[name].read_image(), probabilities=True)
        table[name] = measure(label_map, probs, labels)
        log(f"[{i}/{len(classes)}] {name}: {classes[name]}")
    return fit_and_save(out, segmentation_model, labels, table, classes, positive=positive, criterion=criterion,
                        seed=seed, extra={"dataset": str(Path(dataset).name)})
