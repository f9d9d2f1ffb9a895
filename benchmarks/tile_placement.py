"""How far does a sliding-window prediction move per case when only its tiles move?

A model's whole-volume prediction is itself one draw of where its tiles fall: the tiles are spread evenly over
the (cropped) volume, and a structure's boundary is predicted from the tiles that happen to cover it. This
predicts each case with the model as it is, with its tile grid translated by `--shifts` voxels (the grid of a
volume `shift` voxels larger, moved back by `shift` and clamped to the volume: the same tile count and overlap,
other positions), and at other `--overlaps` (more tiles; an overlap that keeps the tile count keeps the tiles,
which are spread evenly), and scores each against the reference: Dice and HD95 per region for a region dataset
(BraTS's conventions), the foreground Dice otherwise.

The yardstick for a comparison between two tilings of the same model, e.g. localise-then-segment (a box's tiles)
against the whole volume (benchmarks/localise.py). `--model` may be a localise-then-segment pair (`medseg localise`):
then the fine pass's tiles inside the box move (the coarse pass is one tile at 4 mm on BraTS).

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/tile_placement.py --dataset ../shared/data/BraTS \
        --model W/pair/fine --cases Brats18_TCIA10_628_1,Brats18_TCIA13_623_1 --shifts 8,16 --overlaps 0.6 \
        --out W/tile_placement.json

Study only: the shift replaces `medseg.tiling.sliding_window.tile_starts` inside this process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def shifted_tiles(shift: int) -> Iterator[None]:
    """Tile starts of a volume ``shift`` voxels larger, moved back by ``shift`` and clamped to the volume."""
    import medseg.tiling.sliding_window as sliding_window

    original = sliding_window.tile_starts

    def starts(size: int, patch: int, overlap: float) -> list[int]:
        if size <= patch or shift == 0:
            return original(size, patch, overlap)
        return sorted({min(size - patch, max(0, s - shift)) for s in original(size + shift, patch, overlap)})

    sliding_window.tile_starts = starts
    try:
        yield
    finally:
        sliding_window.tile_starts = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--cases", required=True, help="Comma-separated case names.")
    parser.add_argument("--shifts", default="8,16", help="Comma-separated translations of the tile grid (voxels).")
    parser.add_argument("--overlaps", default="", help="Comma-separated tile overlaps (the model's own: 0.5).")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import numpy as np
    import torch

    from medseg.datasets import load_dataset
    from medseg.inference.localise import LocaliseThenSegment, is_localise_folder
    from medseg.inference.predictor import Predictor
    from medseg.metrics import dice
    from medseg.metrics.brats import brats_region_metrics

    torch.set_num_threads(args.threads)
    dataset = load_dataset(args.dataset)
    values = [v for v in dataset.label_values if v != 0]
    load = LocaliseThenSegment.from_folder if is_localise_folder(args.model) else Predictor.from_folder
    model = load(args.model)
    variants = [("as trained", model, 0)]
    variants += [(f"shift {s}", model, int(s)) for s in args.shifts.split(",") if s]
    variants += [(f"overlap {o}", load(args.model, overlap=float(o)), 0) for o in args.overlaps.split(",") if o]

    def scores(prediction: np.ndarray, reference: np.ndarray, spacing: tuple[float, ...]) -> dict:
        if dataset.regions:
            return brats_region_metrics(prediction, reference, dataset.regions, spacing)
        return {"foreground": {"dice": dice(np.isin(prediction, values), np.isin(reference, values))}}

    rows = []
    for name in args.cases.split(","):
        case = dataset.case(name)
        image, reference = case.read_image(), case.read_label().array[0]
        for variant, predictor, shift in variants:
            with shifted_tiles(shift):
                prediction = predictor.predict(image).array[0]
            rows.append({"case": name, "tiles": variant, **scores(prediction, reference, image.spacing)})
            print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": str(args.model), "cases": rows}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
