"""LA (left atrium, LGE-MRI) with few labels: supervised-only vs semi-supervised, cross-validated.

With the 10 development volumes of ../shared/data/LA: each fold of medseg's grouped 5-fold splits holds 2
volumes out for scoring; of the other 8, ``--labeled N`` are labelled (drawn with the seed, the same for
every method of a fold) and the rest are used without labels. Every run trains ``--minutes`` of wall clock
through `medseg train` with one shared 3D plan; Dice and HD95 (mm) of the held-out volumes of every fold are
reported, and their mean ± sd over folds per method.

    # development protocol (quiet machine; 5 folds × 2 methods × 20 minutes ≈ 3.5 h)
    PYTHONPATH=src .venv/bin/python benchmarks/fewlabels_la.py --work /tmp/fewlabels_la --labeled 2 --minutes 20
    # the UA-MT protocol on the full data set: the 80 training volumes in imagesTr/labelsTr, the 20 test
    # volumes in imagesTs/labelsTs; every run trains on the 80 without validation cases (--fold all), so the
    # test volumes choose nothing (no threshold, mirroring or postprocessing is picked on them)
    PYTHONPATH=src .venv/bin/python benchmarks/fewlabels_la.py --la LA80 --work /tmp/la_uamt --folds test \\
        --labeled 16 --minutes 120            # and --labeled 8
    # smoke
    PYTHONPATH=src .venv/bin/python benchmarks/fewlabels_la.py --work /tmp/la_smoke --folds 0 --minutes 0.5 \\
        --train-option "--threads 1"

Any number of labelled and unlabelled cases works: ``--labeled`` takes a count or names, and more
unlabelled images join with ``--train-option "--unlabeled FOLDER"``. WORK/results.json keeps every run;
WORK/table.md the table.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from _fewlabels import MEDSEG, Results, evaluate, mean_and_spread, scores_table, train, val_cases
from _timing import run

LABELS = {"left_atrium": 1}
TEST = "test"


def scored_volumes(la: Path, fold: str, model: Path) -> tuple[list[str], list[Path], list[Path]]:
    """The volumes a run is scored on, their images and labels: the test set (``fold`` "test"), which the run
    never saw, or the fold's validation volumes, which chose its postprocessing (cross-validation)."""
    if fold == TEST:
        images = sorted((la / "imagesTs").glob("*_0000.nii.gz"))
        names = [p.name[: -len("_0000.nii.gz")] for p in images]
        if not names:
            raise SystemExit(f"{la / 'imagesTs'}: no test volumes (CASE_0000.nii.gz) to score")
        return names, images, [la / "labelsTs" / f"{c}.nii.gz" for c in names]
    names = val_cases(model)
    images = [la / "imagesTr" / f"{c}_0000.nii.gz" for c in names]
    return names, images, [la / "labelsTr" / f"{c}.nii.gz" for c in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--la", type=Path, default=Path("../shared/data/LA"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=20.0, help="Training budget per run (wall clock).")
    parser.add_argument("--labeled", default="2", help="Labelled training volumes per fold: a count or names.")
    parser.add_argument("--folds", default="0,1,2,3,4", help="Folds of the dataset's splits (its splits.json, else "
                        "medseg's grouped 5-fold splits; the fold's validation volumes are the ones scored), or "
                        "'test': train on every volume, score the test volumes (imagesTs/labelsTs).")
    parser.add_argument("--methods", default="none,bcp", help="none (supervised on the labelled volumes only), "
                        "mean_teacher, cps, bcp.")
    parser.add_argument("--plan", type=Path, help="Reuse this plan.json (default: planned once for the budget).")
    parser.add_argument("--train-option", action="append", default=[], help="Extra `medseg train` arguments.")
    parser.add_argument("--predict-option", action="append", default=[], help="Extra `medseg predict` arguments.")
    args = parser.parse_args()

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    extra = [a for option in args.train_option for a in shlex.split(option)]
    plan = args.plan or work / "plan.json"
    if not plan.exists():
        run(MEDSEG + ["plan", str(args.la), "--out", str(plan), "--time-budget", f"{args.minutes}m"])
    results = Results(work)
    labeled = args.labeled.strip()
    methods = args.methods.split(",")
    rows, per_method = [], {m: [] for m in methods}
    for fold in args.folds.split(","):
        for method in methods:
            tag = f"{method}_fold{fold}"
            if tag not in results:
                model = work / f"model_{tag}"
                entry = train(args.la, model, labeled=labeled, method=method, minutes=args.minutes, plan=plan,
                              fold="all" if fold == TEST else fold, extra=extra)
                held_out, images, labels = scored_volumes(args.la, fold, model)
                entry.update(evaluate(model, images, labels, LABELS, work, tag,
                                      [a for option in args.predict_option for a in shlex.split(option)]))
                config = json.loads((model / "config.json").read_text(encoding="utf-8"))
                semi = config["training"].get("semi_supervised") or {}
                entry.update(held_out=held_out, labeled=semi.get("labeled"), unlabeled=len(semi.get("unlabeled", [])))
                results[tag] = entry
            entry = results[tag]
            per_method[method].append(entry)
            rows.append((f"fold {fold}, {'supervised only' if method == 'none' else method}", entry))
    table = scores_table(rows, list(LABELS))
    summary = ["", "| method | folds | Dice (mean ± sd over folds) | HD95 mm (mean ± sd) |", "|---|---|---|---|"]
    for method, entries in per_method.items():
        summary.append(f"| {'supervised only' if method == 'none' else method} | {len(entries)} | "
                       f"{mean_and_spread([e['mean_dice'] for e in entries])} | "
                       f"{mean_and_spread([e['mean_hd95'] for e in entries])} |")
    text = table + "\n" + "\n".join(summary)
    (work / "table.md").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
