"""Device adaptation on fundus photographs: the field of view found automatically, and a DRIVE model applied
zero-shot to STARE (another camera) with and without FOV-diameter normalisation.

    .venv/bin/python benchmarks/devices.py --data ../shared/data --work /tmp/devices --minutes 5

1. FOV finder quality. DRIVE ships FOV masks: Dice of the found FOV against them (40 images). STARE
   ships none: the aperture circle fitted to each found FOV (RANSAC, medseg.preprocessing.fov) gives the
   camera's diameter per image (one camera → one diameter), the share of the found FOV outside that
   circle (leaks) and the share of Hoover's vessel pixels outside the found FOV (bites).
2. `medseg convert drive` + `medseg train` (U-Net, the automatic plan, --time-limit) on the 20 DRIVE
   training images. The training camera's FOV diameter = the median fitted diameter of DRIVE's masks.
3. The DRIVE model on the 18 STARE images (Python API, one thread): at their native size
   (``Predictor``), and zoomed so that the found FOV's diameter equals DRIVE's, predictions returned at
   the native size (``medseg.inference.fov.FovNormalisedPredictor``). Scored inside the automatically
   found FOV against Hoover's labels: ROC AUC, and accuracy / sensitivity / specificity / F1 at p ≥ 0.5
   (mean over images). The DRIVE test set (20 images, `medseg predict` + `medseg evaluate` inside DRIVE's
   masks) is the in-device reference.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from _timing import run  # benchmarks/ is on sys.path when a script runs


def read_ppm_gz(path: Path) -> np.ndarray:
    from PIL import Image as PILImage

    with gzip.open(path) as fh:
        return np.asarray(PILImage.open(io.BytesIO(fh.read())))


def fov_quality(data: Path) -> tuple[dict, float]:
    from PIL import Image as PILImage

    from medseg.metrics import dice
    from medseg.preprocessing.fov import find_fov, fit_fov_circle

    drive_dice, drive_diameters, seconds = [], [], []
    for image_path in sorted((data / "DRIVE").glob("*/images/*.tif")):
        rgb = np.moveaxis(np.asarray(PILImage.open(image_path)), -1, 0)
        mask_path = image_path.parent.parent / "mask" / image_path.name.replace(".tif", "_mask.gif")
        mask = np.asarray(PILImage.open(mask_path)) > 0
        t0 = time.perf_counter()
        roi = find_fov(rgb, name=image_path.name)
        seconds.append(time.perf_counter() - t0)
        drive_dice.append(dice(roi, mask))
        if "training" in str(image_path):
            drive_diameters.append(2 * fit_fov_circle(mask)[2])
    stare_diameters, leaks, bites = [], [], []
    for image_path in sorted((data / "STARE" / "stare-images").glob("*.ppm.gz")):
        rgb = np.moveaxis(read_ppm_gz(image_path), -1, 0)
        vessels = read_ppm_gz(data / "STARE" / "labels-ah" / image_path.name.replace(".ppm.gz", ".ah.ppm.gz")) > 127
        vessels = vessels if vessels.ndim == 2 else vessels.any(-1)
        roi = find_fov(rgb, name=image_path.name)
        cy, cx, radius = fit_fov_circle(roi)
        yy, xx = np.mgrid[:roi.shape[0], :roi.shape[1]]
        disc = np.hypot(yy - cy, xx - cx) < radius
        stare_diameters.append(2 * radius)
        leaks.append(float((roi & ~disc).sum() / roi.sum()))
        bites.append(float((vessels & ~roi).sum() / vessels.sum()))
    result = {
        "drive_dice_mean": float(np.mean(drive_dice)), "drive_dice_min": float(np.min(drive_dice)),
        "drive_images": len(drive_dice), "seconds_per_image": float(np.median(seconds)),
        "drive_training_diameter_median": float(np.median(drive_diameters)),
        "stare_diameter_median": float(np.median(stare_diameters)),
        "stare_diameter_range": [float(min(stare_diameters)), float(max(stare_diameters))],
        "stare_leak_max": float(max(leaks)), "stare_vessels_outside_max": float(max(bites)),
        "stare_vessels_outside_mean": float(np.mean(bites)),
    }
    return result, float(np.median(drive_diameters))


def zero_shot(data: Path, model: Path, target_diameter: float) -> dict:
    """The DRIVE model on every STARE image, native and FOV-normalised, scored inside the found FOV."""
    import torch

    from medseg.image import Image
    from medseg.inference.fov import FovNormalisedPredictor
    from medseg.inference.predictor import Predictor
    from medseg.metrics import overlap_metrics
    from medseg.metrics.probability import roc_auc
    from medseg.preprocessing.fov import find_fov, fov_scale

    torch.set_num_threads(1)
    predictor = Predictor.from_folder(model)
    variants = {"native": predictor, "fov": FovNormalisedPredictor(predictor, target_diameter)}
    rows: dict[str, list] = {k: [] for k in variants}
    seconds: dict[str, float] = {k: 0.0 for k in variants}
    scales = []
    for image_path in sorted((data / "STARE" / "stare-images").glob("*.ppm.gz")):
        name = image_path.name.split(".")[0]
        image = Image(np.moveaxis(read_ppm_gz(image_path), -1, 0))
        label = read_ppm_gz(data / "STARE" / "labels-ah" / f"{name}.ah.ppm.gz") > 127
        label = label if label.ndim == 2 else label.any(-1)
        fov = find_fov(image.array, name=image_path.name)  # the FOV is found, never given
        scales.append(fov_scale(fov, target_diameter))
        roi = image.with_array(fov[None].astype(np.uint8), ("roi",))
        for variant, p in variants.items():
            t0 = time.perf_counter()
            _, probs = p.predict_with_probabilities(image, roi, probabilities=True)
            seconds[variant] += time.perf_counter() - t0
            fg = np.asarray(probs.array[-1], np.float32)
            m = overlap_metrics(fg >= 0.5, label, roi=fov)
            rows[variant].append({"auc": roc_auc(fg, label, fov), "accuracy": m["accuracy"],
                                  "sensitivity": m["recall"], "specificity": m["specificity"], "f1": m["f1"]})
        print(name, {k: round(v[-1]["auc"], 4) for k, v in rows.items()}, flush=True)
    return {k: {**{m: float(np.mean([r[m] for r in v])) for m in v[0]}, "seconds_per_image": seconds[k] / len(v),
                "scale_median": float(np.median(scales))} for k, v in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=5.0, help="DRIVE training budget.")
    parser.add_argument("--fov-only", action="store_true", help="Only the FOV finder table.")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    fov, drive_diameter = fov_quality(args.data)
    print(json.dumps(fov, indent=2))
    if args.fov_only:
        return
    medseg = [sys.executable, "-m", "medseg"]
    dataset, model = args.work / "drive", args.work / "model_drive"
    if not dataset.exists():
        run(medseg + ["convert", "drive", str(args.data / "DRIVE"), str(dataset)])
    if not (model / "model.safetensors").is_file():
        run(medseg + ["train", str(dataset), "--out", str(model), "--time-limit", f"{args.minutes}m", "--threads", "1",
                      "--no-progress", "--overwrite", "--seed", "0"])
    from medseg.inference.fov import save_fov_diameter

    save_fov_diameter(model, drive_diameter, "median aperture diameter of DRIVE's 20 training FOV masks")
    results = zero_shot(args.data, model, drive_diameter)
    run(medseg + ["predict", str(model), "-i", str(dataset / "imagesTs"), "-o", str(args.work / "pred_drive"),
                  "--roi", str(dataset / "roisTs"), "--probabilities", "--overwrite", "--threads", "1"])
    run(medseg + ["evaluate", str(args.work / "pred_drive"), str(dataset / "labelsTs"), "--roi", str(dataset / "roisTs"),
                  "--probabilities", str(args.work / "pred_drive" / "probabilities"), "--out",
                  str(args.work / "eval_drive")])
    summary = {"fov": fov, "drive_fov_diameter": drive_diameter, "zero_shot": results}
    (args.work / "result.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print("\n| STARE, DRIVE U-Net zero-shot (inside the found FOV, mean of 18) | AUC | accuracy | sensitivity | "
          "specificity | F1 |\n|---|---|---|---|---|---|")
    for variant, label in (("native", "native size"), ("fov", f"FOV diameter → DRIVE's ({drive_diameter:.0f} px)")):
        r = results[variant]
        print(f"| {label} | {r['auc']:.4f} | {r['accuracy']:.4f} | {r['sensitivity']:.4f} | {r['specificity']:.4f} | "
              f"{r['f1']:.4f} |")


if __name__ == "__main__":
    main()
