"""The cascade commands: segmentation → measurements → class.

- ``medseg train-classifier SEG_MODEL DATASET --labels classes.csv --out CLS``
- ``medseg predict CLS -i IN -o OUT`` (alias ``medseg predict-cascade``): label maps, class probability,
  decision with its threshold and the measurements behind it (OUT/classification.csv and .json;
  OUT/patients.csv: the decision per patient; ``--report`` / ``--overlays`` PNGs)
- ``medseg evaluate OUT classes.csv --out EVAL`` (alias ``medseg evaluate-classification``)
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import typer

from medseg.cascade.classifier import DEFAULT_CRITERION
from medseg.cascade.results import read_predictions
from medseg.cli import app
from medseg.cli._consoles import err, out as stdout_console
from medseg.errors import MedsegError

console = err


@app.command("train-classifier")
def train_classifier(
    segmentation_model: Path = typer.Argument(..., help="Trained segmentation model folder."),
    dataset: Path = typer.Argument(..., help="Dataset folder whose cases are classified."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="CSV case,class or a JSON file with "
                                          '"classes": {case: class} (default: the dataset\'s dataset.json).'),
    out: Path = typer.Option(..., "--out", "-o", help="Cascade folder to write."),
    positive: Optional[str] = typer.Option(None, "--positive", help="Positive class (e.g. refer); default the "
                                           "last class in sorted order (with --present: its label)."),
    present: Optional[str] = typer.Option(None, "--present", help="A label name: each training case's class is "
                                          "LABEL where its reference label map holds it, no_LABEL elsewhere (no "
                                          "class file needed)."),
    out_of_fold: Optional[List[Path]] = typer.Option(None, "--out-of-fold", help="Cross-validation fold models: "
                                                     "each case is measured on the tissue map of one that did not "
                                                     "train on it (repeat the option)."),
    criterion: str = typer.Option(DEFAULT_CRITERION, "--criterion", help="Decision threshold: sensitivity:S "
                                  "(the highest threshold keeping sensitivity >= S), or youden."),
    seed: int = typer.Option(0, "--seed"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing cascade folder."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
) -> None:
    """Train the classifier of a cascade on the measurements of SEG_MODEL's tissue maps.

    Example: medseg train-classifier models/oct data/oct --labels classes.csv --out models/oct_referral

    Example: medseg train-classifier models/oct data/oct --present fluid --out-of-fold f0 --out-of-fold f1
    --out-of-fold f2 --out models/oct_referral
    """
    from medseg.cascade import read_cascade, train_cascade
    from medseg.cascade.classifier import parse_criterion

    if out.exists() and not overwrite:
        raise MedsegError("output folder exists; pass --overwrite to replace it", out)
    parse_criterion(criterion)
    if threads:
        import torch

        torch.set_num_threads(threads)
    train_cascade(segmentation_model, dataset, labels, out, positive=positive, criterion=criterion, seed=seed,
                  present=present, out_of_fold=out_of_fold or (),
                  log=lambda m: console.print(m, highlight=False, markup=False))
    record = read_cascade(out)
    for rule in record["rules_fired"]:
        console.print(f"{rule['rule']}: {rule['decision']} — {rule['reason']}", highlight=False, markup=False)
    console.print(f"decision: {record['decision']}; cascade written to {out}", highlight=False, markup=False)


@app.command("predict-cascade")
def predict_cascade(
    cascade: Path = typer.Argument(..., help="Cascade folder (from `medseg train-classifier`)."),
    inputs: List[Path] = typer.Option(..., "-i", "--input", help="Image file(s) or folder(s)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
    segmentation_model: Optional[Path] = typer.Option(None, "--segmentation-model", help="Segmentation model folder "
                                                      "(default: the one recorded; it must have the same weights)."),
    probabilities: bool = typer.Option(False, "--probabilities", help="Also write probability maps."),
    overlays: bool = typer.Option(False, "--overlays", help="Also write OUT/overlays/<case>.png: the image with "
                                  "the label map and the decision."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
) -> None:
    """Alias of `medseg predict CASCADE -i IN -o OUT` (with --report for the overlays), kept for scripts.

    Example: medseg predict-cascade models/oct_referral -i scans/ -o results/ --overlays
    """
    from medseg.cli.predict import predict_cascade_folder

    if threads:
        import torch

        torch.set_num_threads(threads)
    predict_cascade_folder(cascade, inputs, output, segmentation_model=segmentation_model, probabilities=probabilities,
                           overlays=overlays, overwrite=overwrite)


POSITIVE_HELP = ("Classification: a true class that counts as the cascade's positive class (repeat: --positive CNV "
                 "--positive DME); default the cascade's own positive class name.")


def evaluate_classes(predictions: Path, labels: Path, out: Path, *, positives: Sequence[str] | None = None,
                     bootstrap: int = 2000, seed: int = 0) -> dict:
    """What ``medseg evaluate PRED classes.csv`` does for a cascade's classification.csv: AUC, accuracy,
    sensitivity/specificity at the cascade's threshold, confusion matrix, calibration (ECE, reliability
    table), bootstrap 95 % confidence intervals, and how many of each true class were decided positive;
    written to OUT/classification_metrics.json and printed. ``positives`` names the true classes that count
    as the cascade's positive class (diagnoses that should be referred); by default its own class name."""
    import json

    import numpy as np
    from rich.table import Table

    from medseg.cascade import read_classes
    from medseg.fileutil import write_text_atomic
    from medseg.metrics.classification import SCALAR_METRICS, decisions_by_class, evaluate_binary

    probs, threshold, positive = read_predictions(predictions)
    truth = read_classes(labels)
    missing = sorted(set(probs) - set(truth))
    if missing:
        raise MedsegError(f"no true class for {len(missing)} predicted case(s): {', '.join(missing[:5])}", labels)
    unpredicted = sorted(set(truth) - set(probs))
    if unpredicted:
        raise MedsegError(f"{len(unpredicted)} labelled case(s) were not predicted: {', '.join(unpredicted[:5])}",
                          predictions)
    names = sorted(probs)
    true_classes = [truth[c] for c in names]
    counted = _positive_true_classes(positive, positives, set(true_classes), labels)
    y = np.array([t in counted for t in true_classes], dtype=np.int64)
    p = np.array([probs[c] for c in names])
    metrics = evaluate_binary(y, p, threshold, n_bootstrap=bootstrap, seed=seed)
    metrics["positive_class"] = positive
    metrics["positive_true_classes"] = sorted(counted)
    metrics["by_true_class"] = decisions_by_class(true_classes, p, threshold)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "classification_metrics.json", json.dumps(metrics, indent=2) + "\n")
    table = Table(title=f"{len(names)} cases, positive class {positive!r}, threshold {threshold:.3f}")
    for col in ("metric", "value", "95% CI"):
        table.add_column(col)
    for k in SCALAR_METRICS:
        lo, hi = metrics[f"{k}_ci"]
        table.add_row(k, f"{metrics[k]:.3f}", f"{lo:.3f}–{hi:.3f}")
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    stdout_console.print(table)
    console.print(f"confusion matrix (rows true, columns decided): TN {tn}  FP {fp} / FN {fn}  TP {tp}; "
                  f"written to {out / 'classification_metrics.json'}", highlight=False, markup=False)
    console.print("decided " + positive + " per true class: " + "; ".join(
        f"{name} {d['decided_positive']}/{d['cases']}" for name, d in metrics["by_true_class"].items()),
        highlight=False, markup=False)
    return metrics


