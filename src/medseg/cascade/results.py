"""A cascade's predictions on disk: OUT/classification.csv (one row per case: the positive class's
probability, the threshold, the decision and every measurement the classifier read), classification.json
(the same with the cascade's decision rule) and the overlay PNGs — written by ``medseg predict CASCADE``,
read by ``medseg evaluate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from medseg.errors import MedsegError

CLASSIFICATION_CSV = "classification.csv"
CLASSIFICATION_JSON = "classification.json"


def result_row(case: str, result: Any, positive: str) -> dict[str, Any]:
    """One case's row of classification.csv from a :class:`~medseg.cascade.model.CascadeResult`."""
    return {"case": case, f"probability_{positive}": round(result.probability, 6),
            "threshold": round(result.threshold, 6), "decision": result.decision,
            **{k: round(v, 6) for k, v in result.features.items()}}


def write_results(rows: list[dict], record: Mapping[str, Any], folder: Path) -> None:
    """classification.csv and classification.json, written atomically (rewritten after every case)."""
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
