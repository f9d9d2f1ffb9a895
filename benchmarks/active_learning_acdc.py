"""Active learning on ACDC: from 3 labelled patients, label 4 more chosen by `medseg suggest` or at random.

1. The start model: supervised on the first ``--labeled`` patients of the SSL4MIS split, ``--minutes`` of
   training (the ``none_3`` run of benchmarks/fewlabels_acdc.py with the same ``--work`` is reused).
2. `medseg suggest` ranks every volume of the remaining training patients; the first ``--add`` distinct
   patients of the ranking are "suggested".
3. ``--draws`` random draws of ``--add`` patients from the same pool (``random.Random(seed)``, seeds 0, 1, ...).
4. Each selection: the start patients + the added ones, trained with the same plan, budget and
   ``--method`` (default supervised only), scored on the 20 val volumes (mean Dice RV/MYO/LV, HD95).

    # the issue's benchmark (quiet machine; 1 + 1 + 3 runs of 60 minutes)
    PYTHONPATH=src .venv/bin/python benchmarks/active_learning_acdc.py --work /tmp/fewlabels_acdc --minutes 60
    # two cores: two processes on one work folder, then the table (every run reused)
    ... --train-option "--threads 1" --selections suggested,random2 &
    ... --train-option "--threads 1" --selections random0,random1; ...
    # smoke
    PYTHONPATH=src .venv/bin/python benchmarks/active_learning_acdc.py --work /tmp/fl_smoke --minutes 0.5 \\
        --train-volumes 16 --val-volumes 2 --train-option "--threads 1" --suggest-option "--threads 1"
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

from _fewlabels import MEDSEG, mean_and_spread, scores_table
from _timing import run
from fewlabels_acdc import LABELS, add_smoke_options, cases_of, options, patients, prepare_run, train_and_score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--acdc", type=Path, default=Path("../shared/data/ACDC"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=60.0, help="Training budget of every run.")
    parser.add_argument("--labeled", type=int, default=3, help="Patients labelled at the start.")
    parser.add_argument("--add", type=int, default=4, help="Patients added (suggested or random).")
    parser.add_argument("--draws", type=int, default=3, help="Random draws (seeds 0..draws-1).")
    parser.add_argument("--selections", help="Train only these selections now (comma list of suggested, random0, "
                        "...), e.g. to run two processes on one --work side by side; the table is written once "
                        "every selection has a result.")
    parser.add_argument("--method", default="none", help="Training of the enlarged selections: none (supervised "
                        "on the labelled volumes), or a semi-supervised method using the rest unlabelled.")
    parser.add_argument("--suggest-option", action="append", default=[], help="Extra `medseg suggest` arguments.")
    parser.add_argument("--plan", type=Path, help="Reuse this plan.json.")
    parser.add_argument("--train-option", action="append", default=[], help="Extra `medseg train` arguments.")
    parser.add_argument("--predict-option", action="append", default=[], help="Extra `medseg predict` arguments.")
    add_smoke_options(parser)
    args = parser.parse_args()

    work = args.work
    extra, train_cases, _, plan, results = prepare_run(args)
    start_patients = patients(train_cases)[:args.labeled]
    start_tag = f"none_{args.labeled}"
    start = train_and_score(args.acdc, work, plan, cases_of(start_patients, train_cases), "none", args.minutes, extra,
                            start_tag, results, options(args.predict_option))
    pool = [p for p in patients(train_cases) if p not in start_patients]

    names = ["suggested"] + [f"random{seed}" for seed in range(args.draws)]
    wanted = args.selections.split(",") if args.selections else names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        parser.error(f"--selections: unknown {', '.join(unknown)} (choose from {', '.join(names)})")
    selections = {f"random{seed}": random.Random(seed).sample(pool, args.add) for seed in range(args.draws)}
    if "suggested" in wanted or _tag("suggested", args) in results:
        selections["suggested"] = suggested_patients(args, work, start_tag, pool, train_cases)

    entries = {}
    for name in names:
        if name in selections and (name in wanted or _tag(name, args) in results):
            labeled = cases_of(start_patients + selections[name], train_cases)
            entries[name] = train_and_score(args.acdc, work, plan, labeled, args.method, args.minutes, extra,
                                            _tag(name, args), results, options(args.predict_option))
    if len(entries) < len(names):
        print(f"table not written yet: {', '.join(n for n in names if n not in entries)} still to run")
        return
    rows = [(f"{args.labeled} + {args.add} {name}: {', '.join(selections[name])}", entries[name]) for name in names]
    random_dice = [entries[name]["mean_dice"] for name in names[1:]]
    table = scores_table([(f"start: {args.labeled} labelled", start)] + rows, list(LABELS))
    text = (table + f"\n\nmean Dice: suggested {entries['suggested']['mean_dice']:.4f}; random "
            f"{mean_and_spread(random_dice)} (mean ± sd over {len(random_dice)} draws)")
    (work / f"table_al_{args.method}.md").write_text(text + "\n", encoding="utf-8")
    print(text)


def _tag(name: str, args: argparse.Namespace) -> str:
    return f"al_{name}_{args.method}_{args.labeled}+{args.add}"


def suggested_patients(args: argparse.Namespace, work: Path, start_tag: str, pool: list[str],
                       train_cases: list[str]) -> list[str]:
    """The first ``args.add`` distinct patients of `medseg suggest`'s ranking of the pool (ranked once)."""
    ranking = work / f"suggest_{start_tag}.csv"
    if not ranking.exists():
        inputs = [str(args.acdc / "imagesTr" / f"{c}_0000.nii.gz") for c in cases_of(pool, train_cases)]
        run(MEDSEG + ["suggest", str(work / f"model_{start_tag}"), "-i", *inputs, "-n", str(len(inputs)),
                      "-o", str(ranking), *options(args.suggest_option)])
    return patients([row["case"] for row in csv.DictReader(ranking.open(encoding="utf-8"))])[:args.add]

if __name__ == "__main__":
    main()