def _positive_true_classes(positive: str, given: Sequence[str] | None, present: set[str], labels: Path) -> set[str]:
    """The true classes counted as the cascade's positive class: those given (each must occur), else the
    cascade's own class name, which needs the truth to hold just one other class."""
    if given:
        missing = sorted(set(given) - present)
        if missing:
            raise MedsegError(f"--positive {missing[0]}: no case has this true class (classes: "
                              f"{', '.join(sorted(present))})", labels)
        return set(given)
    other = sorted(present - {positive})
    if len(other) > 1:
        raise MedsegError(f"more than one true class besides {positive!r} ({', '.join(other)}): name the ones the "
                          f"cascade's {positive!r} stands for, e.g. --positive {other[0]}", labels)
    return {positive}


@app.command("evaluate-classification")
def evaluate_classification(
    predictions: Path = typer.Argument(..., help="classification.csv of `medseg predict CASCADE` (or its folder)."),
    labels: Path = typer.Option(..., "--labels", help="True class per case: CSV case,class or JSON \"classes\"."),
    out: Path = typer.Option(..., "--out", help="Output folder for classification_metrics.json."),
    positive: Optional[List[str]] = typer.Option(None, "--positive", help=POSITIVE_HELP),
    bootstrap: int = typer.Option(2000, "--bootstrap", min=0, help="Bootstrap resamples of the confidence intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
) -> None:
    """Alias of `medseg evaluate PRED classes.csv --out EVAL`, kept for scripts.

    Example: medseg evaluate-classification results/ --labels test_classes.csv --out eval/
    """
    evaluate_classes(predictions, labels, out, positives=positive, bootstrap=bootstrap, seed=seed)
