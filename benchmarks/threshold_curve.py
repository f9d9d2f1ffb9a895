"""Mean Dice of fixed models' held-out predictions at fixed decision thresholds, after the largest component.

Separates what a change of input or network does to the probabilities from what each model's threshold choice
(made on its few validation cases) does to its Dice: every model is scored at the same thresholds, each case's
largest component of p ≥ t kept as the predictor keeps it for a structure in one piece (``--all-components``: p ≥ t
as it is, for a structure in several pieces such as OCT fluid). Cases whose reference is empty have no Dice to
average and are left out (their count is printed).

    .venv/bin/python -m medseg predict MODEL -i HELD_OUT_IMAGES... -o P --probabilities --tta --threads 1
    .venv/bin/python benchmarks/threshold_curve.py --labels ../shared/data/PROMISE12/labelsTr P1 P2 ...

With ``--models M1 M2 ...`` (the folders that predicted P1 P2 ..., in order) a last column scores each case at its
model's own decision threshold (``config.json``; 0.5 where the model keeps the argmax), so that the threshold rule's
choice can be set against a fixed threshold on the same probabilities.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from medseg.io import read_image, strip_extension
from medseg.metrics import dice
from medseg.model_folder import load_config
from medseg.postprocessing import keep_largest_component

THRESHOLDS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)


def curve(predictions: Path, labels: Path, thresholds: tuple[float, ...],
          largest: bool = True) -> tuple[dict[str, list[float]], int]:
    """Per case (name → Dice at each threshold) of one `medseg predict --probabilities` folder, and the number of
    cases left out for an empty reference."""
    scores, empty = {}, 0
    for path in sorted((predictions / "probabilities").iterdir()):
        name = strip_extension(path.name)
        reference = read_image(next(labels.glob(f"{name}.*"))).array[0] != 0
        if not reference.any():
            empty += 1
            continue
        foreground = np.asarray(read_image(path).array[-1], np.float32)  # the last channel: the structure
        masks = [(foreground >= t).astype(np.uint8) for t in thresholds]
        scores[name] = [dice(keep_largest_component(m) if largest else m, reference) for m in masks]
    return scores, empty


def own_threshold(model: Path) -> float:
    """The model folder's decision threshold; 0.5 where it keeps the argmax."""
    chosen = load_config(model).decision_threshold
    return 0.5 if chosen is None else float(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", type=Path, nargs="+", help="`medseg predict --probabilities` folders.")
    parser.add_argument("--labels", type=Path, required=True, help="Reference label maps, named as the cases.")
    parser.add_argument("--models", type=Path, nargs="+", help="The model folders that predicted them, in order: "
                        "adds a column at each model's own decision threshold.")
    parser.add_argument("--all-components", action="store_true", help="Score p ≥ t as it is (a structure in "
                        "several pieces) instead of its largest component.")
    args = parser.parse_args()
    if args.models and len(args.models) != len(args.predictions):
        parser.error(f"--models names {len(args.models)} folders for {len(args.predictions)} prediction folders")
    own = [own_threshold(m) for m in args.models] if args.models else [None] * len(args.predictions)
    print("folder | case | " + " | ".join(f"p ≥ {t}" for t in THRESHOLDS) + (" | own p ≥ t" if args.models else ""))
    rows = []
    for folder, t in zip(args.predictions, own):
        scores, empty = curve(folder, args.labels, THRESHOLDS + ((t,) if t is not None else ()),
                              largest=not args.all_components)
        for name, row in scores.items():
            print(f"{folder.name} | {name} | " + " | ".join(f"{d:.3f}" for d in row))
        rows.extend(scores.values())
        suffix = (f" (own t = {t:.2f})" if t is not None else "") + (f" ({empty} empty left out)" if empty else "")
        means = np.mean(list(scores.values()), axis=0)
        print(f"{folder.name} | mean{suffix} | " + " | ".join(f"{d:.3f}" for d in means))
    print(f"all {len(rows)} cases | mean | " + " | ".join(f"{d:.3f}" for d in np.mean(rows, axis=0)))


if __name__ == "__main__":
    main()
