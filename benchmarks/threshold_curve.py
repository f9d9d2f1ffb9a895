"""Mean Dice of fixed models' held-out predictions at fixed decision thresholds, after the largest component.

Separates what a change of input or network does to the probabilities from what each model's threshold choice
(made on its few validation cases) does to its Dice: every model is scored at the same thresholds, each case's
largest component of p ≥ t kept as the predictor keeps it for a structure in one piece.

    .venv/bin/python -m medseg predict MODEL -i HELD_OUT_IMAGES... -o P --probabilities --tta --threads 1
    .venv/bin/python benchmarks/threshold_curve.py --labels ../shared/data/PROMISE12/labelsTr P1 P2 ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from medseg.io import read_image, strip_extension
from medseg.metrics import dice
from medseg.postprocessing import keep_largest_component

THRESHOLDS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)


def curve(predictions: Path, labels: Path, thresholds: tuple[float, ...]) -> dict[str, list[float]]:
    """Per case (name → Dice at each threshold) of one `medseg predict --probabilities` folder."""
    scores = {}
    for path in sorted((predictions / "probabilities").iterdir()):
        name = strip_extension(path.name)
        foreground = np.asarray(read_image(path).array[-1], np.float32)  # the last channel: the structure
        reference = read_image(next(labels.glob(f"{name}.*"))).array[0] != 0
        scores[name] = [dice(keep_largest_component((foreground >= t).astype(np.uint8)), reference)
                        for t in thresholds]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", type=Path, nargs="+", help="`medseg predict --probabilities` folders.")
    parser.add_argument("--labels", type=Path, required=True, help="Reference label maps, named as the cases.")
    args = parser.parse_args()
    print("folder | case | " + " | ".join(f"p ≥ {t}" for t in THRESHOLDS))
    for folder in args.predictions:
        scores = curve(folder, args.labels, THRESHOLDS)
        for name, row in scores.items():
            print(f"{folder.name} | {name} | " + " | ".join(f"{d:.3f}" for d in row))
        print(f"{folder.name} | mean | " + " | ".join(f"{d:.3f}" for d in np.mean(list(scores.values()), axis=0)))


if __name__ == "__main__":
    main()
