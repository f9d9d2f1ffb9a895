"""How far a decision threshold chosen on a few validation images carries: from saved probability maps
(`medseg predict --probabilities`), the pooled pixel accuracy and F1 at given thresholds, each image's own
optimum, and the threshold chosen on all but one image scored on that one (leave-one-out).

    # the 8 STARE images a fine-tuned model held out (benchmarks/devices.py --ks 10, one draw)
    .venv/bin/python benchmarks/threshold_cases.py --predictions W/pred_k10_d0 --labels W/stare/labelsTr \
        --rois W/pred_k10_d0/roi --thresholds 0.5,0.601,0.741
    # the DRIVE model's 4 validation images (predicted with --probabilities --roi drive/roisTr)
    .venv/bin/python benchmarks/threshold_cases.py --predictions P --labels W/drive/labelsTr --rois W/drive/roisTr

Files are matched by case name (`NAME.tif` probability maps, `NAME.png` labels and ROIs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from medseg.io import read_image, strip_extension
from medseg.planning.threshold import best_threshold, score_at


def channel(path: Path, index: int = 0) -> np.ndarray:
    """One channel of an image file (medseg arrays are channel-first)."""
    return np.asarray(read_image(path).array[index], np.float64)


def load(predictions: Path, labels: Path, rois: Path | None):
    """Case names, foreground probabilities (a saved map's last channel), references and ROIs."""
    names = sorted(strip_extension(f.name) for f in (predictions / "probabilities").iterdir())
    probs = [channel(predictions / "probabilities" / f"{n}.tif", -1) for n in names]
    refs = [channel(labels / f"{n}.png") != 0 for n in names]
    masks = [channel(rois / f"{n}.png") != 0 for n in names] if rois else [None] * len(names)
    return names, probs, refs, masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=Path, required=True, help="A `medseg predict --probabilities` folder.")
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--rois", type=Path)
    parser.add_argument("--thresholds", default="0.5", help="Comma-separated thresholds to score, pooled over images.")
    args = parser.parse_args()
    names, probs, refs, masks = load(args.predictions, args.labels, args.rois)
    print(f"{len(names)} images: {', '.join(names)}")
    for t in sorted(float(x) for x in args.thresholds.split(",")):
        acc, f1 = (score_at(probs, refs, t, masks, metric=m) for m in ("accuracy", "f1"))
        print(f"  p ≥ {t:.3f}: accuracy {acc:.4f}  F1 {f1:.4f}")
    for metric in ("accuracy", "f1"):
        chosen, score = best_threshold(probs, refs, masks, metric=metric)
        print(f"{metric}: optimum over all images {chosen:.3f} ({score:.4f}; at 0.5 "
              f"{score_at(probs, refs, 0.5, masks, metric=metric):.4f})")
        for i, name in enumerate(names):
            own = best_threshold([probs[i]], [refs[i]], [masks[i]], metric=metric)[0]
            line = f"  {name}: own optimum {own:.3f}"
            if len(names) > 1:
                rest = [j for j in range(len(names)) if j != i]
                t = best_threshold([probs[j] for j in rest], [refs[j] for j in rest], [masks[j] for j in rest],
                                   metric=metric)[0]
                line += (f"; chosen on the others {t:.3f}: {score_at([probs[i]], [refs[i]], t, [masks[i]], metric=metric):.4f}"
                         f" vs {score_at([probs[i]], [refs[i]], 0.5, [masks[i]], metric=metric):.4f} at 0.5")
            print(line)


if __name__ == "__main__":
    main()
