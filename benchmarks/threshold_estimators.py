"""Which estimator of a binary model's decision threshold carries from its validation cases to held-out ones.

For each model, two `medseg predict --probabilities` folders: its validation cases and its held-out cases. On the
validation cases, four thresholds: the F1 optimum over the pooled voxels (what `rule_decision_threshold` does for
most structures), the median of each case's own F1 optimum (cases with foreground only), 0.5, and the pooled F1
optimum of the largest component of p ≥ t (`best_largest_component_threshold`: what the rule does for a structure in
one piece). Each is scored on the held-out cases: mean Dice over those with foreground, and with `--largest` also
after keeping the largest component.

    # PROMISE12: session 18's fold-0 U-Net (validation Case34/37/49, held out Case00/08/43/46), and more models
    .venv/bin/python benchmarks/threshold_estimators.py --labels ../shared/data/PROMISE12/labelsTr --largest \
        --model VAL0:HELD0 --model VAL1:HELD1 ...
    # OCT: the three fold models of benchmarks/oct_cascade.py, their validation patient predicted separately
    .venv/bin/python benchmarks/threshold_estimators.py --labels ../shared/data/DukeDME/labelsTr \
        --model V0:W/pred:subject01_scan00,... --model V1:W/pred:... --model V2:W/pred:...

A held-out folder that pools several models' cases (oct_cascade.py's W/pred) takes the model's own cases after a
second colon: `--model VAL:HELD:CASE,CASE,...`. Files are matched by case name (probability maps
`probabilities/NAME.*`, labels `NAME.*`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from threshold_cases import channel

from medseg.io import strip_extension
from medseg.metrics import dice
from medseg.planning.threshold import best_largest_component_threshold, best_threshold
from medseg.postprocessing import keep_largest_component

ESTIMATORS = ("pooled F1 (the rule)", "median of per-case optima", "0.5", "pooled F1 of the largest component")


def _by_name(folder: Path) -> dict[str, Path]:
    return {strip_extension(f.name): f for f in folder.iterdir() if f.is_file()}


def load(predictions: Path, labels: dict[str, Path], cases: list[str] | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(foreground probability, reference mask) per case of a `--probabilities` folder."""
    maps = _by_name(predictions / "probabilities")
    names = sorted(maps) if cases is None else cases
    missing = [n for n in names if n not in maps or n not in labels]
    if missing:
        raise SystemExit(f"{predictions}: no probability map or label for {', '.join(missing)}")
    return [(channel(maps[n], -1), channel(labels[n]) != 0) for n in names]


def thresholds(validation: list[tuple[np.ndarray, np.ndarray]]) -> list[float]:
    """The estimators' thresholds, in ESTIMATORS' order."""
    probs, refs = [p for p, _ in validation], [r for _, r in validation]
    pooled = best_threshold(probs, refs, metric="f1")[0]
    own = [best_threshold([p], [r], metric="f1")[0] for p, r in validation if r.any()]
    return [pooled, float(np.median(own)) if own else pooled, 0.5,
            best_largest_component_threshold(probs, refs, metric="f1")[0]]


def held_out_dice(held: list[tuple[np.ndarray, np.ndarray]], t: float, largest: bool) -> list[float]:
    scores = []
    for p, r in held:
        if not r.any():
            continue
        mask = (p >= t).astype(np.uint8)
        scores.append(dice((keep_largest_component(mask) if largest else mask) > 0, r))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--model", action="append", required=True,
                        help="VALIDATION_FOLDER:HELD_OUT_FOLDER[:CASE,CASE,...] (repeatable).")
    parser.add_argument("--largest", action="store_true", help="Also score with the largest component kept.")
    args = parser.parse_args()
    labels = _by_name(args.labels)
    variants = [False, True] if args.largest else [False]
    scores = {(e, v): [] for e in ESTIMATORS for v in variants}
    for spec in args.model:
        parts = spec.split(":")
        validation = load(Path(parts[0]), labels, None)
        held = load(Path(parts[1]), labels, parts[2].split(",") if len(parts) > 2 else None)
        chosen = thresholds(validation)
        line = []
        for estimator, t in zip(ESTIMATORS, chosen):
            for largest in variants:
                s = held_out_dice(held, t, largest)
                scores[(estimator, largest)] += s
                line.append(f"{estimator}{' +largest' if largest else ''} t={t:.3f} {np.mean(s):.3f}")
        print(f"{parts[0]}: " + "; ".join(line))
    for (estimator, largest), s in scores.items():
        print(f"{estimator}{', largest component' if largest else ''}: held-out mean Dice {np.mean(s):.3f} "
              f"over {len(s)} cases with foreground")


if __name__ == "__main__":
    main()
