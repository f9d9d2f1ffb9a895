"""ACDC with few labels (SSL4MIS protocol): supervised-only vs mean teacher vs CPS vs BCP, same budget.

Protocol (../shared/data/ACDC/splits.json, the SSL4MIS train/val split): the first N patients of "train"
(both frames: SSL4MIS takes the first slices of its training list) are labelled, the other training
volumes are used without labels; every run trains `--minutes` of wall clock through `medseg train` (the
same plan, `--fold 0` = the split's 20 val volumes, no checkpoint selection on them) and is scored on the
20 val volumes (mean Dice over RV/MYO/LV and HD95; ACDC's stored spacing is 1 mm, so HD95 is in voxels).

    # the issue's benchmark (quiet machine; 3 and 7 labelled patients, 4 methods, 60 minutes each: ~8.5 h)
    PYTHONPATH=src .venv/bin/python benchmarks/fewlabels_acdc.py --work /tmp/fewlabels_acdc --minutes 60
    # smoke (minutes): 16 of the 140 training volumes (6 labelled + 10 unlabelled), scored on 2 val volumes
    PYTHONPATH=src .venv/bin/python benchmarks/fewlabels_acdc.py --work /tmp/fl_smoke --minutes 0.5 --labeled 3 \\
        --methods none,bcp --train-volumes 16 --val-volumes 2 --train-option "--threads 1"

Prints (and writes to WORK/table.md) one Markdown table; WORK/results.json keeps every run's numbers, and a
run already there is not repeated. Self-training: benchmarks/selftrain_acdc.py; active learning:
benchmarks/active_learning_acdc.py; LA: benchmarks/fewlabels_la.py.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from _fewlabels import MEDSEG, Results, evaluate, link_cases, scores_table, train
from _timing import run

LABELS = {"RV": 1, "MYO": 2, "LV": 3}


def patients(cases: list[str]) -> list[str]:
    """Patients in order of first appearance (``patient003_frame01`` → ``patient003``)."""
    return list(dict.fromkeys(c.split("_")[0] for c in cases))


def cases_of(names: list[str], cases: list[str]) -> list[str]:
    """The volumes (both frames) of the named patients, in the order of ``cases``."""
    return [c for c in cases if c.split("_")[0] in set(names)]


def protocol(acdc: Path) -> tuple[list[str], list[str]]:
    """The SSL4MIS training and val volumes."""
    splits = json.loads((acdc / "splits.json").read_text(encoding="utf-8"))
    return list(splits["train"]), list(splits["val"])


def smoke_view(acdc: Path, work: Path, train_volumes: int, val_volumes: int) -> Path:
    """For smoke runs only: a dataset of links holding the first ``train_volumes`` training volumes and the first
    ``val_volumes`` val volumes of the split (0 = all), with that smaller splits.json; ``acdc`` itself when both
    are 0. The full protocol prepares 134 unlabelled volumes and predicts 20 val volumes twice per run."""
    if not train_volumes and not val_volumes:
        return acdc
    train_cases, val = protocol(acdc)
    train_cases = train_cases[:train_volumes] if train_volumes else train_cases
    val = val[:val_volumes] if val_volumes else val
    view = work / f"acdc_view_{len(train_cases)}_{len(val)}"
    link_cases(view / "imagesTr", [acdc / "imagesTr" / f"{c}_0000.nii.gz" for c in train_cases + val])
    link_cases(view / "labelsTr", [acdc / "labelsTr" / f"{c}.nii.gz" for c in train_cases + val])
    meta = json.loads((acdc / "dataset.json").read_text(encoding="utf-8"))
    meta["numTraining"] = len(train_cases + val)
    (view / "dataset.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    (view / "splits.json").write_text(json.dumps({"train": train_cases, "val": val}, indent=2), encoding="utf-8")
    return view


def add_smoke_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train-volumes", type=int, default=0, help="Smoke runs only: use the first N training "
                        "volumes of the split (0: all 140).")
    parser.add_argument("--val-volumes", type=int, default=0, help="Smoke runs only: score on the first N val "
                        "volumes (0: all 20).")


def acdc_plan(acdc: Path, work: Path, minutes: float, given: Path | None) -> Path:
    """The plan every run shares (made once for the budget, or the one given)."""
    plan = given or work / "plan.json"
    if not plan.exists():
        run(MEDSEG + ["plan", str(acdc), "--out", str(plan), "--time-budget", f"{minutes}m"])
    return plan


def score_on_val(acdc: Path, model: Path, val: list[str], work: Path, tag: str, predict_options: list[str]) -> dict:
    return evaluate(model, [acdc / "imagesTr" / f"{c}_0000.nii.gz" for c in val],
                    [acdc / "labelsTr" / f"{c}.nii.gz" for c in val], LABELS, work, tag, predict_options)


def train_and_score(acdc: Path, work: Path, plan: Path, labeled: list[str], method: str, minutes: float,
                    extra: list[str], tag: str, results: Results, predict_options: list[str]) -> dict:
    """One run of the protocol (skipped when ``results`` already holds ``tag``)."""
    if tag not in results:
        model = work / f"model_{tag}"
        entry = train(acdc, model, labeled=labeled, method=method, minutes=minutes, plan=plan, fold=0, extra=extra)
        entry.update(score_on_val(acdc, model, protocol(acdc)[1], work, tag, predict_options))
        entry["labeled"] = labeled
        results[tag] = entry
    return results[tag]


def options(given: list[str]) -> list[str]:
    """Repeated ``--X-option "A B"`` values as one argument list."""
    return [a for option in given for a in shlex.split(option)]


def prepare_run(args: argparse.Namespace) -> tuple[list[str], list[str], list[str], Path, Results]:
    """What every ACDC few-labels script starts with: the work folder, the (smoke) view of ACDC in
    ``args.acdc``, the extra train options, the protocol's train/val cases, one plan and the results file."""
    args.work.mkdir(parents=True, exist_ok=True)
    args.acdc = smoke_view(args.acdc, args.work, args.train_volumes, args.val_volumes)
    train_cases, val = protocol(args.acdc)
    return (options(args.train_option), train_cases, val, acdc_plan(args.acdc, args.work, args.minutes, args.plan),
            Results(args.work))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--acdc", type=Path, default=Path("../shared/data/ACDC"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=60.0, help="Training budget per run (wall clock).")
    parser.add_argument("--labeled", default="3,7", help="Labelled patient counts.")
    parser.add_argument("--methods", default="none,mean_teacher,cps,bcp",
                        help="none (supervised on the labelled volumes only), mean_teacher, cps, bcp.")
    parser.add_argument("--plan", type=Path, help="Reuse this plan.json (default: planned once for the budget).")
    parser.add_argument("--train-option", action="append", default=[], help="Extra `medseg train` arguments.")
    parser.add_argument("--predict-option", action="append", default=[], help="Extra `medseg predict` arguments.")
    add_smoke_options(parser)
    args = parser.parse_args()

    work = args.work
    extra, train_cases, _, plan, results = prepare_run(args)
    rows = []
    for n in (int(v) for v in args.labeled.split(",")):
        labeled = cases_of(patients(train_cases)[:n], train_cases)
        for method in args.methods.split(","):
            tag = f"{method}_{n}"
            entry = train_and_score(args.acdc, work, plan, labeled, method, args.minutes, extra, tag, results,
                                    options(args.predict_option))
            rows.append((f"{n} labelled, {'supervised only' if method == 'none' else method}", entry))
    table = scores_table(rows, list(LABELS))
    (work / "table.md").write_text(table + "\n", encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
