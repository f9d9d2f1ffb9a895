"""Device adaptation on fundus photographs (issue 18): a DRIVE U-Net on STARE (another camera) zero-shot without
and with the field-of-view normalisation, and fine-tuned (`medseg train --init-from`) on k STARE images.

One command (the lead's full run; about 20 min of DRIVE training + 3 draws × 3 k × ≤ 5 min fine-tuning +
predictions, ~2 h on a quiet 2-core machine):

    .venv/bin/python benchmarks/devices.py --data ../shared/data --work /tmp/devices --minutes 20 \\
        --finetune-minutes 5 --draws 3 --ks 1,2,5 --colour

Smoke run (a few minutes): ``--minutes 1 --finetune-minutes 0.5 --draws 1 --ks 1``.

1. FOV finder quality (``--fov-only`` stops here). DRIVE ships FOV masks: Dice of the found FOV against them.
   STARE ships none: the aperture circle fitted to each found FOV gives the camera's diameter per image,
   the share of the found FOV outside that circle (leaks) and of Hoover's vessel pixels outside it (bites).
2. `medseg convert drive` + `medseg train` on the 20 DRIVE training images (no tuning options: the rules,
   which record DRIVE's FOV diameter in the model folder); `medseg predict` + `medseg evaluate` on DRIVE's
   20 test images inside their masks (the in-device reference).
3. `medseg convert stare` (18 images, decompressed once into WORK/stare_raw). Zero-shot: `medseg predict`
   of the DRIVE model on all 18, with `--no-fov-normalisation` (native size) and by default (FOV found,
   rescaled to DRIVE's diameter, outputs at STARE's size).
4. Fine-tuning: for each k and draw d, k STARE images drawn with seed 1000·k + d train
   `medseg train --init-from DRIVE_MODEL --time-limit F` (the fine-tuning rules: a tenth of the learning
   rate, no validation below 6 images, DRIVE's threshold kept); the other 18 − k are predicted.

5. ``--colour``: is a colour/contrast normalisation worth recording beside the FOV? A second DRIVE model
   (same budget) whose preprocessing matches the green channel's histogram inside the FOV to DRIVE's
   training images (256 quantiles, `match_histograms`) before CLAHE and the z-score, then zero-shot on
   STARE with the FOV normalisation. Only if it beats row 2 should a rule record it.

Every STARE score is taken inside the **automatically found** FOV (medseg.preprocessing.fov.find_fov; STARE
has no masks) against Hoover's labels, per image, then averaged: ROC AUC of the vessel probability, and
F1 / accuracy / sensitivity / specificity of the written label map (the model's decision threshold).
Fine-tuned rows are the mean (min–max) over draws of the per-draw means over the held-out images.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from _timing import run  # benchmarks/ is on sys.path when a script runs

MEDSEG = [sys.executable, "-m", "medseg"]


def read_ppm_gz(path: Path) -> np.ndarray:
    from PIL import Image as PILImage

    with gzip.open(path) as fh:
        return np.asarray(PILImage.open(io.BytesIO(fh.read())))


def fov_quality(data: Path) -> dict:
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
    return {
        "drive_dice_mean": float(np.mean(drive_dice)), "drive_dice_min": float(np.min(drive_dice)),
        "drive_images": len(drive_dice), "seconds_per_image": float(np.median(seconds)),
        "drive_training_diameter_median": float(np.median(drive_diameters)),
        "stare_diameter_median": float(np.median(stare_diameters)),
        "stare_diameter_range": [float(min(stare_diameters)), float(max(stare_diameters))],
        "stare_leak_max": float(max(leaks)), "stare_vessels_outside_max": float(max(bites)),
        "stare_vessels_outside_mean": float(np.mean(bites)),
    }


def stare_dataset(data: Path, work: Path) -> Path:
    """STARE as a medseg dataset (decompressed once, then `medseg convert stare`)."""
    dataset = work / "stare"
    if (dataset / "dataset.json").is_file():
        return dataset
    raw = work / "stare_raw"
    for sub in ("stare-images", "labels-ah"):
        (raw / sub).mkdir(parents=True, exist_ok=True)
        for path in sorted((data / "STARE" / sub).glob("*.ppm.gz")):
            with gzip.open(path) as fh:
                (raw / sub / path.name[: -len(".gz")]).write_bytes(fh.read())
    run(MEDSEG + ["convert", "stare", str(raw), str(dataset)])
    return dataset


def subset(stare: Path, cases: list[str], folder: Path) -> Path:
    """A dataset folder holding ``cases`` of the converted STARE (copies of its files)."""
    from medseg.datasets import load_dataset
    from medseg.datasets.dataset import write_dataset_json

    full = load_dataset(stare)
    if folder.exists():
        shutil.rmtree(folder)
    for name in cases:
        case = full.case(name)
        for sub, paths in (("imagesTr", case.image_paths), ("labelsTr", [case.label_path])):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            for p in paths:
                shutil.copy2(p, folder / sub / p.name)
    write_dataset_json(folder, name=f"stare_{len(cases)}", channel_names=list(full.channel_names),
                       labels=dict(full.labels), file_ending=full.file_ending, num_training=len(cases))
    return folder


def images_of(stare: Path, cases: list[str], folder: Path) -> Path:
    """A folder with the images of ``cases`` (the prediction input)."""
    from medseg.datasets import load_dataset

    full = load_dataset(stare)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name in cases:
        for p in full.case(name).image_paths:
            shutil.copy2(p, folder / p.name)
    return folder


def score(stare: Path, cases: list[str], pred: Path) -> dict:
    """Mean over images, inside the automatically found FOV, against Hoover's labels."""
    return mean_of(score_images(stare, cases, pred), cases)


