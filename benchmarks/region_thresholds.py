"""Dice of each region of a region model at several probability thresholds, per case; or (``--choose``) the
threshold of each region chosen on the model's validation cases and what it does to its held-out cases.

Shows whether a region model's errors are calibration (a threshold other than 0.5 would fix them) or not (the
model fits its training cases at 0.5 and misses unseen ones at every threshold). Needs the probabilities that
`medseg predict --probabilities` writes (channel r = the dataset's r-th region, in dataset.json's order):

    medseg predict W/model_unet_fold3 -i ../shared/data/BraTS/imagesTr -o P --probabilities
    PYTHONPATH=src .venv/bin/python benchmarks/region_thresholds.py --dataset ../shared/data/BraTS \\
        --probabilities P/probabilities --model W/model_unet_fold3 [--choose]

``--choose`` scores the raw probabilities (no postprocessing) with the decision-threshold rule's search
(:func:`medseg.planning.threshold.best_threshold`, pooled Dice, exact over every probability value).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from medseg.datasets import load_dataset
from medseg.io import read_image, strip_extension
from medseg.metrics.overlap import dice
from medseg.planning.threshold import best_threshold


def roles(model: Path | None) -> dict[str, str]:
    """Case → "train" / "val" from the model's config.json (other cases are held out)."""
    if model is None:
        return {}
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    return {**{c: "train" for c in config["train_cases"]}, **{c: "val" for c in config["val_cases"]}}


def load(args: argparse.Namespace, dataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Case → (probabilities, reference label map)."""
    cases = {}
    for path in sorted(args.probabilities.iterdir()):
        case = strip_extension(path.name)
        cases[case] = (np.asarray(read_image(path).array, np.float32),
                       np.asarray(read_image(dataset.case(case).label_path).array[0]))
    return cases


def print_table(cases, regions: dict, role: dict[str, str], thresholds: list[float]) -> None:
    print("case", "role", *(f"{name} Dice at {'/'.join(map(str, thresholds))} (predicted/reference at 0.5)"
                            for name in regions), sep=" | ")
    for case, (probabilities, reference) in cases.items():
        cells = []
        for channel, values in enumerate(regions.values()):
            truth = np.isin(reference, values)
            scores = [dice(probabilities[channel] >= t, truth) for t in thresholds]
            ratio = (probabilities[channel] >= 0.5).sum() / max(int(truth.sum()), 1)
            cells.append(" / ".join(f"{s:.2f}" for s in scores) + f" ({ratio:.2f})")
        print(case, role.get(case, "held" if role else "-"), *cells, sep=" | ", flush=True)


def print_chosen(cases, regions: dict, role: dict[str, str]) -> None:
    val = [c for c in cases if role.get(c) == "val"]
    held = [c for c in cases if c not in role]
    if not val or not held:
        raise SystemExit("--choose needs the model's validation cases and held-out cases among the probabilities")
    print(f"validation {', '.join(val)}; held out {', '.join(held)}")
    for channel, (name, values) in enumerate(regions.items()):
        truth = {c: np.isin(reference, values) for c, (_, reference) in cases.items()}

        def mean_dice(names: list[str], t: float) -> float:
            return float(np.mean([dice(cases[c][0][channel] >= t, truth[c]) for c in names]))

        chosen, _ = best_threshold([cases[c][0][channel] for c in val], [truth[c] for c in val], metric="f1")
        print(f"{name}: p >= {chosen:.3f}; validation Dice {mean_dice(val, 0.5):.3f} -> {mean_dice(val, chosen):.3f}; "
              f"held-out Dice {mean_dice(held, 0.5):.3f} -> {mean_dice(held, chosen):.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True, help="Dataset folder (dataset.json, labelsTr).")
    parser.add_argument("--probabilities", type=Path, required=True, help="Folder of probability files.")
    parser.add_argument("--model", type=Path, help="Model folder: marks each case as train / val / held out.")
    parser.add_argument("--thresholds", default="0.1,0.3,0.5")
    parser.add_argument("--choose", action="store_true",
                        help="Choose each region's threshold on the validation cases; score the held-out ones.")
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    regions = dataset.regions or {}
    role = roles(args.model)
    cases = load(args, dataset)
    if args.choose:
        if args.model is None:
            raise SystemExit("--choose needs --model (its validation cases)")
        print_chosen(cases, regions, role)
    else:
        print_table(cases, regions, role, [float(t) for t in args.thresholds.split(",")])


if __name__ == "__main__":
    main()
