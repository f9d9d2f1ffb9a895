"""Learning from few labels on ACDC (SSL4MIS protocol): supervised vs semi-supervised, pseudo-labels,
active learning. Every step is a plain `medseg` command, printed before it runs.

Protocol (../shared/data/ACDC/splits.json, the SSL4MIS train/val split): the first N patients of "train"
(both frames) are labelled, the other training volumes are used without labels (SSL4MIS takes the
first slices of its training list); report mean Dice (RV/MYO/LV) and HD95 on the 20 "val" volumes.

    # the full protocol (quiet machine; 3 and 7 labelled patients, 60 minutes per run)
    .venv/bin/python benchmarks/fewlabels_acdc.py --acdc ../shared/data/ACDC --work /tmp/fewlabels --minutes 60
    # smoke scale (what BENCHMARKS.md records from a busy machine)
    .venv/bin/python benchmarks/fewlabels_acdc.py --work /tmp/fl_smoke --minutes 8 --labeled 3 \\
        --methods none,mean_teacher,bcp --stages train,pseudolabel

Stages: ``train`` (one model per method and labelled count), ``pseudolabel`` (pseudo-labels of the
unlabelled training volumes from the first semi-supervised model; Dice of the confident voxels against
the withheld labels; one round of self-training on labelled + pseudo-labelled data), ``suggest``
(3 labelled patients + 4 suggested vs + 4 random patients, several random draws, same budget).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shlex
import sys
from pathlib import Path

import numpy as np

from _timing import run  # benchmarks/ is on sys.path when a script runs

LABELS = ("RV", "MYO", "LV")


def patients(cases: list[str]) -> list[str]:
    return list(dict.fromkeys(c.split("_")[0] for c in cases))


def cases_of(names: list[str], cases: list[str]) -> list[str]:
    return [c for c in cases if c.split("_")[0] in set(names)]


def evaluate(medseg: list[str], model: Path, acdc: Path, val: list[str], work: Path, tag: str) -> dict:
    """Predict the val volumes and score them: Dice and HD95 per label, mean Dice."""
    labels_dir = work / "val_labels"
    labels_dir.mkdir(parents=True, exist_ok=True)
    for case in val:
        link = labels_dir / f"{case}.nii.gz"
        if not link.exists():
            link.symlink_to((acdc / "labelsTr" / f"{case}.nii.gz").resolve())
    pred, out = work / f"pred_{tag}", work / f"eval_{tag}"
    run(medseg + ["predict", str(model), "-i", *[str(acdc / "imagesTr" / f"{c}_0000.nii.gz") for c in val],
                  "-o", str(pred), "--overwrite"])
    run(medseg + ["evaluate", str(pred), str(labels_dir), "--out", str(out),
                  *[a for i, name in enumerate(LABELS, 1) for a in ("--labels", f"{name}={i}")]])
    metrics = json.loads((out / "summary.json").read_text(encoding="utf-8"))["metrics"]
    dice = {name: metrics[name]["dice"]["mean"] for name in LABELS}
    return {"dice": dice, "mean_dice": float(np.mean(list(dice.values()))),
            "hd95": {name: metrics[name]["hd95"]["mean"] for name in LABELS}}


def train(medseg: list[str], data: Path, model: Path, plan: Path, labeled: list[str], method: str, minutes: float,
          extra: list[str]) -> dict:
    cmd = medseg + ["train", str(data), "--out", str(model), "--plan", str(plan), "--fold", "0",
                    "--labeled", ",".join(labeled), "--semi-supervised", method, "--time-limit", f"{minutes}m",
                    "--val-every", "1000000", "--overwrite", "--no-progress", *extra]
    seconds = run(cmd)
    log = list(csv.DictReader((model / "training_log.csv").open(encoding="utf-8")))
    return {"train_minutes": seconds / 60, "iterations": int(float(log[-1]["iteration"]))}


def pseudo_label_quality(pseudo: Path, acdc: Path, cases: list[str], thresholds: tuple[float, ...] = (0.9,)) -> dict:
    """Per voxel-confidence threshold: share of voxels kept and mean Dice (RV/MYO/LV) of the kept voxels
    against the withheld labels (from the written confidence maps, so one pseudo-labelling serves all)."""
    from medseg.io import read_image

    out: dict = {"of": len(cases)}
    volumes = []
    for case in cases:
        path = pseudo / "labelsTr" / f"{case}.nii.gz"
        if path.exists():  # cases below the case threshold are not written
            volumes.append((read_image(path).array[0], read_image(pseudo / "confidenceTr" / f"{case}.nii.gz").array[0],
                            read_image(acdc / "labelsTr" / f"{case}.nii.gz").array[0]))
    out["cases"] = len(volumes)
    for threshold in thresholds:
        dices, kept = [], []
        for guess, confidence, truth in volumes:
            keep = confidence >= threshold
            kept.append(float(keep.mean()))
            per = []
            for value in (1, 2, 3):
                a, b = (guess == value) & keep, (truth == value) & keep
                if a.sum() + b.sum():
                    per.append(2 * float((a & b).sum()) / float(a.sum() + b.sum()))
            if per:
                dices.append(float(np.mean(per)))
        out[f"threshold_{threshold}"] = {"kept_voxel_share": float(np.mean(kept)) if kept else 0.0,
                                         "confident_dice": float(np.mean(dices)) if dices else None}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--acdc", type=Path, default=Path("../shared/data/ACDC"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=60.0, help="Training budget per run.")
    parser.add_argument("--labeled", default="3,7", help="Labelled patient counts.")
    parser.add_argument("--methods", default="none,mean_teacher,cps,bcp")
    parser.add_argument("--stages", default="train,pseudolabel,selftrain,suggest")
    parser.add_argument("--threshold", type=float, default=0.9, help="Pseudo-label voxel confidence.")
    parser.add_argument("--pseudo-cases", type=int, default=0,
                        help="Pseudo-label only the first N unlabelled volumes (0: all).")
    parser.add_argument("--pseudo-model", help="Method whose model pseudo-labels (default: the first semi-supervised).")
    parser.add_argument("--pseudo-option", action="append", default=[], help="Extra `medseg pseudolabel` arguments.")
    parser.add_argument("--quality-of", type=Path, help="Only score this pseudo-label folder against the withheld "
                        "labels (at several confidence thresholds) and exit.")
    parser.add_argument("--draws", type=int, default=3, help="Random draws in the suggest stage.")
    parser.add_argument("--plan", type=Path, help="Reuse this plan.json.")
    parser.add_argument("--train-option", action="append", default=[], help="Extra `medseg train` arguments.")
    args = parser.parse_args()

    if args.quality_of:
        cases = sorted(p.name[: -len(".nii.gz")] for p in (args.quality_of / "labelsTr").iterdir())
        print(json.dumps(pseudo_label_quality(args.quality_of, args.acdc, cases, (0.0, 0.3, 0.5, 0.7, 0.9)), indent=2))
        return
    medseg = [sys.executable, "-m", "medseg"]
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    extra = [a for option in args.train_option for a in shlex.split(option)]
    splits = json.loads((args.acdc / "splits.json").read_text(encoding="utf-8"))
    train_cases, val = splits["train"], splits["val"]
    plan = args.plan or work / "plan.json"
    if not plan.exists():
        run(medseg + ["plan", str(args.acdc), "--out", str(plan), "--time-budget", f"{args.minutes}m"])
    results_path = work / "results.json"
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.exists() else {}

    def save() -> None:
        results_path.write_text(json.dumps(results, indent=2), encoding="utf-8")

    stages = args.stages.split(",")
    methods = args.methods.split(",")
    for n in (int(v) for v in args.labeled.split(",")):
        labeled = cases_of(patients(train_cases)[:n], train_cases)
        unlabeled = [c for c in train_cases if c not in labeled]
        if "train" in stages:
            for method in methods:
                tag = f"{method}_{n}"
                model = work / f"model_{tag}"
                entry = train(medseg, args.acdc, model, plan, labeled, method, args.minutes, extra)
                entry.update(evaluate(medseg, model, args.acdc, val, work, tag))
                results[tag] = entry
                save()
                print(tag, json.dumps(entry), flush=True)
        semi = args.pseudo_model or next((m for m in methods if m != "none"), None)
        if "pseudolabel" in stages and semi:
            model = work / f"model_{semi}_{n}"
            pseudo = work / f"pseudo_{semi}_{n}"
            targets = unlabeled[:args.pseudo_cases] if args.pseudo_cases else unlabeled
            inputs = [str(args.acdc / "imagesTr" / f"{c}_0000.nii.gz") for c in targets]
            run(medseg + ["pseudolabel", str(model), "-i", *inputs, "-o", str(pseudo), "--overwrite",
                          "--voxel-threshold", str(args.threshold),
                          *[a for option in args.pseudo_option for a in shlex.split(option)]])
            entry = pseudo_label_quality(pseudo, args.acdc, targets, (0.0, 0.3, 0.5, 0.7, 0.9, args.threshold))
            entry["voxel_threshold"] = args.threshold
            results[f"pseudolabel_{semi}_{n}"] = entry
            save()
        if "selftrain" in stages and semi:
            pseudo = work / f"pseudo_{semi}_{n}"
            entry = results[f"pseudolabel_{semi}_{n}"]
            # one round of self-training: the labelled volumes join the pseudo-labelled dataset
            for case in labeled:
                for sub, suffix in (("imagesTr", "_0000"), ("labelsTr", "")):
                    link = pseudo / sub / f"{case}{suffix}.nii.gz"
                    if not link.exists():
                        link.symlink_to((args.acdc / sub / f"{case}{suffix}.nii.gz").resolve())
            meta = json.loads((pseudo / "dataset.json").read_text(encoding="utf-8"))
            meta["numTraining"] = len(list((pseudo / "labelsTr").iterdir()))
            (pseudo / "dataset.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
            model2 = work / f"model_selftrain_{n}"
            cmd = medseg + ["train", str(pseudo), "--out", str(model2), "--plan", str(plan), "--time-limit",
                            f"{args.minutes}m", "--overwrite", "--no-progress", *extra]
            run(cmd)
            entry["self_training"] = evaluate(medseg, model2, args.acdc, val, work, f"selftrain_{n}")
            results[f"pseudolabel_{semi}_{n}"] = entry
            save()
        if "suggest" in stages and n == 3:
            start = work / "model_none_3"
            pool = [p for p in patients(train_cases) if p not in patients(labeled)]
            suggestions = work / "suggest_3.csv"
            inputs = [str(args.acdc / "imagesTr" / f"{c}_0000.nii.gz") for c in cases_of(pool, train_cases)]
            run(medseg + ["suggest", str(start), "-i", *inputs, "-n", "8", "-o", str(suggestions), "--overwrite"])
            rows = list(csv.DictReader(suggestions.open(encoding="utf-8")))
            chosen = patients([r["case"] for r in rows])[:4]
            draws = {"suggested": chosen}
            rng = random.Random(0)
            for d in range(args.draws):
                draws[f"random{d}"] = rng.sample(pool, 4)
            for name, picked in draws.items():
                model = work / f"model_al_{name}"
                cases = labeled + cases_of(picked, train_cases)
                entry = train(medseg, args.acdc, model, plan, cases, "none", args.minutes, extra)
                entry.update(evaluate(medseg, model, args.acdc, val, work, f"al_{name}"))
                entry["patients"] = picked
                results[f"active_{name}"] = entry
                save()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
