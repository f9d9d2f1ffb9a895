"""The cascade commands: segmentation → measurements → class.

- ``medseg train-classifier SEG_MODEL DATASET --labels classes.csv --out CLS``
- ``medseg predict CLS -i IN -o OUT`` (alias ``medseg predict-cascade``): label maps, class probability,
  decision with its threshold and the measurements behind it (OUT/classification.csv and .json;
  ``--report`` / ``--overlays`` PNGs)
- ``medseg evaluate OUT classes.csv --out EVAL`` (alias ``medseg evaluate-classification``)
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from medseg.cli import app
from medseg.errors import MedsegError

console = Console(stderr=True, soft_wrap=True)
CLASSIFICATION_CSV = "classification.csv"
CLASSIFICATION_JSON = "classification.json"


@app.command("train-classifier")
def train_classifier(
    segmentation_model: Path = typer.Argument(..., help="Trained segmentation model folder."),
    dataset: Path = typer.Argument(..., help="Dataset folder whose cases are classified."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="CSV case,class or a JSON file with "
                                          '"classes": {case: class} (default: the dataset\'s dataset.json).'),
    out: Path = typer.Option(..., "--out", "-o", help="Cascade folder to write."),
    positive: Optional[str] = typer.Option(None, "--positive", help="Positive class (e.g. refer); default the "
                                           "last class in sorted order."),
    criterion: str = typer.Option("youden", "--criterion", help="Decision threshold: youden, or sensitivity:S "
                                  "(highest threshold keeping sensitivity >= S)."),
    seed: int = typer.Option(0, "--seed"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing cascade folder."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
) -> None:
    """Train the classifier of a cascade on the measurements of SEG_MODEL's tissue maps.

    Example: medseg train-classifier models/oct data/oct --labels classes.csv --out models/oct_referral
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
                  log=lambda m: console.print(m, highlight=False, markup=False))
    record = read_cascade(out)
    for rule in record["rules_fired"]:
        console.print(f"{rule['rule']}: {rule['decision']} — {rule['reason']}", highlight=False, markup=False)
    console.print(f"decision: {record['decision']}; cascade written to {out}", highlight=False, markup=False)


