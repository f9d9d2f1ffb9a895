"""Localise-then-segment vs the whole-volume sliding window: time per case and Dice side by side.

plan → train the fine (planned) model and a coarse model on a `factor`× coarser grid (coarse_plan), each
with a wall-clock budget, on the training cases → write the pair folder (localise.json with the rule's
decision for this dataset) → predict each held-out case in this process with the fine model alone and with
the pair (best of `--repeats`, one thread) → Dice of each against the reference, box share, fall-backs.

    PYTHONPATH=src .venv/bin/python benchmarks/localise.py --dataset ../shared/data/LA --work /tmp/la_localise
    PYTHONPATH=src .venv/bin/python benchmarks/localise.py --dataset ../shared/data/BraTS --work /tmp/brats_localise

(10 minutes of training per model by default, then the held-out cases predicted both ways; about 30 minutes
each.) Writes WORK/result_localise.json: seconds and Dice per case for both, the speed-up, the box share, the
rule's decision for the dataset and the process's peak memory.

Where the rule chooses localising — a fine model on BraTS's own 1 mm grid, as a GPU's plan would train it (the
planned CPU model's 2.65 mm grid and crop to the brain leave a few tiles, and the rule declines):

    PYTHONPATH=src .venv/bin/python benchmarks/localise.py --dataset ../shared/data/BraTS --work /tmp/brats_1mm \
        --fine-grid 1,1,1:64,64,64 --minutes 45 --held-out-cases Brats18_2013_20_1,Brats18_CBICA_ABM_1

The held-out cases are also the two models' validation cases (checkpoint, mirroring and postprocessing rules):
both predictions come from the same fine model, so the comparison is fair, but its Dice is not a held-out score.

Target of the issue: ≥ 3× faster at ≤ 0.5 Dice points lower. Run on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from _apps import MEDSEG, run


def peak_mib() -> float:
    """This process's peak resident memory so far (VmHWM), MiB: both predictors ran in it, so this is the larger
    of the two pipelines' peaks (plus the loaded models)."""
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def fine_grid_plan(plan: dict, grid: str) -> dict:
    """``plan`` with the fine model's grid and patch set from ``SPACING:PATCH``, its U-Net halving every axis down
    to 4–8 voxels at the bottom (64 → depth 4), the edit recorded among the rules that fired."""
    spacing_text, _, patch_text = grid.partition(":")
    spacing, patch = [float(v) for v in spacing_text.split(",")], [int(v) for v in patch_text.split(",")]
    depth = max(1, int(math.log2(min(patch))) - 2)
    dims = len(patch)
    return {**plan, "target_spacing": spacing, "patch_size": patch, "alternatives": {},
            "network": {**plan["network"], "depth": depth, "strides": [[2] * dims] * depth,
                        "kernel_sizes": [[3] * dims] * (depth + 1)},
            "rules_fired": plan.get("rules_fired", []) + [{
                "rule": "benchmark.fine_grid", "decision": grid,
                "reason": "benchmarks/localise.py --fine-grid: the fine model on a grid finer than this machine's plan"}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=10.0, help="Training budget of each model.")
    parser.add_argument("--held-out", type=int, default=2, help="Last N cases (sorted) are held out.")
    parser.add_argument("--held-out-cases", default=None, help="Comma-separated held-out cases (instead of the "
                        "last N), e.g. a second fold.")
    parser.add_argument("--factor", type=float, default=4.0, help="Coarse grid / fine grid.")
    parser.add_argument("--margin-mm", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reuse-models", action="store_true", help="Keep WORK/pair/fine and WORK/pair/coarse "
                        "where they hold a model (e.g. trained side by side with the commands this script runs).")
    parser.add_argument("--fine-grid", default=None, help="SPACING:PATCH, e.g. 1,1,1:64,64,64: the fine model on "
                        "this grid and patch instead of the plan's (a plan finer than this machine's, such as a GPU's "
                        "or nnU-Net's full resolution); the network's depth follows the patch.")
    args = parser.parse_args()

    import numpy as np
    import torch

    from medseg.datasets import load_dataset
    from medseg.inference.localise import (LocaliseThenSegment, coarse_plan, dataset_localise_rule,
                                           write_localise_folder)
    from medseg.inference.predictor import Predictor
    from medseg.metrics import dice
    from medseg.metrics.brats import brats_region_metrics

    torch.set_num_threads(args.threads)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(args.dataset)
    names = sorted(c.name for c in dataset.cases)
    held_out = args.held_out_cases.split(",") if args.held_out_cases else names[-args.held_out:]
    training = [n for n in names if n not in held_out]
    plan = work / "plan.json"
    if not plan.exists():
        run(MEDSEG + ["plan", args.dataset, "--out", plan, "--time-budget", f"{args.minutes}m"])
        if args.fine_grid:
            plan.write_text(json.dumps(fine_grid_plan(json.loads(plan.read_text(encoding="utf-8")), args.fine_grid),
                                       indent=2), encoding="utf-8")
    coarse_path = work / "coarse_plan.json"
    coarse_path.write_text(json.dumps(coarse_plan(json.loads(plan.read_text(encoding="utf-8")), args.factor),
                                      indent=2), encoding="utf-8")
    pair = work / "pair"
    for name, plan_file in (("fine", plan), ("coarse", coarse_path)):
        model = pair / name
        if args.reuse_models and (model / "model.safetensors").is_file():
            continue
        run(MEDSEG + ["train", args.dataset, "--out", model, "--plan", plan_file, "--val-cases", ",".join(held_out),
                      "--time-limit", f"{args.minutes}m", "--val-every", "1000000", "--threads", args.threads,
                      "--overwrite", "--no-progress"])

    fine = Predictor.from_folder(pair / "fine")
    pair_predictor = LocaliseThenSegment(Predictor.from_folder(pair / "coarse"), fine, args.margin_mm)
    values = [v for v in dataset.label_values if v != 0]
    rows = []
    for case_name in held_out:
        case = dataset.case(case_name)
        image, reference = case.read_image(), case.read_label().array[0]
        timings = {"whole": [], "localised": []}
        for _ in range(args.repeats):
            start = time.perf_counter()
            whole = fine.predict(image).array[0]
            timings["whole"].append(time.perf_counter() - start)
            start = time.perf_counter()
            result = pair_predictor.predict_localised(image)
            timings["localised"].append(time.perf_counter() - start)
        local = result.labels.array[0]
        ref_fg = np.isin(reference, values)
        rows.append({
            "case": case_name, "shape": list(image.spatial_shape),
            "seconds_whole": min(timings["whole"]), "seconds_localised": min(timings["localised"]),
            "dice_whole": dice(np.isin(whole, values), ref_fg), "dice_localised": dice(np.isin(local, values), ref_fg),
            "box_fraction": result.box_fraction, "fallback": result.fallback,
            "reference_in_box": bool(ref_fg[tuple(slice(a, b) for a, b in result.box)].sum() == ref_fg.sum()),
        })
        if dataset.regions:  # Dice and HD95 per region (BraTS's conventions), both ways
            rows[-1]["regions_whole"] = brats_region_metrics(whole, reference, dataset.regions, image.spacing)
            rows[-1]["regions_localised"] = brats_region_metrics(local, reference, dataset.regions, image.spacing)
        print(json.dumps(rows[-1]), flush=True)
    mean = lambda key: float(np.mean([r[key] for r in rows]))  # noqa: E731
    # the rule sees only the training cases
    decision = dataset_localise_rule(dataset, fine.config, training, args.margin_mm)
    write_localise_folder(pair, "coarse", "fine", margin_mm=args.margin_mm, rule=decision)
    result = {
        "dataset": dataset.name, "held_out": held_out, "factor": args.factor, "margin_mm": args.margin_mm,
        "threads": args.threads, "seconds_whole": mean("seconds_whole"), "seconds_localised": mean("seconds_localised"),
        "speedup": mean("seconds_whole") / mean("seconds_localised"),
        "dice_whole": mean("dice_whole"), "dice_localised": mean("dice_localised"),
        "box_fraction": mean("box_fraction"), "rule": {"pays": decision[0], "reason": decision[1]},
        **({f"region_dice_{way}": {name: float(np.mean([r[f"regions_{way}"][name]["dice"] for r in rows]))
                                   for name in dataset.regions} for way in ("whole", "localised")}
           if dataset.regions else {}),
        "peak_mib_process": peak_mib(), "cases": rows,
    }
    (work / "result_localise.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "cases"}, indent=2))


if __name__ == "__main__":
    main()
