"""Classical segmentation benchmark: DRIVE retinal vessels (2D) and 3D organ label maps.

DRIVE test set, inside the field of view (FOV), green channel:
  * Frangi + Otsu                (the textbook pipeline, no tuning);
  * CLAHE + Sato + Otsu          (contrast-limited equalisation, then Sato's line filter);
  * Frangi / CLAHE + Sato + p-tile: the share of vessel pixels tuned on the 20 DRIVE *training* images
    (best mean F1), then applied unchanged to the test set;
  * the second observer (2nd_manual scored against 1st_manual) for comparison.
  Accuracy, sensitivity, specificity, F1 and ROC AUC (vesselness as the score) are means over images.

3D: synthetic organ phantoms (medseg.datasets.synthetic.organs3d_case) and ACDC validation volumes
(cropped to the heart's bounding box + 10 mm, an oracle region of interest as a user would draw).
Clustering/threshold methods know nothing about label semantics, so each cluster is given the reference
label it overlaps most (oracle majority mapping); region growing starts from one oracle seed per label
(the voxel deepest inside it). These are floors for learned models, not fair fully automatic scores.

Run (≈3 min on 2 cores):
    .venv/bin/python benchmarks/classical.py --out /tmp/classical.md
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage import exposure

from medseg.classical import (
    segment_confidence_connected,
    segment_fuzzy_cmeans,
    segment_gaussian_mixture,
    segment_kmeans,
    segment_multi_otsu,
    vesselness,
)
from medseg.classical.threshold import otsu_value
from medseg.fileutil import write_text_atomic
from medseg.io import read_image
from medseg.metrics import accuracy, dice, f1, roc_auc, sensitivity, specificity

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FRACTIONS = np.round(np.arange(0.08, 0.165, 0.01), 2)


# --- DRIVE -----------------------------------------------------------------------------------------
def drive_cases(root: Path, subset: str):
    images = sorted((root / subset / "images").glob("*.tif"))
    for path in images:
        idx = path.name.split("_")[0]
        image = read_image(path)
        label = read_image(root / subset / "1st_manual" / f"{idx}_manual1.gif").array[0] > 0
        fov = read_image(next((root / subset / "mask").glob(f"{idx}_*mask.gif"))).array[0] > 0
        second = root / subset / "2nd_manual" / f"{idx}_manual2.gif"
        yield idx, image.array[1].astype(np.float64) / 255.0, label, fov, second


def frangi_score(green, fov):
    return vesselness(green, (1.0, 2.0, 3.0), method="frangi", polarity="dark", roi=fov)


def clahe_sato_score(green, fov):
    enhanced = exposure.equalize_adapthist(green, clip_limit=0.01)
    return vesselness(enhanced, (1.0, 2.0, 3.0), method="sato", polarity="dark", roi=fov)


SCORES: dict[str, Callable] = {"Frangi": frangi_score, "CLAHE + Sato": clahe_sato_score}


def scores_of(root: Path, subset: str):
    out = []
    for idx, green, label, fov, second in drive_cases(root, subset):
        row = {"id": idx, "label": label, "fov": fov, "second": second}
        for name, fn in SCORES.items():
            t = time.perf_counter()
            row[name] = fn(green, fov)
            row[f"{name} time"] = time.perf_counter() - t
        out.append(row)
    return out


def p_tile(score, fov, fraction):
    return score > np.quantile(score[fov], 1.0 - fraction)


def metrics_row(seg, label, fov, score=None):
    row = {
        "accuracy": accuracy(seg, label, fov),
        "sensitivity": sensitivity(seg, label, fov),
        "specificity": specificity(seg, label, fov),
        "F1": f1(seg, label, fov),
    }
    row["AUC"] = roc_auc(score, label, fov) if score is not None else float("nan")
    return row


def drive_benchmark(root: Path) -> tuple[str, dict]:
    train = scores_of(root, "training")
    tuned = {}
    for name in SCORES:
        means = [np.mean([f1(p_tile(r[name], r["fov"], q), r["label"], r["fov"]) for r in train]) for q in FRACTIONS]
        tuned[name] = float(FRACTIONS[int(np.argmax(means))])
    test = scores_of(root, "test")
    rows: dict[str, list[dict]] = {}
    for r in test:
        for name in SCORES:
            s, fov = r[name], r["fov"]
            t = time.perf_counter()
            otsu = s > otsu_value(s[fov])
            t_otsu = time.perf_counter() - t
            rows.setdefault(f"{name} + Otsu", []).append(
                {**metrics_row(otsu, r["label"], fov, s), "time": r[f"{name} time"] + t_otsu})
            rows.setdefault(f"{name} + p-tile {tuned[name]:.2f} (tuned on training)", []).append(
                {**metrics_row(p_tile(s, fov, tuned[name]), r["label"], fov, s), "time": r[f"{name} time"]})
        if r["second"].exists():
            second = read_image(r["second"]).array[0] > 0
            rows.setdefault("2nd observer vs 1st", []).append({**metrics_row(second, r["label"], r["fov"]), "time": float("nan")})
    cols = ["accuracy", "sensitivity", "specificity", "F1", "AUC", "time"]
    lines = [f"| DRIVE test (n={len(test)}, inside FOV) | " + " | ".join(c if c != "time" else "s / image" for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    summary = {}
    for name, items in rows.items():
        means = {c: float(np.nanmean([it[c] for it in items])) if not all(np.isnan(it[c]) for it in items) else float("nan") for c in cols}
        summary[name] = means
        lines.append(f"| {name} | " + " | ".join("–" if np.isnan(means[c]) else f"{means[c]:.3f}" if c != "time" else f"{means[c]:.2f}" for c in cols) + " |")
    return "\n".join(lines), {"tuned_fraction": tuned, "test": summary}


# --- 3D ---------------------------------------------------------------------------------------------
def majority_map(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Give each predicted cluster the reference label it overlaps most (oracle cluster naming)."""
    out = np.zeros_like(label)
    for c in np.unique(pred):
        where = pred == c
        out[where] = np.bincount(label[where].ravel()).argmax()
    return out


