"""One round of self-training on ACDC, measured: pseudo-label quality and the gain of the round.

1. The start model: ``--start`` (default ``none``: supervised on the first N labelled patients of the SSL4MIS
   split; or a semi-supervised method) trained ``--minutes`` through `medseg train` and scored on the 20 val
   volumes (the run of benchmarks/fewlabels_acdc.py with the same ``--work`` is reused).
2. `medseg pseudolabel` labels the unlabelled training volumes with voxel-confidence filtering
   (``--voxel-threshold``; unconfident voxels get the ignore label) and optional case filtering.
3. Pseudo-label quality: for several confidence thresholds, the share of voxels kept and the mean Dice
   (RV/MYO/LV) of the kept voxels against the withheld labels (from a second `medseg pseudolabel` run that
   keeps every voxel, so that thresholds below ``--voxel-threshold`` can be scored too).
4. The round: a new model trained (same plan, same budget, supervised) on the labelled volumes + the
   confident pseudo-labels, scored on the same 20 val volumes; the gain is its mean Dice minus the start's.

    # the issue's measurement (quiet machine; 2 × 60 minutes of training + pseudo-labelling 134 volumes)
    PYTHONPATH=src .venv/bin/python benchmarks/selftrain_acdc.py --work /tmp/fewlabels_acdc --minutes 60
    # smoke
    PYTHONPATH=src .venv/bin/python benchmarks/selftrain_acdc.py --work /tmp/fl_smoke --minutes 0.5 \\
        --train-volumes 16 --val-volumes 2 --train-option "--threads 1" --pseudo-option "--threads 1 --no-tta"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _fewlabels import MEDSEG, link_cases, pseudo_label_quality, scores_table, train
from _timing import run
from fewlabels_acdc import (LABELS, add_smoke_options, cases_of, options, patients, prepare_run, score_on_val,
                            train_and_score)


def selftrain_dataset(acdc: Path, pseudo: Path, labeled: list[str], val: list[str], folder: Path) -> list[str]:
    """A dataset of links: the labelled volumes and the kept pseudo-labelled ones for training, the val volumes
    (real labels) as fold 0's validation; the pseudo-labels' dataset.json (with its ignore label)."""
    kept = sorted(p.name[: -len(".nii.gz")] for p in (pseudo / "labelsTr").iterdir())
    images = ([acdc / "imagesTr" / f"{c}_0000.nii.gz" for c in labeled + val]
              + [pseudo / "imagesTr" / f"{c}_0000.nii.gz" for c in kept])
    labels = ([acdc / "labelsTr" / f"{c}.nii.gz" for c in labeled + val]
              + [pseudo / "labelsTr" / f"{c}.nii.gz" for c in kept])
    link_cases(folder / "imagesTr", images)
    link_cases(folder / "labelsTr", labels)
    meta = json.loads((pseudo / "dataset.json").read_text(encoding="utf-8"))
    meta["numTraining"] = len(labels)
    (folder / "dataset.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    (folder / "splits.json").write_text(json.dumps({"train": labeled + kept, "val": val}, indent=2), encoding="utf-8")
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--acdc", type=Path, default=Path("../shared/data/ACDC"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=60.0, help="Training budget of each of the two models.")
    parser.add_argument("--labeled", type=int, default=3, help="Labelled patients (the first of the split).")
    parser.add_argument("--start", default="none", help="Method of the start model: none (supervised), "
                        "mean_teacher, cps, bcp.")
    parser.add_argument("--voxel-threshold", type=float, default=0.9, help="Pseudo-label voxel confidence kept.")
    parser.add_argument("--case-threshold", type=float, default=0.0, help="Pseudo-labelled cases kept.")
    parser.add_argument("--pseudo-cases", type=int, default=0, help="Only the first N unlabelled volumes (0: all).")
    parser.add_argument("--pseudo-option", action="append", default=[], help="Extra `medseg pseudolabel` arguments.")
    parser.add_argument("--plan", type=Path, help="Reuse this plan.json.")
    parser.add_argument("--train-option", action="append", default=[], help="Extra `medseg train` arguments.")
    parser.add_argument("--predict-option", action="append", default=[], help="Extra `medseg predict` arguments.")
    parser.add_argument("--quality-of", type=Path, help="Only score this `medseg pseudolabel` folder against the "
                        "withheld labels (at several confidence thresholds) and exit.")
    add_smoke_options(parser)
    args = parser.parse_args()
    if args.quality_of:
        cases = sorted(p.name[: -len(".nii.gz")] for p in (args.quality_of / "labelsTr").iterdir())
        print(json.dumps(pseudo_label_quality(args.quality_of, {c: args.acdc / "labelsTr" / f"{c}.nii.gz" for c in cases},
                                              list(LABELS.values()), (0.0, 0.3, 0.5, 0.7, 0.9)), indent=2))
        return

    work = args.work
    extra, train_cases, val, plan, results = prepare_run(args)
    n = args.labeled
    labeled = cases_of(patients(train_cases)[:n], train_cases)
    unlabeled = [c for c in train_cases if c not in labeled]
    targets = unlabeled[:args.pseudo_cases] if args.pseudo_cases else unlabeled

    start_tag = f"{args.start}_{n}"
    start = train_and_score(args.acdc, work, plan, labeled, args.start, args.minutes, extra, start_tag, results,
                            options(args.predict_option))
    tag = f"selftrain_{start_tag}_t{args.voxel_threshold:g}"
    pseudo = work / f"pseudo_{tag}"
    inputs = [str(args.acdc / "imagesTr" / f"{c}_0000.nii.gz") for c in targets]
    model = str(work / f"model_{start_tag}")
    if f"pseudolabel_{tag}" not in results:
        # quality at every threshold needs every voxel's class: a run that keeps all voxels (the filtered run
        # below has replaced unconfident classes by the ignore label)
        everything = work / f"pseudo_all_{start_tag}"
        run(MEDSEG + ["pseudolabel", model, "-i", *inputs, "-o", str(everything), "--overwrite", "--voxel-threshold",
                      "0", *options(args.pseudo_option)])
        thresholds = sorted({0.0, 0.5, 0.7, 0.9, args.voxel_threshold})
        quality = pseudo_label_quality(everything, {c: args.acdc / "labelsTr" / f"{c}.nii.gz" for c in targets},
                                       list(LABELS.values()), thresholds)
        run(MEDSEG + ["pseudolabel", model, "-i", *inputs, "-o", str(pseudo), "--overwrite", "--voxel-threshold",
                      str(args.voxel_threshold), "--case-threshold", str(args.case_threshold),
                      *options(args.pseudo_option)])
        quality["kept_cases"] = len(list((pseudo / "labelsTr").iterdir()))
        results[f"pseudolabel_{tag}"] = quality
    quality = results[f"pseudolabel_{tag}"]
    if tag not in results:
        data = work / f"data_{tag}"
        kept = selftrain_dataset(args.acdc, pseudo, labeled, val, data)
        retrained = work / f"model_{tag}"
        entry = train(data, retrained, labeled=None, method=None, minutes=args.minutes, plan=plan, fold=0, extra=extra)
        entry.update(score_on_val(args.acdc, retrained, val, work, tag, options(args.predict_option)))
        entry.update(pseudo_labelled_cases=len(kept), gain_mean_dice=entry["mean_dice"] - start["mean_dice"])
        results[tag] = entry
    entry = results[tag]

    lines = ["| voxel confidence ≥ | share of voxels kept | mean Dice of the kept voxels vs withheld labels |",
             "|---|---|---|"]
    for key, value in quality.items():
        if isinstance(value, dict):
            dice = "—" if value["confident_dice"] is None else f"{value['confident_dice']:.4f}"
            lines.append(f"| {key} | {value['kept_voxel_share']:.1%} | {dice} |")
    text = (f"pseudo-labels of {quality['of']} unlabelled volumes (start model: {start_tag}); "
            f"{quality['kept_cases']} kept for training (case confidence ≥ {args.case_threshold:g})\n\n"
            + "\n".join(lines) + "\n\n"
            + scores_table([(f"start ({start_tag})", start), (f"after one round (threshold {args.voxel_threshold:g})",
                                                               entry)], list(LABELS))
            + f"\n\ngain of one round (mean Dice): {entry['gain_mean_dice']:+.4f}")
    (work / f"table_{tag}.md").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
