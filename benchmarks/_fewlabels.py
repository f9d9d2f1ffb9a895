"""What the few-labels benchmarks share: train through `medseg train`, score through `medseg predict` +
`medseg evaluate`, pseudo-label quality against withheld labels, and a Markdown table of the results.

Every step is a plain `medseg` command printed before it runs (:func:`_timing.run`), so any row can be
repeated by hand. Results accumulate in ``WORK/results.json``; a run that already has its entry is not
repeated (delete the entry, or use another ``--work``, to measure again).
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from _timing import run  # benchmarks/ is on sys.path when a script runs

MEDSEG = [sys.executable, "-m", "medseg"]


class Results:
    """``WORK/results.json``: one entry per run, written after each (an interrupted benchmark keeps its rows)."""

    def __init__(self, work: Path):
        self.path = work / "results.json"
        self.data: dict = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else {}

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def __getitem__(self, key: str) -> dict:
        return self.data[key]

    def __setitem__(self, key: str, entry: dict) -> None:
        if self.path.exists():  # another script may share the work folder: keep its entries
            self.data = {**json.loads(self.path.read_text(encoding="utf-8")), **self.data}
        self.data[key] = entry
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data, indent=2), encoding="utf-8")
        tmp.replace(self.path)
        print(key, json.dumps(entry), flush=True)


def link_cases(folder: Path, files: Iterable[Path]) -> Path:
    """A folder of symbolic links to ``files`` (created once; the data are never copied)."""
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        link = folder / file.name
        if not link.exists():
            link.symlink_to(file.resolve())
    return folder


def train(data: Path, model: Path, *, labeled: Sequence[str] | int | None, method: str | None, minutes: float,
          plan: Path | None = None, fold: str | int | None = None, extra: Sequence[str] = ()) -> dict:
    """One `medseg train` run (``method`` None: supervised on every labelled case); steps and minutes taken.

    Validation during training is switched off (``--val-every 1000000``): the held-out cases are the
    ones reported, so they must not choose the checkpoint. They still choose the postprocessing after
    training (medseg's rule), as in the ordinary supervised benchmarks.
    """
    cmd = MEDSEG + ["train", str(data), "--out", str(model), "--time-limit", f"{minutes}m", "--val-every", "1000000",
                    "--overwrite", "--no-progress"]
    if plan is not None:
        cmd += ["--plan", str(plan)]
    if fold is not None:
        cmd += ["--fold", str(fold)]
    if labeled is not None:
        cmd += ["--labeled", labeled if isinstance(labeled, (int, str)) else ",".join(labeled)]
    if method is not None:
        cmd += ["--semi-supervised", method]
    seconds = run(cmd + list(extra))
    log = list(csv.DictReader((model / "training_log.csv").open(encoding="utf-8")))
    return {"train_minutes": round(seconds / 60, 2), "iterations": int(float(log[-1]["iteration"])) if log else 0}


def val_cases(model: Path) -> list[str]:
    """The validation cases recorded in a model folder."""
    return json.loads((model / "config.json").read_text(encoding="utf-8"))["val_cases"]


def evaluate(model: Path, images: Sequence[Path], labels: Sequence[Path], names: dict[str, int], work: Path,
             tag: str, predict_options: Sequence[str] = ()) -> dict:
    """Predict ``images`` (extra `medseg predict` arguments ``predict_options``), score against ``labels`` (same
    case order): Dice and HD95 per label and their means."""
    labels_dir = link_cases(work / f"gt_{tag}", labels)
    pred, out = work / f"pred_{tag}", work / f"eval_{tag}"
    run(MEDSEG + ["predict", str(model), "-i", *map(str, images), "-o", str(pred), "--overwrite", *predict_options])
    run(MEDSEG + ["evaluate", str(pred), str(labels_dir), "--out", str(out), "--workers", "1",
                  *[a for name, value in names.items() for a in ("--labels", f"{name}={value}")]])
    metrics = json.loads((out / "summary.json").read_text(encoding="utf-8"))["metrics"]
    dice = {name: metrics[name]["dice"]["mean"] for name in names}
    hd95 = {name: _finite(metrics[name]["hd95"]["mean"]) for name in names}
    return {"dice": dice, "mean_dice": float(np.mean(list(dice.values()))), "hd95": hd95,
            "mean_hd95": float(np.mean(list(hd95.values()))), "cases": len(images)}


def _finite(value: float | None) -> float:
    """HD95 of an empty prediction is written as null (infinite): keep it infinite in the means."""
    return math.inf if value is None else float(value)


def pseudo_label_quality(pseudo: Path, truth_of: dict[str, Path], values: Sequence[int],
                         thresholds: Sequence[float]) -> dict:
    """Per voxel-confidence threshold: share of voxels kept and mean Dice (over ``values``) of the kept
    voxels against the withheld labels, from the written confidence maps (one pseudo-labelling serves all)."""
    from medseg.io import read_image

    volumes = []
    for case, truth in truth_of.items():
        path = pseudo / "labelsTr" / f"{case}.nii.gz"
        if path.exists():  # cases below the case threshold are not written
            volumes.append((read_image(path).array[0], read_image(pseudo / "confidenceTr" / f"{case}.nii.gz").array[0],
                            read_image(truth).array[0]))
    out: dict = {"of": len(truth_of), "cases": len(volumes)}
    for threshold in thresholds:
        dices, kept = [], []
        for guess, confidence, truth in volumes:
            keep = confidence >= threshold
            kept.append(float(keep.mean()))
            per = []
            for value in values:
                a, b = (guess == value) & keep, (truth == value) & keep
                if a.sum() + b.sum():
                    per.append(2 * float((a & b).sum()) / float(a.sum() + b.sum()))
            if per:
                dices.append(float(np.mean(per)))
        out[f"{threshold:g}"] = {"kept_voxel_share": float(np.mean(kept)) if kept else 0.0,
                                 "confident_dice": float(np.mean(dices)) if dices else None}
    return out


def _cell(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def scores_table(rows: Sequence[tuple[str, dict]], names: Sequence[str]) -> str:
    """A Markdown table: one row per run, Dice and HD95 per label, their means, steps and minutes."""
    head = (["run"] + [f"Dice {n}" for n in names] + ["mean Dice"] + [f"HD95 {n}" for n in names]
            + ["mean HD95", "steps", "minutes of `medseg train`"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, entry in rows:
        cells = ([label] + [_cell(entry["dice"][n]) for n in names] + [_cell(entry["mean_dice"])]
                 + [_cell(entry["hd95"][n], 2) for n in names] + [_cell(entry["mean_hd95"], 2),
                                                                   str(entry.get("iterations", "")),
                                                                   _cell(entry.get("train_minutes"), 1)])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_and_spread(values: Sequence[float]) -> str:
    """``mean ± sd`` (sample standard deviation; ``inf`` when any value is infinite)."""
    values = [float(v) for v in values]
    if any(math.isinf(v) for v in values):
        return "inf"
    if len(values) < 2:
        return _cell(values[0]) if values else "—"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"
