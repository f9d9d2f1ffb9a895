"""BraTS 2018 sample (../shared/data/BraTS, 8 cases, 4 modalities, labels 0/1/2/4 with the three regions).

The issue's protocol: 4-fold cross-validation (2 held-out cases per fold) of SegResNet-VAE and of the
planned 3D U-Net, ≤ 60 min of training per model, through the ordinary `medseg train --plan` (crop to the
brain, z-score per modality inside it, sigmoid region heads, painted back to 0/1/2/4). Reported: Dice and
HD95 for whole tumour / tumour core / enhancing tumour with the BraTS conventions (an empty region in both:
Dice 1, HD95 0; in one only: Dice 0, HD95 373.13 mm), seconds and peak memory per predicted case.

    .venv/bin/python benchmarks/brats.py --work /tmp/brats_bench                    # both networks, 60 min each
    .venv/bin/python benchmarks/brats.py --work /tmp/brats_bench --nets segresnet_vae --minutes 8 --folds 4

Run it on a quiet machine (2 cores, nothing else running); every step is a plain `medseg` command.
Targets of the issue (held-out cases): WT ≥ 0.85, TC ≥ 0.75, ET ≥ 0.70 Dice; ≤ 60 s and ≤ 4 GiB per case.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _apps import cross_validate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=Path("../shared/data/BraTS"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--nets", nargs="+", default=["segresnet_vae", "unet"])
    parser.add_argument("--minutes", type=float, default=60.0, help="Training budget per model (per fold).")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--reuse-models", action="store_true")
    parser.add_argument("--train-option", action="append", default=[])
    args = parser.parse_args()
    results = {}
    for net in args.nets:
        results[net] = cross_validate(args.dataset, args.work, net, args.minutes, folds=args.folds, tag=net,
                                      train_options=[a for o in args.train_option for a in o.split()],
                                      reuse=args.reuse_models)
    (args.work / "result_brats.json").write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
