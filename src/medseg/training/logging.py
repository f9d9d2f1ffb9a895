"""Training records: ``training_log.csv`` (one row per logging step, appended so resuming keeps history),
a training-curve PNG (matplotlib, Agg backend) and, only if installed, TensorBoard."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from medseg.fileutil import atomic_path

LOG_NAME = "training_log.csv"
CURVE_NAME = "training_curve.png"


class TrainingLog:
    """Rows of ``{iteration, elapsed, lr, loss, <validation metrics>...}`` kept in memory and on disk.

    Parameters
    ----------
    folder : path
        The model folder.
    resume : bool
        Keep existing rows (up to ``resume_iteration``) instead of starting a new log.
    tensorboard : bool
        Also write TensorBoard events when the ``tensorboard`` package is installed.
    """

    def __init__(self, folder: str | Path, resume: bool = False, resume_iteration: int | None = None,
                 tensorboard: bool = True):
        self.folder = Path(folder)
        self.path = self.folder / LOG_NAME
        self.rows: list[dict[str, Any]] = []
        if resume and self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    parsed = {k: _number(v) for k, v in row.items()}
                    if resume_iteration is None or parsed.get("iteration", 0) <= resume_iteration:
                        self.rows.append(parsed)
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

                self._writer = SummaryWriter(str(self.folder / "tensorboard"))
            except Exception:  # optional: not installed is fine
                self._writer = None

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(dict(row))
        if self._writer is not None:
            step = int(row.get("iteration", len(self.rows)))
            for key, value in row.items():
                if key != "iteration" and isinstance(value, (int, float)) and not math.isnan(value):
                    self._writer.add_scalar(key, value, step)

    def write(self) -> None:
        """Rewrite the CSV atomically (columns: union of all keys, in first-seen order)."""
        columns: list[str] = []
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=columns, restval="")
                writer.writeheader()
                for row in self.rows:
                    writer.writerow({k: _fmt(v) for k, v in row.items()})
        if self._writer is not None:
            self._writer.flush()

    def plot(self) -> Path | None:
        """Write the training-curve PNG (loss and validation metrics against iteration)."""
        return plot_training_curve(self.rows, self.folder / CURVE_NAME)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _number(text: str) -> Any:
    if text == "":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def plot_training_curve(rows: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Loss (left axis) and validation metrics (right axis) against iteration, as a PNG."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = [r["iteration"] for r in rows if isinstance(r.get("loss"), (int, float)) and not math.isnan(r["loss"])]
    losses = [r["loss"] for r in rows if isinstance(r.get("loss"), (int, float)) and not math.isnan(r["loss"])]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(its, losses, color="tab:blue", label="training loss")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    metric_keys = sorted({k for r in rows for k in r if k.startswith("val_")})
    per_class = [k for k in metric_keys if k.startswith("val_dice_")]
    if len(per_class) == 1:  # one class: its Dice is the mean Dice
        metric_keys.remove(per_class[0])
    if metric_keys:
        ax2 = ax.twinx()
        for key in metric_keys:
            pts = [(r["iteration"], r[key]) for r in rows
                   if isinstance(r.get(key), (int, float)) and not math.isnan(r[key])]
            if pts:
                ax2.plot(*zip(*pts), marker="o", markersize=3, label=key)
        ax2.set_ylabel("validation")
        ax2.set_ylim(0, 1)
        ax2.legend(loc="lower right", fontsize=8)
    ax.legend(loc="upper center", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
