"""Evaluate a folder of predictions against a folder of ground truths.

Cases are matched by file name without the image extension (``case_001.nii.gz`` <-> ``case_001.png``
would match too). Every ground-truth case is scored: a missing prediction is a failure (Dice 0,
distances inf), reported and counted, never skipped. Predictions without a ground truth are listed and
ignored. Spacing comes from the ground truth; a prediction (or roi / probability map) on another voxel
grid is an error naming both files.

Outputs in ``out_dir`` (each written atomically): ``per_case.csv`` (one row per case × label),
``summary.json`` (mean, std, median, 95 % bootstrap CI per metric and label; counts of empty and
missing cases), ``report.md`` and ``report.html`` with ``boxplots.png``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import io
import json
import math
import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from medseg.errors import GeometryError, MedsegError
from medseg.fileutil import write_text_atomic
from medseg.metrics.case import HIGHER_IS_BETTER, METRICS, PROBABILITY_METRICS, evaluate_case, label_values
from medseg.metrics.statistics import summarize

from medseg.io.formats import is_raster
from medseg.io.probabilities import ARRAY_EXTENSIONS as _ARRAY_EXTENSIONS


@dataclass
class Summary:
    """Result of :func:`evaluate_folders`.

    Attributes
    ----------
    out_dir : Path
        Where the outputs were written.
    labels : dict
        Evaluated label/region name -> label values.
    per_case : list of dict
        One row per case × label, as in ``per_case.csv``.
    statistics : dict
        ``{label: {metric: {mean, std, median, ci_low, ci_high, n, n_finite, n_inf, n_nan}}}``, plus
        ``"foreground_mean"`` (the mean over labels of each metric's mean).
    counts : dict
        Cases, missing predictions, unmatched predictions, and per label the empty masks.
    """

    out_dir: Path
    labels: dict[str, tuple[int, ...]]
    per_case: list[dict] = field(default_factory=list)
    statistics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    metrics: tuple[str, ...] = METRICS
    #: "mm", or "px" when the ground truths are raster files (no physical spacing).
    length_unit: str = "mm"

    def mean(self, metric: str, label: str = "foreground_mean") -> float:
        """The mean of ``metric`` for ``label`` (default: averaged over labels)."""
        return self.statistics[label][metric]["mean"]


# --- finding files -------------------------------------------------------------------------------
def _case_name(path: Path) -> str:
    from medseg.io.cases import case_name

    return case_name(path)


def _index(folder: Path, what: str, arrays: bool = False) -> dict[str, Path]:
    from medseg.io.formats import backend_for

    if not folder.is_dir():
        raise MedsegError(f"{what} folder not found", folder)
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if not (backend_for(path) is not None or (arrays and path.name.endswith(_ARRAY_EXTENSIONS))):
            continue  # dataset.json, .raw data of .mhd headers, notes...
        name = _case_name(path)
        if name in found:
            raise MedsegError(f"two {what} files for case '{name}': {found[name].name} and {path.name}", folder)
        found[name] = path
    return found


# --- labels --------------------------------------------------------------------------------------
def _labels_from_dataset_json(gt_dir: Path) -> dict[str, tuple[int, ...]] | None:
    for folder in (gt_dir, gt_dir.parent, gt_dir.parent.parent):
        path = folder / "dataset.json"
        if path.is_file():
            return _parse_dataset_labels(path)
    return None


def _parse_dataset_labels(path: Path) -> dict[str, tuple[int, ...]]:
    from medseg.datasets.dataset import read_labels

    labels, regions, _ = read_labels(path)
    if regions:
        items = {n: tuple(v) for n, v in regions.items() if tuple(v) != (0,)}
    else:
        items = {n: (v,) for n, v in labels.items() if v != 0}
    items.pop("background", None)
    return items


def _unique_labels(path: str) -> list[int]:
    from medseg.io import read_image

    return [int(v) for v in np.unique(read_image(path).array) if v != 0]


# --- one case ------------------------------------------------------------------------------------
def _read_label_map(path: Path, what: str, declared: set[int] | None = None):
    # the dataset's policy (medseg.io.labels): whole-number floats accepted, fractions are an error
    from medseg.io.labels import read_label_map

    image = read_label_map(path, what)
    array = image.array[0]
    if declared is not None:
        extra = sorted(set(np.unique(array).tolist()) - declared)
        if extra:
            raise MedsegError(f"{what} holds value(s) {', '.join(map(str, extra[:5]))} that no evaluated label declares "
                              f"(declared: {', '.join(map(str, sorted(declared)))}); pass --labels or fix the file", path)
    return image, array


def _read_probabilities(path: Path, reference, gt_path: Path) -> np.ndarray:
    from medseg.io.probabilities import read_probabilities

    array, image = read_probabilities(path)
    if image is not None:
        diff = reference.geometry_difference(image)
        if diff is not None:
            raise GeometryError(f"probabilities {path} and ground truth {gt_path} do not share a voxel grid: {diff}")
    return array


def _failure(metrics: dict[str, float]) -> dict[str, float]:
    """A missing prediction scores as a failure whatever the reference holds."""
    out = {}
    for name, value in metrics.items():
        if name in ("hausdorff", "hd95", "assd"):
            out[name] = float("inf")
        elif name in ("volume_pred", "volume_diff") or name in PROBABILITY_METRICS:
            out[name] = float("nan")
        elif name in ("specificity", "accuracy"):
            out[name] = float("nan")  # undefined without a prediction
        elif name in HIGHER_IS_BETTER:
            out[name] = 0.0
        else:
            out[name] = value
    return out


def _evaluate_one(task: dict) -> list[dict]:
    gt_path = Path(task["gt"])
    reference_image, reference = _read_label_map(gt_path, "ground truth")
    roi = None
    if task["roi"] is not None:
        roi_image, roi = _read_label_map(Path(task["roi"]), "roi")
        diff = reference_image.geometry_difference(roi_image)
        if diff is not None:
            raise GeometryError(f"roi {task['roi']} and ground truth {gt_path} do not share a voxel grid: {diff}")
        roi = roi != 0
    missing = task["pred"] is None
    if missing:
        prediction = np.zeros_like(reference)
    else:
        # values a prediction may hold: the evaluated labels' and whatever this case's ground truth holds
        # (so --labels may pick a subset); anything else is a prediction the evaluation would silently ignore
        declared = {0} | {v for values in task["labels"].values() for v in label_values(values)}
        declared |= set(np.unique(reference).tolist())
        prediction_image, prediction = _read_label_map(Path(task["pred"]), "prediction", declared)
        diff = reference_image.geometry_difference(prediction_image)
        if diff is not None:
            raise GeometryError(
                f"prediction {task['pred']} and ground truth {gt_path} do not share a voxel grid: {diff}"
            )
    probabilities = None
    if task["prob"] is not None and not missing:
        probabilities = _read_probabilities(Path(task["prob"]), reference_image, gt_path)
        if probabilities.shape[1:] != reference.shape and probabilities.shape != reference.shape:
            raise GeometryError(
                f"probabilities {task['prob']} of shape {probabilities.shape} do not fit ground truth "
                f"{gt_path} of shape {reference.shape}"
            )
    results = evaluate_case(
        prediction, reference, task["labels"], reference_image.spacing, roi=roi,
        probabilities=probabilities, nsd_tolerance=task["nsd_tolerance"],
    )
    rows = []
    for label, metrics in results.items():
        values = label_values(task["labels"][label])
        ref_mask = np.isin(reference, values) if roi is None else np.isin(reference, values) & roi
        pred_mask = np.isin(prediction, values) if roi is None else np.isin(prediction, values) & roi
        if task["want_probabilities"] and "roc_auc" not in metrics:
            metrics.update({m: float("nan") for m in PROBABILITY_METRICS})
        metrics = _failure(metrics) if missing else metrics
        if task.get("convention") == "brats":
            from medseg.metrics.brats import apply_brats_convention

            metrics = apply_brats_convention(metrics, not ref_mask.any(), missing or not pred_mask.any())
        rows.append({
            "case": task["case"],
            "label": label,
            "status": "missing_prediction" if missing else ("missing_probabilities" if task["want_probabilities"]
                                                            and task["prob"] is None else "ok"),
            "reference_empty": not ref_mask.any(),
            "prediction_empty": True if missing else not pred_mask.any(),
            **metrics,
        })
    return rows


# --- the evaluator -------------------------------------------------------------------------------
def _map(function, tasks: list, pool) -> list:
    if pool is None or len(tasks) <= 1:
        return [function(t) for t in tasks]
    return list(pool.map(function, tasks))


def _pool(workers: int):
    if workers <= 1:
        return contextlib.nullcontext(None)
    # spawn, not fork: the caller (e.g. the trainer) may hold torch/OpenMP threads that fork would copy.
    context = multiprocessing.get_context("spawn")
    return concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context)


def _resolve_labels(gt_dir: Path, gts: dict, labels, regions, pool) -> dict[str, tuple[int, ...]]:
    items: dict[str, tuple[int, ...]] = {}
    if labels or regions:
        items.update({str(n): label_values(v) for n, v in (labels or {}).items()})
        items.update({str(n): label_values(v) for n, v in (regions or {}).items()})
    else:
        items = _labels_from_dataset_json(gt_dir) or {}
        if not items:
            found = sorted(set().union(*_map(_unique_labels, [str(p) for p in gts.values()], pool)))
            items = {str(v): (v,) for v in found}
    if not items:
        raise MedsegError("no labels to evaluate: the ground truths are all background; pass --labels", gt_dir)
    return items


def _resolve_convention(convention: str, gt_dir: Path, labels, regions) -> str:
    """``auto`` -> ``brats`` for region tasks (see :mod:`medseg.metrics.brats`), else ``medseg``."""
    if convention not in ("auto", "medseg", "brats"):
        raise MedsegError(f"unknown convention '{convention}' (auto, medseg, brats)")
    if convention != "auto":
        return convention
    # a region-based task is one whose dataset.json declares regions; --regions alone is a label group
    from medseg.datasets.dataset import read_labels

    for folder in (gt_dir, gt_dir.parent, gt_dir.parent.parent):
        if (folder / "dataset.json").is_file():
            return "brats" if read_labels(folder / "dataset.json")[1] else "medseg"
    return "medseg"


def evaluate_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    out_dir: str | Path,
    *,
    roi_dir: str | Path | None = None,
    probabilities_dir: str | Path | None = None,
    labels: Mapping[str, int] | None = None,
    regions: Mapping[str, Sequence[int]] | None = None,
    nsd_tolerance: float = 1.0,
    workers: int = 2,
    convention: str = "auto",
) -> Summary:
    """Score every ground-truth case against its prediction and write the reports.

    Parameters
    ----------
    pred_dir, gt_dir : path
        Folders of label maps, matched by file name without extension.
    out_dir : path
        Output folder (created): ``per_case.csv``, ``summary.json``, ``report.md``, ``report.html``,
        ``boxplots.png``.
    roi_dir : path, optional
        Region-of-interest masks (same names); voxels outside are ignored by every metric.
    probabilities_dir : path, optional
        Probability maps (same names; ``.npz`` with key ``probabilities`` or the first array, ``.npy``,
        or any image), ``(C, *shape)`` with channel ``c`` = class value ``c``; adds ROC AUC and PR AUC.
    labels, regions : mapping, optional
        ``name -> value`` and ``name -> [values]``. When both are omitted: the labels (or regions) of
        the dataset.json in ``gt_dir`` or up to two folders above, else every non-zero value in the
        ground truths, named by its value.
    nsd_tolerance : float
        Normalised surface Dice tolerance, mm.
    workers : int
        Processes evaluating cases in parallel (1 = in this process).
    convention : {"auto", "medseg", "brats"}
        How an empty mask scores. ``"medseg"``: exactly one empty -> distances inf; ``"brats"``: the BraTS
        rules of :mod:`medseg.metrics.brats` (exactly one empty -> Dice 0, HD95 373.13 mm); ``"auto"``:
        ``"brats"`` for region-based tasks (the dataset.json beside ``gt_dir`` declares regions), else
        ``"medseg"``.

    Returns
    -------
    Summary

    Examples
    --------
    >>> summary = evaluate_folders("pred", "labelsTs", "eval", workers=2)  # doctest: +SKIP
    >>> summary.mean("dice", "liver")  # doctest: +SKIP
    """
    pred_dir, gt_dir, out_dir = Path(pred_dir), Path(gt_dir), Path(out_dir)
    if nsd_tolerance < 0:
        raise MedsegError(f"--nsd-tolerance must be >= 0 mm; got {nsd_tolerance}")
    gts, preds, rois, probs = _matched_inputs(pred_dir, gt_dir, roi_dir, probabilities_dir)
    with _pool(workers) as pool:  # one pool for both passes: starting processes costs ~1 s each
        items = _resolve_labels(gt_dir, gts, labels, regions, pool)
        convention = _resolve_convention(convention, gt_dir, labels, regions)
        tasks = [
            {
                "case": name, "gt": str(gt), "pred": str(preds[name]) if name in preds else None,
                "roi": str(rois[name]) if rois is not None else None,
                "prob": str(probs[name]) if probs is not None and name in probs else None,
                "want_probabilities": probs is not None,
                "labels": {n: list(v) for n, v in items.items()}, "nsd_tolerance": float(nsd_tolerance),
                "convention": convention,
            }
            for name, gt in sorted(gts.items())
        ]
        rows = [row for case_rows in _map(_evaluate_one, tasks, pool) for row in case_rows]
    metrics = METRICS + (PROBABILITY_METRICS if probs is not None else ())

    statistics = _statistics(rows, list(items), metrics)
    counts = _counts(rows, list(items), gts, preds, probs)
    summary = Summary(out_dir, items, rows, statistics, counts, metrics,
                      "px" if all(is_raster(p) for p in gts.values()) else "mm")
    settings = {
        "pred_dir": str(pred_dir), "gt_dir": str(gt_dir), "roi_dir": None if roi_dir is None else str(roi_dir),
        "probabilities_dir": None if probabilities_dir is None else str(probabilities_dir),
        "nsd_tolerance_mm": float(nsd_tolerance), "convention": convention,
        # raster ground truths (PNG, TIFF...) carry no spacing: distances are then in pixels, not mm
        "length_unit": summary.length_unit,
    }
    _write_outputs(summary, settings)
    return summary


def _matched_inputs(pred_dir: Path, gt_dir: Path, roi_dir: str | Path | None, probabilities_dir: str | Path | None,
                    ) -> tuple[dict[str, Path], dict[str, Path], dict[str, Path] | None, dict[str, Path] | None]:
    """Ground truths, predictions, ROIs and probabilities by case name; refused when nothing can be scored."""
    gts = _index(gt_dir, "ground truth")
    if not gts:
        raise MedsegError("no ground-truth images found", gt_dir)
    preds = _index(pred_dir, "prediction")
    if not preds:
        raise MedsegError("prediction folder holds no label maps (nothing to evaluate)", pred_dir)
    unmatched = sorted(set(preds) - set(gts))
    if unmatched and not set(preds) & set(gts):
        raise MedsegError(f"no prediction matches a ground-truth case: predictions {', '.join(unmatched[:5])} vs "
                          f"ground truths {', '.join(sorted(gts)[:5])} (cases are matched by file name)", pred_dir)
    rois = _index(Path(roi_dir), "roi") if roi_dir is not None else None
    probs = _index(Path(probabilities_dir), "probabilities", arrays=True) if probabilities_dir is not None else None
    if rois is not None:
        absent = sorted(set(gts) - set(rois))
        if absent:
            raise MedsegError(f"no roi for case(s) {', '.join(absent[:5])}", roi_dir)
    return gts, preds, rois, probs


def _statistics(rows: list[dict], labels: list[str], metrics: Sequence[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Per label and metric the summary statistics over cases; ``foreground_mean``: the mean over labels."""
    statistics = {label: {m: summarize([r[m] for r in rows if r["label"] == label]) for m in metrics}
                  for label in labels}
    statistics["foreground_mean"] = {
        m: {"mean": float(np.nanmean([statistics[l][m]["mean"] for l in labels]))
            if any(np.isfinite(statistics[l][m]["mean"]) for l in labels) else float("nan")}
        for m in metrics
    }
    return statistics


def _counts(rows: list[dict], labels: list[str], gts: Mapping, preds: Mapping, probs: Mapping | None) -> dict:
    """Cases, the ones missing on either side, and per label how often reference / prediction were empty."""
    def per_label(label: str) -> dict[str, int]:
        mine = [r for r in rows if r["label"] == label]
        return {"reference_empty": sum(r["reference_empty"] for r in mine),
                "prediction_empty": sum(r["prediction_empty"] for r in mine),
                "both_empty": sum(r["reference_empty"] and r["prediction_empty"] for r in mine),
                "exactly_one_empty": sum(r["reference_empty"] != r["prediction_empty"] for r in mine)}

    return {
        "cases": len(gts),
        "missing_predictions": sorted(set(gts) - set(preds)),
        "predictions_without_ground_truth": sorted(set(preds) - set(gts)),
        "missing_probabilities": sorted(set(gts) - set(probs)) if probs is not None else [],
        "per_label": {label: per_label(label) for label in labels},
    }


# --- outputs -------------------------------------------------------------------------------------
def _json_value(value):
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


DEFINITIONS = {
    "surface": "boundary voxels = mask XOR face-connectivity erosion (outside the image is background); "
               "Euclidean distances in mm between voxel centres",
    "hd95": "max of the two directed 95th percentiles (MONAI / DeepMind convention)",
    "assd": "pooled mean of both directed distance sets (MONAI symmetric=True)",
    "nsd": "fraction of both surfaces' boundary voxels within the tolerance of the other surface (MONAI)",
    "empty_masks": "both empty: Dice 1, distances 0, NSD 1; exactly one empty: Dice 0, distances inf, NSD 0",
    "statistics": "mean/std/median/95% bootstrap CI over finite values; inf and nan are counted (n_inf, n_nan)",
    "missing_prediction": "scored as failure: overlap 0, distances inf",
    "brats_convention": "region tasks (convention 'brats'): both empty Dice 1 / distances 0; exactly one empty "
                        "Dice 0 / distances 373.13 mm (the 240x240x155 1-mm BraTS grid's diagonal), as BraTS scores",
    "volumes": "mL in 3D, mm^2 in 2D; volume_diff = prediction - reference",
}


def _write_outputs(summary: Summary, settings: dict) -> None:
    out = summary.out_dir
    out.mkdir(parents=True, exist_ok=True)
    columns = ["case", "label", "status", "reference_empty", "prediction_empty", *summary.metrics]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in summary.per_case:
        writer.writerow({c: (repr(row[c]) if isinstance(row[c], float) else row[c]) for c in columns})
    write_text_atomic(out / "per_case.csv", buffer.getvalue())
    from medseg.provenance import provenance

    payload = {
        "provenance": provenance(),
        "settings": settings,
        "labels": {n: list(v) for n, v in summary.labels.items()},
        "counts": summary.counts,
        "metrics": summary.statistics,
        "definitions": DEFINITIONS,
    }
    write_text_atomic(out / "summary.json", json.dumps(_json_value(payload), indent=2, allow_nan=False) + "\n")
    from medseg.metrics.report import write_reports

    write_reports(summary, settings)
