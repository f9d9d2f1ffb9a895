"""Training a cascade: segment every labelled case with the segmentation model, measure, fit the classifier.

``train_cascade(SEG, DATASET, classes, OUT)`` is what ``medseg train-classifier`` runs. The measurements
come from the segmentation model's *predictions* (the tissue maps it will see at prediction time), never
from the reference labels. Cases the segmentation model was trained on give cleaner tissue maps than new
scans do; the function warns (through ``log``) when they make up the table. For an unbiased classifier
pass ``out_of_fold`` models (e.g. the folds of a cross-validation): each case is then segmented by a model
that did not train on it, as new scans will be by the segmentation model.

The class of a case comes from a class file, or (``present=LABEL``) from whether its reference label map
holds that label — "fluid present → refer" without writing a class file.

Examples
--------
>>> train_cascade("seg_model", "dataset", "classes.csv", "cls")     # doctest: +SKIP
>>> train_cascade("seg_all", "dataset", None, "cls", present="fluid", out_of_fold=["f0", "f1", "f2"])  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from medseg.cascade.classifier import DEFAULT_CRITERION, fit_classifier
from medseg.cascade.model import measure, read_classes, rule_positive_class, save_cascade
from medseg.errors import MedsegError


def fit_and_save(out: str | Path, segmentation_model: str | Path, labels: Mapping[str, int],
                 table: Mapping[str, Mapping[str, float]], classes: Mapping[str, str], *,
                 groups: Mapping[str, str] | None = None, positive: str | None = None,
                 criterion: str = DEFAULT_CRITERION, seed: int = 0, extra: Mapping[str, Any] | None = None,
                 rules: Sequence[dict[str, str]] = (), positive_reason: str = "given"):
    """Fit the classifier on a measurement table ``{case: {feature: value}}`` and write the cascade folder.

    Returns the :class:`~medseg.cascade.classifier.FittedClassifier`.
    """
    from medseg.datasets.splits import case_group

    cases = [c for c in table if c in classes]
    missing = sorted(set(classes) - set(table))
    if missing:
        raise MedsegError(f"no measurements for {len(missing)} labelled case(s): {', '.join(missing[:5])}")
    class_names, positive_rule = rule_positive_class([classes[c] for c in cases], positive, positive_reason)
    names = list(next(iter(table.values())))
    X = np.array([[table[c][f] for f in names] for c in cases])
    y = np.array([class_names.index(classes[c]) for c in cases])
    group_of = [groups[c] if groups else case_group(c) for c in cases]
    fitted = fit_classifier(X, y, group_of, seed=seed, criterion=criterion, class_names=class_names,
                            feature_names=names)
    fitted.rules_fired[:0] = [positive_rule, *rules]
    save_cascade(out, segmentation_model, labels, fitted, cases, group_of, [classes[c] for c in cases], class_names,
                 names, X, extra)
    return fitted


def train_cascade(segmentation_model: str | Path, dataset: str | Path, classes_path: str | Path | None,
                  out: str | Path, *, positive: str | None = None, criterion: str = DEFAULT_CRITERION,
                  seed: int = 0, present: str | None = None, out_of_fold: Sequence[str | Path] = (),
                  log: Callable[[str], None] = print, **predictor_options: Any):
    """Segment and measure a dataset's labelled cases, fit the classifier, write the cascade folder.

    Parameters
    ----------
    segmentation_model : path
        Trained segmentation model folder: the one the cascade applies to new scans.
    dataset : path
        Dataset folder (dataset.json); its training and test cases may be classified.
    classes_path : path, optional
        CSV ``case,class`` or a JSON file with ``"classes": {case: class}``; default the dataset's
        own dataset.json (unless ``present`` is given).
    out : path
        Cascade folder to write.
    positive, criterion, seed
        Positive class (default: last in sorted order; with ``present``, its label), threshold criterion, seed.
    present : str, optional
        A label name: the class of each labelled training case is that name where its reference label map
        holds the label, ``no_<name>`` elsewhere.
    out_of_fold : sequence of paths
        Models (same labels) whose recorded training and validation cases tell which cases each never saw;
        every case is measured on the tissue map of one that did not train on it (and, where one exists, did
        not validate on it either).
    log : callable
        Receives progress and warnings.
    """
    from medseg.datasets import load_dataset
    from medseg.inference.predictor import Predictor
    from medseg.model_folder import load_config

    ds = load_dataset(dataset)
    all_cases = {c.name: c for c in ds.cases + ds.test_cases}
    config = load_config(segmentation_model)
    positive_reason = "given"
    if present is not None:
        if classes_path is not None:
            raise MedsegError("give either a class file or --present LABEL, not both", classes_path)
        classes_path = Path(dataset) / "dataset.json"
        classes = classes_from_labels(ds.cases, present, config.labels)  # the test cases stay for evaluation
        if positive is None:
            positive, positive_reason = present, f"the label whose presence sets the class (--present {present})"
    else:
        classes_path = Path(classes_path or Path(dataset) / "dataset.json")
        classes = read_classes(classes_path, list(all_cases))
    names = sorted(set(classes.values()))
    if len(names) != 2:  # before segmenting anything
        what = f"all {len(classes)} labelled cases are of class {names[0]!r}" if len(names) == 1 else \
            f"{len(names)} classes ({', '.join(names[:6])})"
        raise MedsegError(f"{what}: the cascade classifier needs exactly two classes (e.g. refer / do not refer)",
                          classes_path)
    model_of, rule = _tissue_map_models(segmentation_model, config, sorted(classes), out_of_fold)
    trained = set(config.train_cases)
    seen = sorted(c for c in classes if model_of[c] == Path(segmentation_model) and c in trained)
    if seen:
        log(f"warning: {len(seen)} of {len(classes)} case(s) were the segmentation model's training cases: their "
            "tissue maps are cleaner than on new scans, so the classifier may trust them too much "
            "(--out-of-fold FOLD_MODELS measures every case on a model that did not train on it)")
    predictors: dict[Path, Any] = {}
    table: dict[str, dict[str, float]] = {}
    for i, name in enumerate(sorted(classes), 1):
        folder = model_of[name]
        if folder not in predictors:
            predictors[folder] = Predictor.from_folder(folder, **predictor_options)
        label_map, probs = predictors[folder].predict_with_probabilities(all_cases[name].read_image(),
                                                                         probabilities=True)
        table[name] = measure(label_map, probs, config.labels)
        log(f"[{i}/{len(classes)}] {name}: {classes[name]}")
    return fit_and_save(out, segmentation_model, config.labels, table, classes, positive=positive, criterion=criterion,
                        seed=seed, extra={"dataset": str(Path(dataset).name)}, rules=[rule],
                        positive_reason=positive_reason)


def classes_from_labels(cases: Iterable, label: str, labels: Mapping[str, int]) -> dict[str, str]:
    """``{case: label or "no_<label>"}`` for the labelled dataset ``cases``: whether each reference label map
    holds ``label`` (a name of ``labels``, the segmentation model's)."""
    if not labels.get(label):
        raise MedsegError(f"--present {label}: not a label of the segmentation model "
                          f"({', '.join(n for n, v in labels.items() if v)})")
    classes = {}
    for case in cases:
        reference = case.read_label()
        if reference is not None:
            held = bool(np.any(np.asarray(reference.array) == labels[label]))
            classes[case.name] = label if held else f"no_{label}"
    return classes


def _tissue_map_models(segmentation_model: str | Path, config, cases: Sequence[str],
                       out_of_fold: Sequence[str | Path]) -> tuple[dict[str, Path], dict[str, str]]:
    """Which model segments each case, and the rule that says why."""
    from medseg.model_folder import load_config

    if not out_of_fold:
        return {c: Path(segmentation_model) for c in cases}, {
            "rule": "tissue_maps", "decision": "the segmentation model's",
            "reason": "no out-of-fold models given: every case is segmented by the model the cascade applies"}
    folds = {}
    for folder in map(Path, out_of_fold):
        fold = load_config(folder)
        if dict(fold.labels) != dict(config.labels):
            raise MedsegError(f"labels {dict(fold.labels)} differ from the segmentation model's "
                              f"{dict(config.labels)}", folder)
        folds[folder] = (set(fold.train_cases), set(fold.val_cases))
    model_of = {}
    for case in cases:
        # never trained on it; best also never validated on it (a cross-validation fold's own held-out cases
        # are its validation cases, which chose only its checkpoint, threshold and postprocessing)
        untrained = [f for f, (train, _) in folds.items() if case not in train]
        unseen = [f for f in untrained if case not in folds[f][1]]
        model_of[case] = (unseen or untrained or [None])[0]
    orphans = [c for c, f in model_of.items() if f is None]
    if orphans:
        raise MedsegError(f"every out-of-fold model trained on {len(orphans)} labelled case(s) "
                          f"({', '.join(orphans[:3])}): none can segment them out of fold")
    return model_of, {
        "rule": "tissue_maps", "decision": f"out of fold ({len(folds)} models)",
        "reason": "each case is measured on the tissue map of a model that did not train on it, as new scans are "
                  "by the segmentation model (in-sample maps are cleaner: a classifier fitted on them would trust "
                  "them too much)"}
