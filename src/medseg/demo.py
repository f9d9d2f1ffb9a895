"""``python -m medseg.demo --out demo_output`` (``make demo``): the whole learning pipeline in about three
minutes on a 2-core CPU.

1. synthesise a small fundus-like vessel dataset (:func:`medseg.datasets.make_vessels2d`);
2. train a 2D U-Net for about two minutes (green channel + CLAHE + z-score in the field of view);
3. predict the held-out test images in their own format and geometry;
4. evaluate inside the field of view next to a trivial baseline (Otsu threshold of the green channel);
5. print the metric table and write overlay PNGs and the evaluator's report into the output folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np


def otsu_baseline(image: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """Vessels = green-channel pixels darker than Otsu's threshold inside the field of view."""
    from skimage.filters import threshold_otsu

    green = image[1] if image.shape[0] >= 3 else image[0]
    inside = green[roi]
    threshold = threshold_otsu(inside)
    return ((green <= threshold) & roi).astype(np.uint8)  # skimage: values <= t form the dark class


def write_overlay(image: np.ndarray, prediction: np.ndarray, reference: np.ndarray, roi: np.ndarray | None,
                  path: Path, title: str) -> None:
    """Three panels: the photograph; reference (green) and prediction (red) contours on it; the error map
    (white = correct vessel, red = false positive, blue = missed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    from medseg.fileutil import atomic_path

    rgb = np.moveaxis(image[:3], 0, -1).astype(np.float32) if image.shape[0] >= 3 else np.repeat(
        image[0][..., None], 3, -1).astype(np.float32)
    rgb = (rgb - rgb.min()) / max(float(rgb.max() - rgb.min()), 1e-6)
    pred, ref = prediction.astype(bool), reference.astype(bool)
    # contours drawn on a nearest-upsampled copy, so that they stay thinner than the thin vessels
    k = max(1, 512 // max(pred.shape))
    up = lambda a: np.kron(a, np.ones((k, k), dtype=a.dtype)) if a.ndim == 2 else np.kron(  # noqa: E731
        a, np.ones((k, k, 1), dtype=a.dtype))
    contours = up(rgb)
    contours[find_boundaries(up(ref), mode="inner")] = (0.0, 1.0, 0.0)
    contours[find_boundaries(up(pred), mode="inner")] = (1.0, 0.0, 0.0)
    errors = np.zeros(pred.shape + (3,), np.float32)
    errors[pred & ref] = (1, 1, 1)
    errors[pred & ~ref] = (1, 0.2, 0.2)
    errors[~pred & ref] = (0.3, 0.5, 1)
    if roi is not None:
        errors[~roi.astype(bool)] *= 0.3
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4), dpi=110)
    for ax, panel, name in zip(axes, (rgb, contours, errors),
                               ("image", "reference (green) / prediction (red)", "TP white, FP red, FN blue")):
        ax.imshow(panel, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _mean(summary, label: str, metric: str) -> float:
    values = [row[metric] for row in summary.per_case if row.get("label") == label and row.get("status") == "ok"
              and isinstance(row.get(metric), (int, float))]
    return float(np.mean(values)) if values else float("nan")


def run_demo(out: str | Path, *, cases: int = 16, test_cases: int = 6, size: int = 128,
             time_limit: float = 120.0, seed: int = 0, threads: int | None = None,
             iterations: int | None = None, patch_size: int = 96, batch_size: int = 8, features: int = 16,
             progress: bool = True) -> dict:
    """Run the demo into ``out`` and return the metric table as a dict.

    Parameters
    ----------
    out : path
        Output folder (replaced if it holds a previous demo).
    cases, test_cases, size : int
        Synthetic training / test images and their size.
    time_limit : float
        Training budget in seconds.
    seed : int
    threads : int, optional
        CPU threads for training and prediction (default: all cores).
    iterations : int, optional
        Stop after this many iterations as well (tests use a handful).
    patch_size, batch_size, features : int
        Training patch (square), patches per iteration, U-Net width.
    progress : bool
        Show the training progress bar.
    """
    from rich.console import Console
    from rich.table import Table

    from medseg.datasets import load_dataset, make_vessels2d
    from medseg.inference.predictor import Predictor
    from medseg.io import write_image
    from medseg.metrics.evaluator import evaluate_folders
    from medseg.training.config import TrainingConfig
    from medseg.training.loop import train
    from medseg.training.scope import scoped_run_state

    console = Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    data = make_vessels2d(out / "dataset", cases=cases, seed=seed, size=size, test_cases=test_cases, overwrite=True)
    dataset = load_dataset(data)
    console.print(f"[bold]1/4[/] synthesised {cases} training and {test_cases} test images ({size}×{size}) in {data}")

    val = [c.name for c in dataset.cases[-2:]]
    config = TrainingConfig(
        network="unet", network_options={"features": features, "depth": 4}, patch_size=(patch_size, patch_size),
        batch_size=batch_size,
        time_limit=time_limit, iterations=iterations, learning_rate=3e-3, warmup_iterations=20,
        val_every=50, checkpoint_every=100, log_every=10, seed=seed, threads=threads,
    )
    console.print(f"[bold]2/4[/] training a 2D U-Net for {time_limit:.0f} s (validation cases {', '.join(val)})")
    result = train(dataset, out / "model", config, val_cases=val, overwrite=True, progress=progress)

    console.print("[bold]3/4[/] predicting the held-out test images")
    predictor = Predictor.from_folder(out / "model")
    pred_dir, prob_dir, base_dir, overlay_dir = (out / "predictions", out / "predictions" / "probabilities",
                                                 out / "baseline_otsu", out / "overlays")
    t_pred = []
    with scoped_run_state(threads, seed):  # the thread count is restored afterwards
        for case in dataset.test_cases:
            image, roi, label = case.read_image(), case.read_roi(), case.read_label()
            t0 = time.perf_counter()
            labels, probs = predictor.predict_with_probabilities(image, roi)
            t_pred.append(time.perf_counter() - t0)
            ext = dataset.file_ending
            write_image(labels, pred_dir / f"{case.name}{ext}")
            write_image(probs.with_array(probs.array[1:2], ("vessel",)), prob_dir / f"{case.name}.tif")
            roi_mask = roi.array[0] > 0
            baseline = otsu_baseline(image.array, roi_mask)
            write_image(image.with_array(baseline[None], ("label",)), base_dir / f"{case.name}{ext}")
            write_overlay(image.array, labels.array[0], label.array[0], roi_mask, overlay_dir / f"{case.name}.png",
                          f"{case.name}: medseg U-Net")
            write_overlay(image.array, baseline, label.array[0], roi_mask, overlay_dir / f"{case.name}_otsu.png",
                          f"{case.name}: Otsu threshold (baseline)")

    console.print("[bold]4/4[/] evaluating inside the field of view")
    gt, rois = data / "labelsTs", data / "roisTs"
    model_summary = evaluate_folders(pred_dir, gt, out / "evaluation", roi_dir=rois, probabilities_dir=prob_dir)
    base_summary = evaluate_folders(base_dir, gt, out / "evaluation_otsu", roi_dir=rois)

    metrics = ("dice", "accuracy", "recall", "specificity", "roc_auc", "hd95")
    table = Table(title=f"vessel segmentation on {test_cases} held-out synthetic images (inside the field of view)")
    table.add_column("method", no_wrap=True)
    for m in metrics:
        table.add_column(m, justify="right")
    rows = {}
    for name, summary in (("Otsu threshold (green)", base_summary), ("medseg U-Net", model_summary)):
        values = {m: _mean(summary, "vessel", m) for m in metrics}
        # strict JSON: null (an empty prediction has an infinite HD95)
        rows[name] = {m: (v if np.isfinite(v) else None) for m, v in values.items()}
        table.add_row(name, *[(f"{v:.4f}" if np.isfinite(v) else "-") for v in values.values()])
    console.print(table)
    total = time.perf_counter() - t_start
    facts = {
        "training_iterations": result.iterations, "training_seconds": round(result.elapsed, 1),
        "inference_seconds_per_image": round(float(np.mean(t_pred)), 3), "total_seconds": round(total, 1),
        "metrics": rows,
    }
    from medseg.fileutil import write_text_atomic

    write_text_atomic(out / "demo_summary.json", json.dumps(facts, indent=2, allow_nan=False) + "\n")
    console.print(
        f"trained {result.iterations} iterations in {result.elapsed:.0f} s; inference {np.mean(t_pred):.2f} s per image; "
        f"total {total:.0f} s.\noutputs in {out}/: model/ (config.json, model.safetensors, training_log.csv, "
        f"training_curve.png), predictions/, overlays/, evaluation/report.html")
    return facts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medseg.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    parser.add_argument("--time-limit", type=float, default=120.0, help="training seconds (default 120)")
    parser.add_argument("--cases", type=int, default=16)
    parser.add_argument("--test-cases", type=int, default=6)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--iterations", type=int, default=None)
    args = parser.parse_args(argv)
    facts = run_demo(args.out, cases=args.cases, test_cases=args.test_cases, size=args.size,
                     time_limit=args.time_limit, seed=args.seed, threads=args.threads, iterations=args.iterations)
    model = facts["metrics"]["medseg U-Net"]["dice"]
    baseline = facts["metrics"]["Otsu threshold (green)"]["dice"]
    return 0 if model > baseline else 1


if __name__ == "__main__":
    sys.exit(main())
