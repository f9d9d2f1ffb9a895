"""PROMISE12 sample (../shared/data/PROMISE12, 16 T2-weighted prostate MRI cases, whole gland).

The issue's protocol: cross-validation (4 folds of 4 cases) of V-Net (its Dice loss; instance norm, since
the paper's unnormalised V-Net diverges at medseg's learning rate, see NOTES.md) and of the planned U-Net,
≤ 30 min of training per model. Reported: Dice and HD95 (the release kept no spacing and stores 1 mm: HD95
and volumes are in voxels, predictions use --spacing-unknown), seconds and peak memory per case.

    .venv/bin/python benchmarks/promise12.py --work /tmp/promise12_bench                 # both networks, 30 min
    .venv/bin/python benchmarks/promise12.py --work /tmp/p12 --nets vnet --minutes 8

Target of the issue (held-out cases): Dice ≥ 0.85 (V-Net paper 0.869 with 50 training cases).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _apps import cross_validate

TRAIN_OPTIONS = {
    "vnet": ["--loss", "vnet_dice", "--net-option", "norm=instance"],
    "unet": [],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=Path("../shared/data/PROMISE12"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--nets", nargs="+", default=["vnet", "unet"])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--reuse-models", action="store_true")
    args = parser.parse_args()
    results = {}
    for net in args.nets:
        results[net] = cross_validate(args.dataset, args.work, net, args.minutes, folds=args.folds, tag=net,
                                      train_options=TRAIN_OPTIONS.get(net, []),
                                      predict_options=["--spacing-unknown"], reuse=args.reuse_models)
    (args.work / "result_promise12.json").write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
