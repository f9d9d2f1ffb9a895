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

    ranking = work / f"suggest_{start_tag}.csv"
    if not ranking.exists():
        inputs = [str(args.acdc / "imagesTr" / f"{c}_0000.nii.gz") for c in cases_of(pool, train_cases)]
        run(MEDSEG + ["suggest", str(work / f"model_{start_tag}"), "-i", *inputs, "-n", str(len(inputs)),
                      "-o", str(ranking), *options(args.suggest_option)])
    ranked = patients([row["case"] for row in csv.DictReader(ranking.open(encoding="utf-8"))])
    selections = {"suggested": ranked[:args.add]}
    for seed in range(args.draws):
        selections[f"random{seed}"] = random.Random(seed).sample(pool, args.add)

    rows, random_entries = [], []
    for name, added in selections.items():
        tag = f"al_{name}_{args.method}_{args.labeled}+{args.add}"
        labeled = cases_of(start_patients + added, train_cases)
        entry = train_and_score(args.acdc, work, plan, labeled, args.method, args.minutes, extra, tag, results,
                                options(args.predict_option))
        if name.startswith("random"):
            random_entries.append(entry)
        rows.append((f"{args.labeled} + {args.add} {name}: {', '.join(added)}", entry))
    table = scores_table([(f"start: {args.labeled} labelled", start)] + rows, list(LABELS))
    suggested = results[f"al_suggested_{args.method}_{args.labeled}+{args.add}"]["mean_dice"]
    text = (table + f"\n\nmean Dice: suggested {suggested:.4f}; random {mean_and_spread([e['mean_dice'] for e in random_entries])}"
            f" (mean ± sd over {len(random_entries)} draws)")
    (work / f"table_al_{args.method}.md").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
