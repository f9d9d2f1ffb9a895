"""A cascade's predictions on disk: OUT/classification.csv (one row per case: the positive class's
probability, the threshold, the decision and every measurement the classifier read), OUT/patients.csv (one
row per patient: its cases, how many were decided positive, the highest probability, each label's summed
size and the patient's decision), classification.json (both, with the cascade's decision rules) and the
overlay PNGs — written by ``medseg predict CASCADE``, read by ``medseg evaluate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from medseg.errors import MedsegError

CLASSIFICATION_CSV = "classification.csv"
CLASSIFICATION_JSON = "classification.json"
PATIENTS_CSV = "patients.csv"
#: how a patient's decision follows from its cases' (one B-scan with fluid refers the patient)
PATIENT_RULE = ("a patient is {positive} when any of its cases is (patients: the case names without their "
                "scan / frame / session suffix or image number, as the classifier's cross-validation grouped them)")


def result_row(case: str, result: Any, positive: str) -> dict[str, Any]:
    """One case's row of classification.csv from a :class:`~medseg.cascade.model.CascadeResult`."""
    return {"case": case, f"probability_{positive}": round(result.probability, 6),
            "threshold": round(result.threshold, 6), "decision": result.decision,
            **{k: round(v, 6) for k, v in result.features.items()}}


def patient_rows(rows: list[dict], classes: Sequence[str]) -> list[dict]:
    """One row per patient from the case rows of :func:`result_row` (see :data:`PATIENT_RULE`).

    Examples
    --------
    >>> rows = [{"case": "s1_scan0", "probability_fluid": 0.2, "decision": "none", "fluid_area": 0.0},
    ...         {"case": "s1_scan1", "probability_fluid": 0.9, "decision": "fluid", "fluid_area": 3.5}]
    >>> patient_rows(rows, ("none", "fluid"))[0]["decision"]
    'fluid'
    """
    from medseg.cascade.features import size_columns
    from medseg.datasets.splits import case_group

    negative, positive = classes
    names = list(rows[0])
    sizes = [names[i] for i in size_columns(names) if names[i] != f"probability_{positive}"]
    patients: dict[str, list[dict]] = {}
    for row in rows:
        patients.setdefault(case_group(row["case"]), []).append(row)
    out = []
    for patient, cases in patients.items():
        hits = sum(r["decision"] == positive for r in cases)
        out.append({"patient": patient, "cases": len(cases), f"{positive}_cases": hits,
                    f"max_probability_{positive}": max(r[f"probability_{positive}"] for r in cases),
                    **{f"total_{k}": round(sum(r[k] for r in cases), 6) for k in sizes},
                    "decision": positive if hits else negative})
    return out


def _csv_text(rows: list[dict]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_results(rows: list[dict], record: Mapping[str, Any], folder: Path) -> list[dict]:
    """classification.csv, patients.csv and classification.json, written atomically (rewritten after every
    case); returns the patient rows."""
    import json

    from medseg.fileutil import write_text_atomic

    patients = patient_rows(rows, record["classes"])
    write_text_atomic(folder / CLASSIFICATION_CSV, _csv_text(rows))
    write_text_atomic(folder / PATIENTS_CSV, _csv_text(patients))
    summary = {"cascade": {k: record[k] for k in ("classes", "positive_class", "threshold", "decision")},
               "classifier": record["classifier"]["name"], "cases": rows,
               "patient_decision": PATIENT_RULE.format(positive=record["positive_class"]), "patients": patients}
    write_text_atomic(folder / CLASSIFICATION_JSON, json.dumps(summary, indent=2) + "\n")
    return patients


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


def write_overlay(image, labels, text: str, path: Path) -> None:
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