def mean_of(rows: dict[str, dict], cases: list[str]) -> dict:
    """The mean of per-image scores over ``cases``."""
    return {k: float(np.mean([rows[c][k] for c in cases])) for k in rows[cases[0]]} | {"images": len(cases)}


def score_images(stare: Path, cases: list[str], pred: Path) -> dict[str, dict]:
    """Per image, inside the automatically found FOV, against Hoover's labels."""
    from medseg.datasets import load_dataset
    from medseg.io import read_image
    from medseg.io.probabilities import read_probabilities
    from medseg.metrics import overlap_metrics
    from medseg.metrics.probability import roc_auc
    from medseg.preprocessing.fov import find_fov

    full = load_dataset(stare)
    rows = {}
    for name in cases:
        case = full.case(name)
        image = case.read_image()
        fov = find_fov(image.array, name=name)  # found, never given
        truth = np.asarray(case.read_label().array[0]) > 0
        labels = np.asarray(read_image(next(pred.glob(f"{name}.*"))).array[0]) > 0
        probs, _ = read_probabilities(next((pred / "probabilities").glob(f"{name}.*")))
        fg = np.asarray(probs, np.float32).reshape((-1,) + truth.shape)[-1]  # the vessel channel
        m = overlap_metrics(labels, truth, roi=fov)
        rows[name] = {"auc": roc_auc(fg, truth, fov), "f1": m["f1"], "accuracy": m["accuracy"],
                      "sensitivity": m["recall"], "specificity": m["specificity"]}
    return rows


def colour_model(drive: Path, work: Path, minutes: float) -> Path:
    """A DRIVE model whose green channel is histogram-matched (inside the FOV) to DRIVE's training images."""
    from medseg.datasets import load_dataset
    from medseg.preprocessing.color import green_channel
    from medseg.preprocessing.enhance import histogram_reference

    model = work / "model_drive_colour"
    if (model / "model.safetensors").is_file():
        return model
    dataset = load_dataset(drive)
    cases = [dataset.case(c.name) for c in dataset.cases]
    reference = histogram_reference([green_channel(c.read_image().array) for c in cases],
                                    masks=[np.asarray(c.read_roi().array[0]) > 0 for c in cases], channel_axis=0)
    steps = [{"name": "green_channel"}, {"name": "match_histograms", "reference": reference, "mask": "roi"},
             {"name": "clahe"}, {"name": "zscore", "mask": "roi"}]
    path = work / "colour_preprocessing.json"
    path.write_text(json.dumps(steps), encoding="utf-8")
    run(MEDSEG + ["train", str(drive), "--out", str(model), "--time-limit", f"{minutes}m", "--threads", "1",
                  "--no-progress", "--overwrite", "--seed", "0", "--preprocessing", str(path)])
    return model