def _overlay(image, labels, text: str, path: Path) -> None:
    """The input (first channel, or RGB) with the label map tinted over it and the decision as its title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from medseg.fileutil import atomic_path

    array = np.asarray(image.array, dtype=np.float32)
    label = np.asarray(labels.array[0])
    if array.ndim == 4:  # 3D: the slice with the most foreground
        z = int(np.argmax((label != 0).reshape(label.shape[0], -1).sum(1)))
        array, label = array[:, z], label[z]
    shown = np.moveaxis(array[:3], 0, -1) if array.shape[0] == 3 else array[0]
    lower, upper = np.percentile(shown, (0.5, 99.5))
    shown = np.clip((shown - lower) / max(upper - lower, 1e-6), 0, 1)
    fig, ax = plt.subplots(figsize=(8, 8 * label.shape[0] / label.shape[1] + 0.6))
    ax.imshow(shown, cmap="gray")
    ax.imshow(np.ma.masked_equal(label, 0), cmap="autumn", alpha=0.5, interpolation="nearest")
    ax.set_title(text, fontsize=10)
    ax.axis("off")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)


def _write_results(rows: list[dict], record: dict, folder: Path) -> None:
    import csv
    import io
    import json

    from medseg.fileutil import write_text_atomic

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(folder / CLASSIFICATION_CSV, buffer.getvalue())
    summary = {"cascade": {k: record[k] for k in ("classes", "positive_class", "threshold", "decision")},
               "classifier": record["classifier"]["name"], "cases": rows}
    write_text_atomic(folder / CLASSIFICATION_JSON, json.dumps(summary, indent=2) + "\n")


def is_cascade_folder(path: Path) -> bool:
    """Whether ``path`` is a cascade folder (``medseg train-classifier``'s output)."""
    from medseg.cascade.model import CASCADE_NAME

    return (Path(path) / CASCADE_NAME).is_file()


def predict_cascade_folder(cascade: Path, inputs: List[Path], output: Path, *, segmentation_model: Path | None = None,
                           probabilities: bool = False, overlays: bool = False, overwrite: bool = False,
                           **predictor_options) -> None:
    """What ``medseg predict CASCADE`` does: per case the label map, the class probability, the decision with
    its threshold and the measurements behind it (OUT/classification.csv and .json), optionally the
    probability maps and an overlay PNG; every output is checked before any work."""
    import time

    from medseg.cascade import CascadeModel
    from medseg.cli.predict import collect_inputs, output_extension, probabilities_for_evaluation
    from medseg.io.probabilities import probabilities_extension, write_probabilities
    from medseg.io import read_image, write_image

    model = CascadeModel.load(cascade, segmentation_model, **predictor_options)
    config = model.predictor.config
    cases = collect_inputs(list(inputs), config.input_channels)
    if not cases:
        raise MedsegError("no input images found")
    plan = []
    for name, files in cases:
        ext = output_extension(files[0])
        targets = {"labels": output / f"{name}{ext}"}
        if probabilities:
            targets["probabilities"] = output / "probabilities" / f"{name}{probabilities_extension(ext, 1)}"
        if overlays:
            targets["overlay"] = output / "overlays" / f"{name}.png"
        for t in list(targets.values()) + [output / CLASSIFICATION_CSV]:
            if t.exists() and not overwrite:
                raise MedsegError("output file exists; pass --overwrite to replace it", t)
        plan.append((name, files, targets))
    negative, positive = model.record["classes"]
    console.print(f"cascade: {model.record['decision']} ({model.record['classifier']['name']} on "
                  f"{len(model.record['features'])} measurements of the tissue map)", highlight=False, markup=False)
    rows = []
    for i, (name, files, targets) in enumerate(plan, 1):
        t0 = time.perf_counter()
        image = read_image(files if len(files) > 1 else files[0])
        try:
            result = model.predict(image)
        except MedsegError as exc:
            if exc.path is not None:
                raise
            raise MedsegError(exc.message, files[0]) from None
        output.mkdir(parents=True, exist_ok=True)
        write_image(result.label_map, targets["labels"])
        if "probabilities" in targets and result.probabilities is not None:
            write_probabilities(probabilities_for_evaluation(result.probabilities, config), targets["probabilities"])
        text = f"{name}: P({positive}) = {result.probability:.3f} → {result.decision} (threshold {result.threshold:.3f})"
        if "overlay" in targets:
            _overlay(image, result.label_map, text, targets["overlay"])
        rows.append({"case": name, f"probability_{positive}": round(result.probability, 6),
                     "threshold": round(result.threshold, 6), "decision": result.decision,
                     **{k: round(v, 6) for k, v in result.features.items()}})
        _write_results(rows, model.record, output)  # rewritten after every case: an interrupted run keeps its rows
        console.print(f"[{i}/{len(plan)}] {text} ({time.perf_counter() - t0:.2f} s)", highlight=False, markup=False)


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
    if threads:
        import torch

        torch.set_num_threads(threads)
    predict_cascade_folder(cascade, inputs, output, segmentation_model=segmentation_model, probabilities=probabilities,
                           overlays=overlays, overwrite=overwrite)


def read_predictions(path: Path) -> tuple[dict[str, float], float, str]:
    """Case → positive-class probability, the threshold and the positive class, from a classification.csv."""
    import csv

    if path.is_dir():
        path = path / CLASSIFICATION_CSV
    if not path.is_file():
        raise MedsegError(f"no {CLASSIFICATION_CSV} found", path)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    columns = [c for c in (rows[0] if rows else {}) if c.startswith("probability_")]
    if not rows or not columns or "threshold" not in rows[0]:
        raise MedsegError("not a classification table (columns case, probability_<class>, threshold)", path)
    try:
        probs = {r["case"]: float(r[columns[0]]) for r in rows}
        thresholds = {float(r["threshold"]) for r in rows}
    except ValueError as exc:
        raise MedsegError(f"unreadable number: {exc}", path) from None
    if len(thresholds) != 1:
        raise MedsegError("the table mixes several thresholds", path)
    return probs, thresholds.pop(), columns[0].removeprefix("probability_")


def evaluate_classes(predictions: Path, labels: Path, out: Path, *, bootstrap: int = 2000, seed: int = 0) -> dict:
    """What ``medseg evaluate PRED classes.csv`` does for a cascade's classification.csv: AUC, accuracy,
    sensitivity/specificity at the cascade's threshold, confusion matrix, calibration (ECE, reliability
    table), bootstrap 95 % confidence intervals; written to OUT/classification_metrics.json and printed."""
    import json

    import numpy as np
    from rich.table import Table

    from medseg.cascade import read_classes
    from medseg.fileutil import write_text_atomic
    from medseg.metrics.classification import SCALAR_METRICS, evaluate_binary

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
    y = np.array([truth[c] == positive for c in names], dtype=np.int64)
    other = sorted({truth[c] for c in names} - {positive})
    if len(other) > 1:
        raise MedsegError(f"more than one class besides {positive!r}: {', '.join(other)}", labels)
    metrics = evaluate_binary(y, np.array([probs[c] for c in names]), threshold, n_bootstrap=bootstrap, seed=seed)
    metrics["positive_class"] = positive
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "classification_metrics.json", json.dumps(metrics, indent=2) + "\n")
    table = Table(title=f"{len(names)} cases, positive class {positive!r}, threshold {threshold:.3f}")
    for col in ("metric", "value", "95% CI"):
        table.add_column(col)
    for k in SCALAR_METRICS:
        lo, hi = metrics[f"{k}_ci"]
        table.add_row(k, f"{metrics[k]:.3f}", f"{lo:.3f}–{hi:.3f}")
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    Console().print(table)
    console.print(f"confusion matrix (rows true, columns decided): TN {tn}  FP {fp} / FN {fn}  TP {tp}; "
                  f"written to {out / 'classification_metrics.json'}", highlight=False, markup=False)
    return metrics


@app.command("evaluate-classification")
def evaluate_classification(
    predictions: Path = typer.Argument(..., help="classification.csv of `medseg predict CASCADE` (or its folder)."),
    labels: Path = typer.Option(..., "--labels", help="True class per case: CSV case,class or JSON \"classes\"."),
    out: Path = typer.Option(..., "--out", help="Output folder for classification_metrics.json."),
    bootstrap: int = typer.Option(2000, "--bootstrap", min=0, help="Bootstrap resamples of the confidence intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
) -> None:
    """Alias of `medseg evaluate PRED classes.csv --out EVAL`, kept for scripts.

    Example: medseg evaluate-classification results/ --labels test_classes.csv --out eval/
    """
    evaluate_classes(predictions, labels, out, bootstrap=bootstrap, seed=seed)
