"""DRIVE retinal vessels: convert → train (wall-clock budget) → predict → evaluate inside the field of view.

Trains on the 20 training images, predicts the 20 test images, scores pixels inside the FOV against
1st_manual, and prints accuracy, sensitivity, specificity, F1 and ROC AUC next to the references
(DUNet as quoted by the survey, the second human observer computed here from 2nd_manual, and the
MONAI baseline when its result file is given).

    .venv/bin/python benchmarks/drive.py --drive ../shared/data/DRIVE --work /tmp/drive_bench --minutes 20

Every step is a plain `medseg` command, printed before it runs, so the sequence can be repeated by hand.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from _timing import run  # benchmarks/ is on sys.path when a script runs

METRICS = ("accuracy", "sensitivity", "specificity", "f1", "roc_auc")
DUNET = {"accuracy": 0.9566, "roc_auc": 0.9802}


def second_observer(drive: Path) -> dict[str, float]:
    from PIL import Image as PILImage

    from medseg.metrics import overlap_metrics

    rows = []
    for manual2 in sorted((drive / "test" / "2nd_manual").glob("*_manual2.gif")):
        number = manual2.name.split("_")[0]
        second = np.asarray(PILImage.open(manual2)) > 0
        first = np.asarray(PILImage.open(drive / "test" / "1st_manual" / f"{number}_manual1.gif")) > 0
        fov = np.asarray(PILImage.open(drive / "test" / "mask" / f"{number}_test_mask.gif").convert("L")) > 0
        rows.append(overlap_metrics(second, first, roi=fov))
    names = {"accuracy": "accuracy", "sensitivity": "recall", "specificity": "specificity", "f1": "f1"}
    return {k: float(np.mean([r[v] for r in rows])) for k, v in names.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drive", type=Path, default=Path("../shared/data/DRIVE"))
    parser.add_argument("--work", type=Path, required=True, help="Folder for the dataset, model and predictions.")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--net", default="unet")
    parser.add_argument("--tag", help="Name of this run's model/prediction folders (default: the network name).")
    parser.add_argument("--train-option", action="append", default=[], help="Extra `medseg train` arguments.")
    parser.add_argument("--threshold", choices=("accuracy", "f1"),
                        help="Re-choose the decision threshold with `medseg threshold` (e.g. with --tta-axes); "
                             "default: the threshold `medseg train` chose on its validation images.")
    parser.add_argument("--tta-axes", help="Mirroring test-time augmentation over these axes (e.g. 1), for the "
                                           "threshold choice and the prediction alike.")
    parser.add_argument("--monai-result", type=Path, help="JSON written by benchmarks/drive_monai.py.")
    parser.add_argument("--report-only", action="store_true", help="Only print the table from an earlier run in --work.")
    args = parser.parse_args()

    medseg = [sys.executable, "-m", "medseg"]
    tag = args.tag or args.net
    data, model, pred, evaluation = (args.work / n for n in ("dataset", f"model_{tag}", f"pred_{tag}", f"eval_{tag}"))
    if args.report_only:
        report(args, model, evaluation, json.loads((args.work / f"result_{tag}.json").read_text(encoding="utf-8")))
        return
    if not data.exists():
        run(medseg + ["convert", "drive", str(args.drive), str(data)])
    net = ["--net", args.net] if args.net != "unet" else []
    train_seconds = run(
        medseg + ["train", str(data), "--out", str(model), *net, "--time-limit", f"{args.minutes}m",
                  "--overwrite", "--no-progress", *[a for opt in args.train_option for a in shlex.split(opt)]]
    )
    # the defaults do the rest: whole-image tile and ONNX Runtime (recorded tile, --backend auto), the
    # threshold and postprocessing chosen on the held-out validation images
    tta = ["--tta-axes", args.tta_axes] if args.tta_axes else []
    if args.threshold:
        run(medseg + ["threshold", str(model), str(data), "--metric", args.threshold, "--backend", "auto", *tta])
    predict_seconds = run(
        medseg + ["predict", str(model), "-i", str(data / "imagesTs"), "-o", str(pred), "--roi", str(data / "roisTs"),
                  "--probabilities", "--overwrite", *tta]
    )
    run(medseg + ["evaluate", str(pred), str(data / "labelsTs"), "--roi", str(data / "roisTs"),
                  "--probabilities", str(pred / "probabilities"), "--out", str(evaluation)])

    report(args, model, evaluation, {"train_seconds": train_seconds, "predict_seconds_total": predict_seconds})


def report(args: argparse.Namespace, model: Path, evaluation: Path, timing: dict) -> None:
    summary = json.loads((evaluation / "summary.json").read_text(encoding="utf-8"))
    stats = summary["metrics"]["vessel"]
    ours = {k: stats["recall" if k == "sensitivity" else k]["mean"] for k in METRICS}
    observer = second_observer(args.drive)
    rows = [("medseg " + args.net, ours), ("DUNet (survey)", DUNET), ("2nd observer", observer)]
    if args.monai_result and args.monai_result.is_file():
        monai = json.loads(args.monai_result.read_text(encoding="utf-8"))
        rows.append(("MONAI BasicUNet", {**monai["mean_over_images"], "roc_auc": monai["mean_over_images"]["auc"]}))
    print(f"\n{'method':<22}" + "".join(f"{m:>13}" for m in METRICS))
    for name, values in rows:
        print(f"{name:<22}" + "".join(f"{values[m]:>13.4f}" if m in values else f"{'–':>13}" for m in METRICS))
    log = (model / "training_log.csv").read_text(encoding="utf-8").strip().splitlines()
    iterations = int(log[-1].split(",")[0])
    print(f"\ntraining: {timing['train_seconds'] / 60:.1f} min wall including start-up (budget {args.minutes} min), "
          f"{iterations} iterations")
    print(f"prediction: {timing['predict_seconds_total'] / 20:.2f} s per image including process start-up "
          "(the per-image network time is printed by `medseg predict`)")
    result = {"net": args.net, "tag": args.tag or args.net, "ours": ours, "second_observer": observer,
              "iterations": iterations, **timing}
    (args.work / f"result_{args.tag or args.net}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
