"""Label generation with LiteMedSAM on ACDC: 3 labelled patients, boxes for the rest → labels → a U-Net.

Protocol (../shared/data/ACDC/splits.json, the SSL4MIS split): the first 3 "train" patients by sorted name
(both frames) are labelled. Every step is a plain `medseg` command, printed before it runs:

1. `medseg train` LiteMedSAM from its released weights on the 3 labelled patients (box prompts from their
   labels; `--prompt-model released` skips this and prompts the released weights zero-shot).
2. `medseg boxes` — one box per structure per slice from the reference of the other training patients,
   each side jittered by 0-5 frame pixels (MedSAM's protocol: what a physician's quick box gives).
3. `medseg prompt --boxes` — LiteMedSAM's label maps for those patients (and confidence.csv); their Dice
   against the withheld reference is the label quality.
4. `medseg train` the U-Net (same plan and budget) on (a) the 3 labelled patients only, (b) the 3 labelled
   + the generated labels, (c) all reference labels; `medseg predict` + `medseg evaluate` on the 20 "val"
   volumes: Dice RV / MYO / LV.

    # the benchmark (quiet machine: ~20 min prompt fine-tuning, ~25 min label generation, 3 × 20 min U-Nets)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/label_generation_acdc.py --acdc ../shared/data/ACDC \\
        --work /tmp/label_generation --minutes 20 --prompt-minutes 20
    # smoke run (2 unlabelled patients, tiny budgets)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/label_generation_acdc.py --work /tmp/lg_smoke --minutes 0.5 \\
        --prompt-minutes 0.5 --other-patients 2 --val-patients 1 --skip-full
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from _timing import run  # benchmarks/ is on sys.path when a script runs

LABELS = ("RV", "MYO", "LV")
LABELLED_PATIENTS = 3


def patient(case: str) -> str:
    return case.split("_")[0]


def link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        dst.symlink_to(src.resolve())


def view(acdc: Path, folder: Path, cases: list[str], labels: dict[str, Path], splits: dict) -> Path:
    """A dataset folder of links: ``cases`` images, their labels from ``labels`` (case → file)."""
    for case in cases:
        link(acdc / "imagesTr" / f"{case}_0000.nii.gz", folder / "imagesTr" / f"{case}_0000.nii.gz")
        link(labels[case], folder / "labelsTr" / f"{case}.nii.gz")
    meta = json.loads((acdc / "dataset.json").read_text(encoding="utf-8"))
    meta["numTraining"] = len(cases)
    (folder / "dataset.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    (folder / "splits.json").write_text(json.dumps(splits, indent=1), encoding="utf-8")
    return folder


def evaluate(medseg: list[str], pred: Path, reference: Path, out: Path) -> dict:
    run(medseg + ["evaluate", pred, reference, "--out", out,
                  *[a for i, name in enumerate(LABELS, 1) for a in ("--labels", f"{name}={i}")]])
    metrics = json.loads((out / "summary.json").read_text(encoding="utf-8"))["metrics"]
    dice = {name: metrics[name]["dice"]["mean"] for name in LABELS}
    return {"dice": dice, "mean_dice": float(np.mean(list(dice.values())))}


def steps(model: Path) -> int:
    rows = (model / "training_log.csv").read_text(encoding="utf-8").strip().splitlines()
    return int(dict(zip(rows[0].split(","), rows[-1].split(",")))["iteration"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--acdc", type=Path, default=Path("../shared/data/ACDC"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=20.0, help="U-Net budget (each of the three).")
    parser.add_argument("--prompt-minutes", type=float, default=20.0, help="LiteMedSAM fine-tuning budget.")
    parser.add_argument("--prompt-model", choices=("finetuned", "released"), default="finetuned")
    parser.add_argument("--other-patients", type=int, help="Generate labels for only this many (smoke runs).")
    parser.add_argument("--val-patients", type=int, help="Validate / score on only this many (smoke runs).")
    parser.add_argument("--skip-full", action="store_true", help="Do not train the all-labels U-Net.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    medseg = [sys.executable, "-m", "medseg"]
    work, acdc = args.work, args.acdc
    work.mkdir(parents=True, exist_ok=True)
    splits = json.loads((acdc / "splits.json").read_text(encoding="utf-8"))
    train_cases, val_cases = list(splits["train"]), list(splits["val"])
    patients = sorted(dict.fromkeys(patient(c) for c in train_cases))
    labelled = patients[:LABELLED_PATIENTS]
    others = patients[LABELLED_PATIENTS:][: args.other_patients]
    if args.val_patients:
        keep = sorted(dict.fromkeys(patient(c) for c in val_cases))[: args.val_patients]
        val_cases = [c for c in val_cases if patient(c) in keep]
    labelled_cases = [c for c in train_cases if patient(c) in labelled]
    other_cases = [c for c in train_cases if patient(c) in others]
    reference = {c: acdc / "labelsTr" / f"{c}.nii.gz" for c in train_cases + val_cases}
    split = {"train": labelled_cases + other_cases, "val": val_cases}
    result: dict = {"labelled_patients": labelled, "generated_patients": len(others), "val_volumes": len(val_cases)}

    # 1. the prompt model
    few = view(acdc, work / "acdc_labelled3", labelled_cases + val_cases, reference,
               {"train": labelled_cases, "val": val_cases})
    prompt_model = []
    if args.prompt_model == "finetuned":
        model = work / "litemedsam_labelled3"
        run(medseg + ["train", few, "--out", model, "--net", "litemedsam", "--init-from-weights", "released",
                      "--time-limit", f"{args.prompt_minutes}m", "--val-cases", ",".join(val_cases), "--overwrite",
                      "--no-progress"])
        prompt_model = ["--model", model]
        result["litemedsam_steps"] = steps(model)
    # 2. boxes from the other patients' reference, 3. generated labels and their quality
    others_ref = work / "others_reference"
    others_img = work / "others_images"
    for case in other_cases:
        link(reference[case], others_ref / f"{case}.nii.gz")
        link(acdc / "imagesTr" / f"{case}_0000.nii.gz", others_img / f"{case}_0000.nii.gz")
    boxes = work / "boxes.csv"
    run(medseg + ["boxes", others_ref, "--per-slice", "--jitter", "5", "--seed", str(args.seed), "-o", boxes])
    generated = work / "generated"
    seconds = run(medseg + ["prompt", "--boxes", boxes, "-i", others_img, "-o", generated, "--onnx", work / "onnx",
                            *prompt_model])
    result["generation_seconds_per_volume"] = seconds / max(1, len(other_cases))
    result["generated_label_quality"] = evaluate(medseg, generated, others_ref, work / "eval_generated")

    # 4. the U-Nets: same plan, same budget
    plan = work / "plan.json"
    if not plan.exists():
        run(medseg + ["plan", acdc, "--out", plan, "--time-budget", f"{args.minutes}m"])
    labels_gen = {**reference, **{c: generated / f"{c}.nii.gz" for c in other_cases}}
    datasets = {
        "labelled3": few,
        "labelled3+generated": view(acdc, work / "acdc_generated", labelled_cases + other_cases + val_cases,
                                    labels_gen, split),
    }
    if not args.skip_full:
        datasets["full_labels"] = view(acdc, work / "acdc_full", labelled_cases + other_cases + val_cases, reference,
                                       split)
    val_ref = work / "val_reference"
    for case in val_cases:
        link(reference[case], val_ref / f"{case}.nii.gz")
    for tag, data in datasets.items():
        model, pred = work / f"unet_{tag}", work / f"pred_{tag}"
        run(medseg + ["train", data, "--out", model, "--plan", plan, "--time-limit", f"{args.minutes}m",
                      "--val-cases", ",".join(val_cases), "--overwrite", "--no-progress"])
        run(medseg + ["predict", model, "-i", *[acdc / "imagesTr" / f"{c}_0000.nii.gz" for c in val_cases],
                      "-o", pred, "--overwrite"])
        result[tag] = {**evaluate(medseg, pred, val_ref, work / f"eval_{tag}"), "steps": steps(model)}
        print(tag, json.dumps(result[tag]), flush=True)
    (work / "result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
