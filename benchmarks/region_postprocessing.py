"""The region postprocessing rule applied after the fact to a trained region model's predictions.

The rule (`medseg.postprocessing.choose_postprocessing` with the dataset's regions, as `medseg train` now runs
it on its validation cases) chooses on the prediction of the model's validation case, on the input grid;
the chosen steps are applied to the held-out predictions, and both are scored per region (Dice).

    medseg predict MODEL -i VAL_CASE_0000 ... VAL_CASE_0003 -o VALPRED
    PYTHONPATH=src .venv/bin/python benchmarks/region_postprocessing.py --dataset ../shared/data/BraTS \\
        --validation VALPRED/CASE.nii.gz --held-out WORK/pred_unet_fold0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from medseg.io import read_image
from medseg.metrics.overlap import dice
from medseg.postprocessing import apply_steps, choose_postprocessing


def labels(path: Path) -> np.ndarray:
    return np.asarray(read_image(path).array[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=Path("../shared/data/BraTS"))
    parser.add_argument("--validation", type=Path, required=True, help="The prediction of the validation case.")
    parser.add_argument("--held-out", type=Path, required=True, help="Folder of held-out predictions.")
    args = parser.parse_args()
    meta = json.loads((args.dataset / "dataset.json").read_text(encoding="utf-8"))
    regions = {k: v for k, v in meta["labels"].items() if isinstance(v, list)}
    values = sorted({0, *[v for r in regions.values() for v in r]})
    reference = labels(args.dataset / "labelsTr" / args.validation.name)
    spacing = tuple(read_image(args.validation).spacing)
    steps, trials = choose_postprocessing([labels(args.validation)], [reference], [spacing], values, regions=regions)
    print("chosen:", [(s["step"], s["region"]) for s in steps] or "none")
    for t in trials:
        print(f"  {t['step']:9s} {t['region']:16s} {t['dice_before']:.4f} -> {t['dice_after']:.4f} kept={t['kept']}")
    scores: dict[str, list[tuple[float, float]]] = {}
    for path in sorted(args.held_out.glob("*" + meta.get("file_ending", ".nii.gz"))):
        truth, raw = labels(args.dataset / "labelsTr" / path.name), labels(path)
        post = apply_steps(raw, steps, spacing=read_image(path).spacing)
        for name, vals in regions.items():
            scores.setdefault(name, []).append((dice(np.isin(raw, vals), np.isin(truth, vals)),
                                                dice(np.isin(post, vals), np.isin(truth, vals))))
    for name, rows in scores.items():
        a = np.asarray(rows)
        print(f"{name}: held-out Dice {a[:, 0].mean():.4f} -> {a[:, 1].mean():.4f} (per case {np.round(a, 4).tolist()})")


if __name__ == "__main__":
    main()