def deepest_voxel(mask: np.ndarray, spacing) -> tuple[int, ...]:
    dist = ndimage.distance_transform_edt(mask, sampling=spacing)
    return tuple(int(i) for i in np.unravel_index(np.argmax(dist), mask.shape))


def run_3d_methods(image: np.ndarray, label: np.ndarray, spacing, classes: int) -> dict[str, tuple[dict, float]]:
    results = {}
    labels = [int(v) for v in np.unique(label) if v]
    clusterers = {
        f"multi-Otsu (K={classes})": lambda: segment_multi_otsu(image, classes=classes),
        f"k-means (K={classes})": lambda: segment_kmeans(image, classes=classes),
        f"fuzzy c-means (K={classes})": lambda: segment_fuzzy_cmeans(image, classes=classes),
        f"Gaussian mixture (K={classes})": lambda: segment_gaussian_mixture(image, classes=classes),
    }
    for name, fn in clusterers.items():
        t = time.perf_counter()
        pred = majority_map(fn(), label)
        elapsed = time.perf_counter() - t
        results[name] = ({v: dice(pred == v, label == v) for v in labels}, elapsed)
    t = time.perf_counter()
    per = {}
    for v in labels:
        seed = deepest_voxel(label == v, spacing)
        grown = segment_confidence_connected(image, seeds=[seed], multiplier=2.5, iterations=5, spacing=spacing)
        per[v] = dice(grown, label == v)
    results["confidence-connected region growing (1 oracle seed / label)"] = (per, time.perf_counter() - t)
    return results


def table_3d(title: str, names: list[str], all_results: list[dict], label_names: dict[int, str]) -> str:
    values = sorted(label_names)
    head = f"| {title} | " + " | ".join(f"Dice {label_names[v]}" for v in values) + " | mean Dice | s / volume |"
    lines = [head, "|---|" + "---|" * (len(values) + 2)]
    for name in names:
        per_label = {v: np.mean([r[name][0][v] for r in all_results if v in r[name][0]]) for v in values}
        t = np.mean([r[name][1] for r in all_results])
        lines.append(f"| {name} | " + " | ".join(f"{per_label[v]:.3f}" for v in values)
                     + f" | {np.mean(list(per_label.values())):.3f} | {t:.2f} |")
    return "\n".join(lines)


def synthetic_benchmark(cases: int) -> str:
    from medseg.datasets.synthetic import organs3d_case

    results = []
    for i in range(cases):
        image, label = organs3d_case((32, 64, 64), seed=[0, i])
        lab = label.array[0].astype(np.int64)
        k = int(lab.max()) + 2  # air, body, one class per organ
        results.append(run_3d_methods(image.array[0].astype(np.float32), lab, image.spacing, k))
    names = list(results[0])
    label_names = {v: f"organ {v}" for v in range(1, int(max(max(r[n][0]) for r in results for n in names)) + 1)}
    return table_3d(f"synthetic organs3d (n={cases}, 32×64×64)", names, results, label_names)


def acdc_benchmark(root: Path, cases: int) -> str:
    meta = json.loads((root / "dataset.json").read_text())
    label_names = {int(v): k for k, v in meta["labels"].items() if int(v)}
    val = json.loads((root / "splits.json").read_text())["val"][:cases]
    results = []
    for case in val:
        image = read_image(root / "imagesTr" / f"{case}_0000.nii.gz")
        label = read_image(root / "labelsTr" / f"{case}.nii.gz").array[0].astype(np.int64)
        margin = [int(np.ceil(10.0 / s)) for s in image.spacing]
        idx = np.argwhere(label > 0)
        lo = np.maximum(idx.min(0) - margin, 0)
        hi = np.minimum(idx.max(0) + np.array(margin) + 1, label.shape)
        crop = tuple(slice(a, b) for a, b in zip(lo, hi))
        results.append(run_3d_methods(image.array[0][crop].astype(np.float32), label[crop], image.spacing, 5))
    names = list(results[0])
    return table_3d(f"ACDC val (n={len(val)}, heart ROI + 10 mm)", names, results, label_names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder holding DRIVE/ and ACDC/")
    parser.add_argument("--synthetic-cases", type=int, default=5)
    parser.add_argument("--acdc-cases", type=int, default=6)
    parser.add_argument("--out", type=Path, help="also write the tables (markdown) here")
    args = parser.parse_args()
    parts = []
    t0 = time.perf_counter()
    if (args.data / "DRIVE").is_dir():
        table, info = drive_benchmark(args.data / "DRIVE")
        parts += [table, f"\np-tile fractions tuned on DRIVE training: {info['tuned_fraction']}"]
        print(parts[-2] + parts[-1], flush=True)
    parts.append(synthetic_benchmark(args.synthetic_cases))
    print("\n" + parts[-1], flush=True)
    if (args.data / "ACDC").is_dir() and args.acdc_cases:
        parts.append(acdc_benchmark(args.data / "ACDC", args.acdc_cases))
        print("\n" + parts[-1], flush=True)
    parts.append(f"\ntotal {time.perf_counter() - t0:.0f} s")
    print(parts[-1])
    if args.out:
        write_text_atomic(args.out, "\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
