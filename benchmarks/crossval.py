"""K-fold cross-validation of a planned model on a small dataset (e.g. ../shared/data/LA, 10 volumes).

plan once → for each fold: train on the other folds with a wall-clock budget, predict the fold's held-out
cases → evaluate all held-out predictions together: Dice and HD95 per label (mean over cases), and the
per-fold mean Dice.

    .venv/bin/python benchmarks/crossval.py --dataset ../shared/data/LA --work /tmp/la_cv --minutes-per-fold 5
    .venv/bin/python benchmarks/crossval.py ... --net vnet      # the same protocol for another network
    .venv/bin/python benchmarks/crossval.py ... --net vnet --tag vnet_instance --train-option="--net-option norm=instance"
    .venv/bin/python benchmarks/crossval.py ... --reuse-models --largest-component   # re-score with LCC

The folds are medseg's grouped 5-fold splits (seed 0; the dataset's own splits file when it has one),
exactly what ``medseg train --fold K`` uses; each model folder records its held-out cases. Seconds per
volume include the `medseg predict` process start-up (~3 s here). Every step is a
plain `medseg` command, printed before it runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import statistics
import sys
from pathlib import Path

from _timing import run  # benchmarks/ is on sys.path when a script runs


def link(source: Path, target: Path) -> None:
    if not target.exists():
        target.symlink_to(source.resolve())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=Path("../shared/data/LA"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--minutes-per-fold", type=float, default=5.0)
    parser.add_argument("--net", default="unet")
    parser.add_argument("--configuration", choices=("2d", "3d"), default=None, help="Default: the planner's choice.")
    parser.add_argument("--tag", default=None, help="Name of this run's folders (default: NET_CONFIGURATION).")
    parser.add_argument("--train-option", action="append", default=[], help="Extra `medseg train` arguments.")
    parser.add_argument("--largest-component", action="store_true",
                        help="Predict keeping each label's largest component (separate pred/eval folders).")
    parser.add_argument("--reuse-models", action="store_true",
                        help="Do not train a fold whose model folder already holds final weights (e.g. to "
                             "re-score an earlier run with --largest-component).")
    args = parser.parse_args()

    from medseg.datasets import load_dataset
    from medseg.datasets.splits import load_or_create_splits

    medseg = [sys.executable, "-m", "medseg"]
    args.work.mkdir(parents=True, exist_ok=True)
    folds = len(load_or_create_splits(load_dataset(args.dataset)))  # what `medseg train --fold K` uses
    dataset = json.loads((args.dataset / "dataset.json").read_text(encoding="utf-8"))
    ending = dataset.get("file_ending", ".nii.gz")
    labels = {name: value for name, value in dataset["labels"].items() if int(value) != 0}
    model_tag = args.tag or f"{args.net}_{args.configuration or 'auto'}"
    tag = model_tag + ("_lcc" if args.largest_component else "")
    plan = args.work / "plan.json"
    if not plan.exists():
        run(medseg + ["plan", str(args.dataset), "--out", str(plan), "--time-budget", f"{args.minutes_per_fold}m"])

    pooled, references = args.work / f"pred_{tag}", args.work / "references"
    pooled.mkdir(exist_ok=True)
    references.mkdir(exist_ok=True)
    train_seconds, predict_seconds, iterations, fold_cases = [], [], [], []
    for fold in range(folds):
        model, pred = args.work / f"model_{model_tag}_fold{fold}", args.work / f"pred_{tag}_fold{fold}"
        command = medseg + ["train", str(args.dataset), "--out", str(model), "--net", args.net, "--plan", str(plan),
                            "--fold", str(fold), "--time-limit", f"{args.minutes_per_fold}m", "--val-every", "1000000",
                            "--overwrite", "--no-progress"]
        if args.configuration:
            command += ["--configuration", args.configuration]
        command += [a for option in args.train_option for a in shlex.split(option)]
        if not (args.reuse_models and (model / "model.safetensors").is_file()):
            train_seconds.append(run(command))
        config = json.loads((model / "config.json").read_text(encoding="utf-8"))
        held_out = config["val_cases"]
        fold_cases.append(held_out)
        log = (model / "training_log.csv").read_text(encoding="utf-8").strip().splitlines()
        iterations.append(int(log[-1].split(",")[0]))
        inputs = [str(args.dataset / "imagesTr" / f"{case}_0000{ending}") for case in held_out]
        options = ["--largest-component"] if args.largest_component else []
        predict_seconds.append(run(medseg + ["predict", str(model), "-i", *inputs, "-o", str(pred), "--overwrite",
                                             *options]) / len(held_out))
        for case in held_out:
            link(pred / f"{case}{ending}", pooled / f"{case}{ending}")
            link(args.dataset / "labelsTr" / f"{case}{ending}", references / f"{case}{ending}")

    evaluation = args.work / f"eval_{tag}"
    run(medseg + ["evaluate", str(pooled), str(references), "--out", str(evaluation),
                  *[a for name, value in labels.items() for a in ("--labels", f"{name}={value}")]])
    summary = json.loads((evaluation / "summary.json").read_text(encoding="utf-8"))
    with open(evaluation / "per_case.csv", encoding="utf-8", newline="") as table:
        rows = list(csv.DictReader(table))
    first_label = next(iter(labels))
    fold_dice = [statistics.mean(float(r["dice"]) for r in rows if r["case"] in cases and r["label"] == first_label)
                 for cases in fold_cases]
    result = {
        "dataset": dataset.get("name", args.dataset.name), "net": args.net, "configuration": tag,
        "dice": {name: summary["metrics"][name]["dice"]["mean"] for name in labels},
        "hd95_mm": {name: summary["metrics"][name]["hd95"]["mean"] for name in labels},
        f"fold_dice_{first_label}": fold_dice, "iterations": iterations,
        "train_minutes_per_fold": statistics.mean(train_seconds) / 60 if train_seconds else None,
        "seconds_per_volume": statistics.mean(predict_seconds),
    }
    (args.work / f"result_{tag}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
