"""Dice of each region of a region model at several probability thresholds, per case.

Shows whether a region model's errors are calibration (a threshold other than 0.5 would fix them) or not (the
model fits its training cases at 0.5 and misses unseen ones at every threshold). Needs the probabilities that
`medseg predict --probabilities` writes (channel r = the dataset's r-th region, in dataset.json's order):

    medseg predict W/model_unet_fold3 -i ../shared/data/BraTS/imagesTr -o P --probabilities
    PYTHONPATH=src .venv/bin/python benchmarks/region_thresholds.py --dataset ../shared/data/BraTS \\
        --probabilities P/probabilities --model W/model_unet_fold3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from medseg.datasets import load_dataset
from medseg.io import read_image, strip_extension
from medseg.metrics.overlap import dice


def role(case: str, model: Path | None) -> str:
    """Whether ``case`` trained or validated the model (from its config.json), else held out."""
    if model is None:
        return "-"
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    return "train" if case in config["train_cases"] else "val" if case in config["val_cases"] else "held"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True, help="Dataset folder (dataset.json, labelsTr).")
    parser.add_argument("--probabilities", type=Path, required=True, help="Folder of probability files.")
    parser.add_argument("--model", type=Path, help="Model folder: marks each case as train / val / held out.")
    parser.add_argument("--thresholds", default="0.1,0.3,0.5")
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    regions = dataset.regions or {}
    thresholds = [float(t) for t in args.thresholds.split(",")]
    print("case", "role", *(f"{name} Dice at {'/'.join(map(str, thresholds))} (predicted/reference at 0.5)"
                            for name in regions), sep=" | ")
    for path in sorted(args.probabilities.iterdir()):
        case = strip_extension(path.name)
        probabilities = np.asarray(read_image(path).array, np.float32)
        reference = np.asarray(read_image(dataset.case(case).label_path).array[0])
        cells = []
        for channel, values in enumerate(regions.values()):
            truth = np.isin(reference, values)
            scores = [dice(probabilities[channel] >= t, truth) for t in thresholds]
            ratio = (probabilities[channel] >= 0.5).sum() / max(int(truth.sum()), 1)
            cells.append(" / ".join(f"{s:.2f}" for s in scores) + f" ({ratio:.2f})")
        print(case, role(case, args.model), *cells, sep=" | ", flush=True)


if __name__ == "__main__":
    main()
