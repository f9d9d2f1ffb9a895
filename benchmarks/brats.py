"""BraTS 2018 sample (../shared/data/BraTS, 8 cases, 4 modalities, labels 0/1/2/4 with the three regions).

One command (from the repository root, on a quiet 2-core machine; about 2 h 20 min with the defaults):

    PYTHONPATH=src .venv/bin/python benchmarks/brats.py --work /tmp/brats_bench

trains SegResNet-VAE and the planned 3D U-Net for 60 minutes each through the ordinary `medseg train` with no
option (planned automatically: crop to the brain, z-score per modality inside it, sigmoid region heads painted
back to 0/1/2/4) on a dataset of the 6 cases outside fold 0 of medseg's 4-fold split (5 train, the last
validates), the fold's 2 cases held out; predicts each held-out case in
its own process (seconds and peak resident memory per case) and evaluates them with the BraTS conventions
(Dice and HD95 for whole tumour / tumour core / enhancing tumour; an empty region in both: Dice 1, HD95 0;
in one only: Dice 0, HD95 373.13 mm), with the per-case thumbnails (`eval_NET/cases.html`).
Results: WORK/result_brats.json (and result_NET.json per network).

    ... --run-folds 4                          # the whole 4-fold cross-validation (4× the time)
    ... --nets segresnet_vae --minutes 1       # a smoke run of the commands
    ... --run-folds 4 --reuse-models --ensemble   # + both networks averaged per fold (`medseg predict U V`)

Targets of the issue (held-out cases): WT ≥ 0.85, TC ≥ 0.75, ET ≥ 0.70 Dice; ≤ 60 s and ≤ 4 GiB per case.
The issue's own check trains on all 8 cases: `medseg train ../shared/data/BraTS --out M --net segresnet_vae
--time-limit 60m`, then `medseg predict M -i CASE_0000 … CASE_0003 -o OUT --report`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _apps import add_fold_arguments, cross_validate, ensemble_folds, folds_to_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=Path("../shared/data/BraTS"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--nets", nargs="+", default=["segresnet_vae", "unet"])
    parser.add_argument("--minutes", type=float, default=60.0, help="Training budget per model (per fold).")
    parser.add_argument("--folds", type=int, default=4, help="Folds of the split (4: 2 cases held out per fold).")
    add_fold_arguments(parser, run_folds=1)
    parser.add_argument("--reuse-models", action="store_true")
    parser.add_argument("--train-option", action="append", default=[])
    parser.add_argument("--ensemble", action="store_true",
                        help="Also predict each fold's held-out cases with all --nets averaged (result_ensemble.json).")
    args = parser.parse_args()
    results = {}
    evaluate_options = ["--images", str(args.dataset / "imagesTr")]
    for net in args.nets:
        results[net] = cross_validate(args.dataset, args.work, net, args.minutes, folds=args.folds, tag=net,
                                      train_options=[a for o in args.train_option for a in o.split()],
                                      reuse=args.reuse_models, run_folds=folds_to_run(args),
                                      evaluate_options=evaluate_options)
    if args.ensemble:
        results["ensemble"] = ensemble_folds(args.dataset, args.work, args.nets, folds=args.folds,
                                             run_folds=folds_to_run(args), evaluate_options=evaluate_options)
    (args.work / "result_brats.json").write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
