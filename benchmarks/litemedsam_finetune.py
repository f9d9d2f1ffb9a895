"""Fine-tuned vs zero-shot LiteMedSAM on the sets of benchmarks/litemedsam.py, and frozen vs trained encoder.

For each set, `medseg train DATASET --net litemedsam` fine-tunes the released weights (box prompts sampled
from the training labels, MedSAM's jitter) on the training cases within a wall-clock budget; then the
zero-shot and the fine-tuned network are scored on the held-out cases with exactly the same protocol,
slices and jittered boxes (benchmarks/litemedsam.py's Runner: reference box of each structure on a slice,
each side pushed out by 0-5 frame pixels, Dice per structure on that slice), both through ONNX Runtime.

- ACDC: trained on splits.json "train" (140 volumes), scored on "val" (20 volumes), RV / MYO / LV.
- PROMISE12: trained on the first 12 cases (sorted), scored on the last 4.
- BraTS: a FLAIR-only view of the 8 cases (whole tumour region), trained on the first 6, scored on the last 2.
- DukeDME: trained on subjects 01-04, scored on 05-06 (fluid; one box per component of >= 20 pixels,
  while training boxes the whole fluid label per B-scan — the trainer's one box per structure per slice).

    # the benchmark (quiet machine, ~30 minutes of fine-tuning per set)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/litemedsam_finetune.py --data ../shared/data \\
        --work /tmp/lm_finetune --minutes 30
    # frozen vs trained image encoder on ACDC, same budget (the encoder rule's measurement)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/litemedsam_finetune.py --work /tmp/lm_freeze \\
        --compare-freezing --minutes 10

Every training is a plain `medseg train` command, printed before it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from _timing import run  # benchmarks/ is on sys.path when a script runs
from litemedsam import ACDC, BRATS, Runner, nnunet_cases, run_volumes, summary

from medseg.inference.prompt import Prompter, load_prompt_model
from medseg.io import read_image
from medseg.preprocessing.prompt_frame import intensity_window


def acdc_set(data: Path) -> dict:
    splits = json.loads((data / "ACDC" / "splits.json").read_text(encoding="utf-8"))
    cases = [(data / "ACDC" / "imagesTr" / f"{c}_0000.nii.gz", data / "ACDC" / "labelsTr" / f"{c}.nii.gz")
             for c in splits["val"]]
    return {"dataset": data / "ACDC", "val": splits["val"], "cases": cases, "structures": ACDC, "slices": 2}


def promise_set(data: Path) -> dict:
    cases = nnunet_cases(data / "PROMISE12", ".nii.gz")
    held = cases[-4:]
    return {"dataset": data / "PROMISE12", "val": [l.name[:-7] for _, l in held], "cases": held,
            "structures": {"prostate": [1]}, "slices": 4}


def brats_set(data: Path, work: Path) -> dict:
    """A FLAIR-only view (symbolic links) with the whole-tumour region: LiteMedSAM takes 1 or 3 channels."""
    view = work / "brats_flair"
    (view / "imagesTr").mkdir(parents=True, exist_ok=True)
    (view / "labelsTr").mkdir(parents=True, exist_ok=True)
    for label in sorted((data / "BraTS" / "labelsTr").glob("*.nii.gz")):
        case = label.name[:-7]
        for src, dst in ((data / "BraTS" / "imagesTr" / f"{case}_0000.nii.gz", view / "imagesTr" / f"{case}_0000.nii.gz"),
                         (label, view / "labelsTr" / label.name)):
            if not dst.exists():
                dst.symlink_to(src.resolve())
    names = sorted(p.name[:-7] for p in (view / "labelsTr").glob("*.nii.gz"))
    (view / "dataset.json").write_text(json.dumps({
        "name": "BraTS-FLAIR-whole-tumour", "channel_names": {"0": "FLAIR"},
        "labels": {"background": 0, "whole_tumor": [1, 2, 4]}, "regions_class_order": [1],
        "numTraining": len(names), "file_ending": ".nii.gz"}, indent=1), encoding="utf-8")
    held = names[-2:]
    cases = [(view / "imagesTr" / f"{c}_0000.nii.gz", view / "labelsTr" / f"{c}.nii.gz") for c in held]
    return {"dataset": view, "val": held, "cases": cases, "structures": BRATS, "slices": 4}


def duke_set(data: Path) -> dict:
    cases = nnunet_cases(data / "DukeDME", ".png")
    held = [(i, l) for i, l in cases if l.name.startswith(("subject05", "subject06"))]
    return {"dataset": data / "DukeDME", "val": [l.name[:-4] for _, l in held], "cases": held,
            "structures": {"fluid": [1]}, "slices": 0}


def score(prompter: Prompter, spec: dict, seed: int) -> dict:
    """Dice per structure on the held-out cases (same slices and boxes for every network: same seed)."""
    runner = Runner(prompter, seed)
    if spec["slices"]:
        scores = run_volumes(runner, spec["cases"], spec["structures"], spec["slices"])
    else:  # 2D B-scans with fluid, one box per component
        scores = {"fluid": []}
        for image_path, label_path in spec["cases"]:
            label = read_image(label_path).array[0]
            if not label.any():
                continue
            image = read_image(image_path)
            d = runner.score_slice(image.array, label, intensity_window(image.array), spec["structures"],
                                   per_component=True)
            scores["fluid"] += list(d.values())
    return summary(scores)


def train(medseg: list[str], spec: dict, model: Path, minutes: float, extra: list[str]) -> float:
    return run(medseg + ["train", spec["dataset"], "--out", model, "--net", "litemedsam", "--time-limit", f"{minutes}m",
                         "--val-cases", ",".join(spec["val"]), "--overwrite", "--no-progress", "--threads", "1",
                         "--init-from-weights", "released", *extra])


def steps_of(model: Path) -> dict:
    rows = (model / "training_log.csv").read_text(encoding="utf-8").strip().splitlines()
    header, last = rows[0].split(","), rows[-1].split(",")
    row = dict(zip(header, last))
    iterations, elapsed = int(row["iteration"]), float(row["elapsed"])
    return {"iterations": iterations, "train_seconds": elapsed, "seconds_per_step": elapsed / max(1, iterations)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=30.0, help="Fine-tuning budget per set (and per run).")
    parser.add_argument("--sets", default="acdc,promise12,brats,duke")
    parser.add_argument("--compare-freezing", action="store_true",
                        help="ACDC only: frozen vs trained image encoder under the same budget.")
    parser.add_argument("--eval-slices", type=int, help="Slices per held-out volume (default: per set).")
    parser.add_argument("--max-cases", type=int, help="Score only the first N held-out cases (smoke runs).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    medseg = [sys.executable, "-m", "medseg"]
    makers = {"acdc": lambda: acdc_set(args.data), "promise12": lambda: promise_set(args.data),
              "brats": lambda: brats_set(args.data, args.work), "duke": lambda: duke_set(args.data)}
    runs = {"acdc": [("frozen", ["--freeze-encoder"]), ("trained", ["--train-encoder"])]} if args.compare_freezing \
        else {name: [("default", [])] for name in args.sets.split(",")}
    onnx = args.work / "onnx"
    zero_shot = Prompter(onnx_dir=onnx)
    results: dict = {}
    for name, variants in runs.items():
        spec = makers[name]()
        if args.eval_slices is not None and spec["slices"]:
            spec["slices"] = args.eval_slices
        if args.max_cases:
            spec["cases"] = spec["cases"][:args.max_cases]
        start = time.perf_counter()
        results[name] = {"zero_shot": score(zero_shot, spec, args.seed)}
        results[name]["zero_shot"]["seconds"] = time.perf_counter() - start
        for variant, extra in variants:
            model = args.work / f"model_{name}_{variant}"
            train(medseg, spec, model, args.minutes, extra)
            tuned = Prompter(load_prompt_model(model), onnx_dir=onnx)
            results[name][variant] = {**score(tuned, spec, args.seed), **steps_of(model)}
            print(name, variant, json.dumps(results[name][variant]), flush=True)
        print(name, json.dumps(results[name], indent=1), flush=True)
        (args.work / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    for name, result in results.items():
        print(f"\n{name}")
        for variant, r in result.items():
            means = ", ".join(f"{k} {v['mean']:.3f}" for k, v in r.items() if isinstance(v, dict))
            steps = f" ({r['iterations']} steps, {r['seconds_per_step']:.1f} s/step)" if "iterations" in r else ""
            print(f"  {variant:10s} {means}{steps}")


if __name__ == "__main__":
    main()