def predict(model: Path, images: Path, out: Path, *extra: str) -> float:
    return run(MEDSEG + ["predict", str(model), "-i", str(images), "-o", str(out), "--probabilities", "--overwrite",
                         "--threads", "1", *extra])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=20.0, help="DRIVE training budget (from scratch).")
    parser.add_argument("--finetune-minutes", type=float, default=5.0, help="Budget of each fine-tuning run.")
    parser.add_argument("--draws", type=int, default=3, help="Random draws of the k fine-tuning images.")
    parser.add_argument("--ks", default="1,2,5", help="Numbers of STARE images to fine-tune on.")
    parser.add_argument("--fov-only", action="store_true", help="Only the FOV finder table.")
    parser.add_argument("--colour", action="store_true", help="Also measure a histogram-matching colour "
                        "normalisation (a second DRIVE model).")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"commands": " ".join(sys.argv)}

    results["fov"] = fov_quality(args.data)
    print(json.dumps(results["fov"], indent=2), flush=True)
    if args.fov_only:
        return
    drive, model = work / "drive", work / "model_drive"
    if not drive.exists():
        run(MEDSEG + ["convert", "drive", str(args.data / "DRIVE"), str(drive)])
    if not (model / "model.safetensors").is_file():
        run(MEDSEG + ["train", str(drive), "--out", str(model), "--time-limit", f"{args.minutes}m", "--threads", "1",
                      "--no-progress", "--overwrite", "--seed", "0"])
    from medseg.model_folder import load_config

    results["drive_fov_diameter"] = load_config(model).fov_diameter
    predict(model, drive / "imagesTs", work / "pred_drive", "--roi", str(drive / "roisTs"))
    run(MEDSEG + ["evaluate", str(work / "pred_drive"), str(drive / "labelsTs"), "--roi", str(drive / "roisTs"),
                  "--probabilities", str(work / "pred_drive" / "probabilities"), "--out", str(work / "eval_drive")])
    summary = json.loads((work / "eval_drive" / "summary.json").read_text(encoding="utf-8"))
    results["drive_test"] = {k: summary["metrics"]["foreground_mean"][k]["mean"]
                             for k in ("roc_auc", "f1", "accuracy") if k in summary["metrics"]["foreground_mean"]}

    stare = stare_dataset(args.data, work)
    from medseg.datasets import load_dataset

    names = [c.name for c in load_dataset(stare).cases]
    every = images_of(stare, names, work / "stare_images")
    seconds = predict(model, every, work / "pred_native", "--no-fov-normalisation")
    results["zero_shot_native"] = score(stare, names, work / "pred_native") | {"seconds": seconds}
    seconds = predict(model, every, work / "pred_fov")
    zero_shot = score_images(stare, names, work / "pred_fov")  # per image: averaged again over each draw's test
    results["zero_shot_fov"] = mean_of(zero_shot, names) | {"seconds": seconds}
    print(json.dumps({k: results[k] for k in ("zero_shot_native", "zero_shot_fov")}, indent=2), flush=True)

    if args.colour:
        colour = colour_model(drive, work, args.minutes)
        seconds = predict(colour, every, work / "pred_colour")
        results["zero_shot_fov_colour"] = score(stare, names, work / "pred_colour") | {"seconds": seconds}
        print(json.dumps(results["zero_shot_fov_colour"], indent=2), flush=True)

    results["finetuned"] = {}
    for k in [int(v) for v in args.ks.split(",")]:
        draws = []
        for d in range(args.draws):
            rng = np.random.default_rng(1000 * k + d)
            train = sorted(rng.choice(names, k, replace=False).tolist())
            test = [n for n in names if n not in train]
            folder = subset(stare, train, work / f"stare_k{k}_d{d}")
            tuned = work / f"model_k{k}_d{d}"
            t0 = time.perf_counter()
            run(MEDSEG + ["train", str(folder), "--out", str(tuned), "--init-from", str(model), "--time-limit",
                          f"{args.finetune_minutes}m", "--threads", "1", "--no-progress", "--overwrite", "--seed", str(d)])
            train_seconds = time.perf_counter() - t0
            pred = work / f"pred_k{k}_d{d}"
            predict(tuned, images_of(stare, test, work / f"images_k{k}_d{d}"), pred)
            # the zero-shot model on the same held-out images: the fine-tuning's gain, paired
            draws.append(score(stare, test, pred) | {"train": train, "train_seconds": train_seconds,
                                                     "zero_shot": mean_of(zero_shot, test)})
            print(k, d, json.dumps(draws[-1]), flush=True)
        results["finetuned"][k] = draws
    (work / "result.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print_table(results)


def print_table(results: dict) -> None:
    diameter = results["drive_fov_diameter"]
    print(f"\nDRIVE test (inside its masks): {results['drive_test']}")
    print("\n| STARE, DRIVE U-Net (inside the found FOV, mean over images) | images | AUC | F1 | accuracy | "
          "sensitivity | specificity |\n|---|---|---|---|---|---|---|")
    for key, label in (("zero_shot_native", "zero-shot, native size"),
                       ("zero_shot_fov", f"zero-shot, FOV → DRIVE's {diameter:.0f} px" if diameter else "zero-shot, FOV"),
                       ("zero_shot_fov_colour", "zero-shot, FOV + green histogram matched to DRIVE's")):
        if key not in results:
            continue
        r = results[key]
        print(f"| {label} | {r['images']} | {r['auc']:.4f} | {r['f1']:.4f} | {r['accuracy']:.4f} | "
              f"{r['sensitivity']:.4f} | {r['specificity']:.4f} |")
    for k, draws in results["finetuned"].items():
        cells = []
        for m in ("auc", "f1", "accuracy", "sensitivity", "specificity"):
            values = [d[m] for d in draws]
            cells.append(f"{np.mean(values):.4f} ({min(values):.4f}–{max(values):.4f})" if len(values) > 1
                         else f"{values[0]:.4f}")
        minutes = max(d["train_seconds"] for d in draws) / 60
        print(f"| fine-tuned on k = {k} ({len(draws)} draw(s), ≤ {minutes:.1f} min incl. start-up) | "
              f"{draws[0]['images']} | " + " | ".join(cells) + " |")
        same = [d["zero_shot"] for d in draws]
        print(f"| zero-shot (FOV) on the same {len(draws)} draw(s)' held-out images | {same[0]['images']} | "
              + " | ".join(f"{np.mean([z[m] for z in same]):.4f}"
                           for m in ("auc", "f1", "accuracy", "sensitivity", "specificity")) + " |")


if __name__ == "__main__":
    main()
