"""Localise with the trained network, segment inside its boxes with LiteMedSAM (issue 17: localise, then segment).

Runs on the work folder of `benchmarks/promise12.py` or `benchmarks/brats.py` (its fold models and held-out
predictions), with nothing trained here: the released LiteMedSAM weights prompted zero-shot.

    PYTHONPATH=src .venv/bin/python benchmarks/localise_prompt.py --dataset ../shared/data/PROMISE12 --work W --tag unet
    PYTHONPATH=src .venv/bin/python benchmarks/localise_prompt.py --dataset ../shared/data/BraTS --work W --tag unet \\
        --whole-tumour --channel 0

For each fold the script has run (a `pred_TAG_foldK` folder), through the ordinary commands:
`medseg boxes PRED --per-component --min-voxels 10 [--per-slice]` on the network's own held-out predictions
(a 3D box per connected component, which LiteMedSAM follows slice by slice from its middle; or one box per
component per slice), `medseg prompt --boxes` on the held-out images, `medseg evaluate` against the references.
With ``--whole-tumour`` (BraTS) the boxes are drawn around the predicted tumour (any label), LiteMedSAM draws the
whole tumour on FLAIR, and the network's labels are kept inside it: its tumour core and enhancing tumour where it
put them, oedema (2) where LiteMedSAM adds tumour and the network had none, nothing where the network's oedema lies
outside LiteMedSAM's mask. Results: WORK/result_prompt_TAG.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _apps import MEDSEG, case_inputs, evaluate_folder, file_layout, label_means, link, run

OEDEMA = 2  # BraTS 2018's label value of the peritumoural oedema


def held_out_images(dataset: Path, cases: list[str], channels: int, ending: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for case in cases:
        for file in case_inputs(dataset, case, channels, ending):
            link(Path(file), folder / Path(file).name)
    return folder


def whole_tumour_maps(predictions: Path, folder: Path, ending: str) -> Path:
    """Binary maps (any label → 1) of the network's predictions, on their own grid."""
    from medseg.io import read_image, write_image

    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(predictions.glob(f"*{ending}")):
        label = read_image(path)
        write_image(label.with_array((label.array > 0).astype(np.uint8)), folder / path.name)
    return folder


def fuse_whole_tumour(network: Path, prompted: Path, folder: Path, ending: str) -> Path:
    """The network's labels inside LiteMedSAM's whole tumour (see the module docstring)."""
    from medseg.io import read_image, write_image

    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(network.glob(f"*{ending}")):
        label = read_image(path)
        mask = read_image(prompted / path.name).array[0] > 0
        fused = np.rint(label.array[0]).astype(np.uint8)
        fused[mask & (fused == 0)] = OEDEMA
        fused[~mask & (fused == OEDEMA)] = 0
        write_image(label.with_array(fused[None]), folder / path.name)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True, help="The work folder of promise12.py / brats.py.")
    parser.add_argument("--tag", default="unet")
    parser.add_argument("--folds", type=int, default=4, help="As the work folder was made.")
    parser.add_argument("--channel", type=int, default=None, help="Image channel to prompt on (BraTS: 0 = FLAIR).")
    parser.add_argument("--whole-tumour", action="store_true", help="BraTS: prompt the whole tumour and fuse.")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from medseg.datasets import load_dataset
    from medseg.datasets.splits import make_splits

    _, ending, channels = file_layout(args.dataset)
    splits = make_splits([c.name for c in load_dataset(args.dataset).cases], folds=args.folds, seed=0)
    work, references = args.work, args.work / "references"
    prompt_options = ["--threads", str(args.threads)]
    if args.channel is not None:
        prompt_options += ["--channel", str(args.channel)]
    seconds: dict[str, float] = {}
    for fold, split in enumerate(splits):
        predictions = work / f"pred_{args.tag}_fold{fold}"
        if not predictions.is_dir():
            continue
        images = held_out_images(args.dataset, split["val"], channels, ending, work / f"held_out_fold{fold}")
        boxed = whole_tumour_maps(predictions, work / f"wt_{args.tag}_fold{fold}", ending) if args.whole_tumour \
            else predictions
        for variant, extra in (("3d", []), ("slice", ["--per-slice"])):
            boxes = work / f"boxes_{args.tag}_{variant}_fold{fold}.csv"
            run(MEDSEG + ["boxes", boxed, "--per-component", "--min-voxels", "10", *extra, "-o", boxes])
            out = work / f"prompt_{args.tag}_{variant}_fold{fold}"
            seconds[f"{variant}_fold{fold}"] = run(MEDSEG + ["prompt", "--boxes", boxes, "-i", images, "-o", out,
                                                            *prompt_options])
            if args.whole_tumour:
                out = fuse_whole_tumour(predictions, out, work / f"fused_{args.tag}_{variant}_fold{fold}", ending)
            pooled = work / f"pred_prompt_{args.tag}_{variant}"
            pooled.mkdir(exist_ok=True)
            for case in split["val"]:
                link(out / f"{case}{ending}", pooled / f"{case}{ending}")
    result = {"seconds_prompting": seconds}
    for variant in ("3d", "slice"):
        summary = evaluate_folder(work / f"pred_prompt_{args.tag}_{variant}", references,
                                  work / f"eval_prompt_{args.tag}_{variant}", ["--images", args.dataset / "imagesTr"])
        dice, hd95 = label_means(summary, "dice"), label_means(summary, "hd95")
        result[variant] = {name: {"dice": dice[name], "hd95": hd95[name]} for name in dice}
    (work / f"result_prompt_{args.tag}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
