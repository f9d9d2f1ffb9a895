"""PROMISE12 sample (../shared/data/PROMISE12, 16 T2-weighted prostate MRI cases, whole gland).

One command (from the repository root, on a quiet 2-core machine; about 4 h 15 min with the defaults):

    PYTHONPATH=src .venv/bin/python benchmarks/promise12.py --work /tmp/promise12_bench

4-fold cross-validation (4 held-out cases per fold) of V-Net and of the planned U-Net, 30 minutes of training
per model and fold, through `medseg train` with no option (planned automatically from the fold's training cases).
V-Net's registry entry declares its paper's recipe, which the rules apply (each recorded in the model's
rules.json): the plan's 3D configuration (the paper's volumetric network; the planned U-Net gets 3D too, the
prostate continuing across the slices: the configuration rule, which plans 2 s steps on a CPU without bfloat16
units), its Dice loss, instance norm (the paper's unnormalised V-Net diverges at medseg's learning rate, NOTES.md)
and the paper's augmentation (histogram matching between training cases, random B-spline deformation) ahead of
medseg's defaults. Reported: pooled Dice and HD95 over the 16 held-out predictions (the release kept no spacing
and stores 1 mm, so HD95 and volumes are in voxels; predictions use --spacing-unknown), seconds and peak memory
per case, per-case thumbnails (`eval_NET/cases.html`). Results: WORK/result_promise12.json.

    ... --run-folds 1                 # one fold only (a quarter of the time)
    ... --fold 1 --work W1            # fold 1 only, beside another process running --fold 0 in its own W0
    ... --nets vnet --train-option "--threads 1"   # one network per process, two side by side
    ... --nets vnet --minutes 1 --run-folds 1   # a smoke run of the commands

Target of the issue (held-out cases): Dice ≥ 0.85 (V-Net paper 0.869 with 50 training cases).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _apps import add_fold_arguments, cross_validate, folds_to_run

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=Path("../shared/data/PROMISE12"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--nets", nargs="+", default=["vnet", "unet"])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--folds", type=int, default=4)
    add_fold_arguments(parser, run_folds=None)
    parser.add_argument("--reuse-models", action="store_true")
    parser.add_argument("--train-option", action="append", default=[], help='Extra `medseg train` arguments '
                        '(e.g. "--threads 1" for two runs side by side).')
    args = parser.parse_args()
    results = {}
    for net in args.nets:
        results[net] = cross_validate(args.dataset, args.work, net, args.minutes, folds=args.folds, tag=net,
                                      train_options=[a for o in args.train_option for a in o.split()],
                                      predict_options=["--spacing-unknown"], reuse=args.reuse_models,
                                      run_folds=folds_to_run(args),
                                      evaluate_options=["--images", str(args.dataset / "imagesTr")])
    (args.work / "result_promise12.json").write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
