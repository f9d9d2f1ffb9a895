"""ACDC cardiac MRI (../shared/data/ACDC, its splits.json: train on "train", report on "val").

plan → train with a wall-clock budget → predict the val volumes → evaluate: Dice of RV, MYO, LV and
HD95. ACDC's release stores 1 mm spacing (the real spacing was not kept), so HD95 in mm is HD95 in voxels.

    .venv/bin/python benchmarks/acdc.py --acdc ../shared/data/ACDC --work /tmp/acdc_bench --minutes 60 [--configuration 2d|3d]
    .venv/bin/python benchmarks/acdc.py ... --sparse 3      # only 3 labelled slices per training volume

Every step is a plain `medseg` command, printed before it runs.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from _timing import run  # benchmarks/ is on sys.path when a script runs

LABELS = ("RV", "MYO", "LV")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--acdc", type=Path, default=Path("../shared/data/ACDC"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--configuration", choices=("2d", "3d"), default=None, help="Default: the planner's choice.")
    parser.add_argument("--sparse", type=int, default=0, help="Labelled slices per training volume (0: dense).")
    parser.add_argument("--net", default="unet")
    parser.add_argument("--plan", type=Path, help="Use this plan.json instead of planning again (e.g. an earlier run's).")
    parser.add_argument("--tag", help="Name of this run's folders (default: network, configuration, sparsity).")
    parser.add_argument("--train-option", action="append", default=[], help="Extra `medseg train` arguments.")
    args = parser.parse_args()

    medseg = [sys.executable, "-m", "medseg"]
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.acdc
    tag = args.tag or f"{args.net}_{args.configuration or 'auto'}" + (f"_sparse{args.sparse}" if args.sparse else "")
    if args.sparse:
        data = args.work / f"acdc_sparse{args.sparse}"
        if not data.exists():
            run(medseg + ["sparsify", str(args.acdc), str(data), "--slices-per-volume", str(args.sparse)])
    plan = args.plan or args.work / "plan.json"
    if not args.plan:
        run(medseg + ["plan", str(args.acdc), "--out", str(plan), "--time-budget", f"{args.minutes}m"])
    model, pred, evaluation = (args.work / f"{n}_{tag}" for n in ("model", "pred", "eval"))
    # validation cases: the rule's held-out fold 0 = ACDC's own splits.json "val"; the validation-interval rule
    # keeps validating them under 5% of the time
    train_cmd = medseg + ["train", str(data), "--out", str(model), "--net", args.net, "--plan", str(plan),
                          "--time-limit", f"{args.minutes}m", "--overwrite", "--no-progress"]
    if args.configuration:
        train_cmd += ["--configuration", args.configuration]
    train_cmd += [a for option in args.train_option for a in shlex.split(option)]
    train_seconds = run(train_cmd)

    splits = json.loads((args.acdc / "splits.json").read_text(encoding="utf-8"))
    val_inputs = [str(args.acdc / "imagesTr" / f"{case}_0000.nii.gz") for case in splits["val"]]
    val_labels = args.work / "val_labels"
    val_labels.mkdir(exist_ok=True)
    for case in splits["val"]:
        link = val_labels / f"{case}.nii.gz"
        if not link.exists():
            link.symlink_to((args.acdc / "labelsTr" / f"{case}.nii.gz").resolve())
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    log = (model / "training_log.csv").read_text(encoding="utf-8").strip().splitlines()
    result = {
        "configuration": tag, "spatial_dims": config["spatial_dims"], "patch_size": config["patch_size"],
        "iterations": int(log[-1].split(",")[0]), "train_minutes": train_seconds / 60,
    }
    # The same model scored twice: with the postprocessing recorded at training (the default), and raw.
    result["postprocessing"] = config.get("postprocessing", [])
    for variant, options in (("recorded_postprocessing", []), ("raw", ["--no-postprocessing"])):
        pred_dir, eval_dir = (Path(f"{d}_{variant}") for d in (pred, evaluation))
        seconds = run(medseg + ["predict", str(model), "-i", *val_inputs, "-o", str(pred_dir), "--overwrite", *options])
        run(medseg + ["evaluate", str(pred_dir), str(val_labels), "--out", str(eval_dir),
                      *[a for i, name in enumerate(LABELS, 1) for a in ("--labels", f"{name}={i}")]])
        metrics = json.loads((eval_dir / "summary.json").read_text(encoding="utf-8"))["metrics"]
        dice = {name: metrics[name]["dice"]["mean"] for name in LABELS}
        result[variant] = {
            "dice": dice, "mean_dice": sum(dice.values()) / 3,
            "hd95_voxels": {name: metrics[name]["hd95"]["mean"] for name in LABELS},
            "seconds_per_volume": seconds / len(val_inputs),
        }
    (args.work / f"result_{tag}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
