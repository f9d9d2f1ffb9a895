"""Shared protocol of the application benchmarks (benchmarks/brats.py, promise12.py, localise.py).

K-fold cross-validation of one network through plain `medseg` commands: per fold, a dataset of symbolic
links to the other folds' cases only → `medseg train` on it with a wall-clock budget and no other option
(planned automatically from those cases; validation cases chosen among them by medseg's own rule — a
held-out fifth from five cases on — for the checkpoint, mirroring, threshold and postprocessing choices)
→ predict each held-out case in its own process (time and peak resident memory per case, measured with
os.wait4) → evaluate all held-out predictions together. The held-out cases reach
neither the plan nor any choice made after training.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from _timing import run  # also the scripts' (they import it from here)

MEDSEG = [sys.executable, "-m", "medseg"]


def run_measured(args: Sequence[str]) -> tuple[float, float]:
    """Run a command; (seconds, peak resident memory of that process in MiB, from its rusage)."""
    print("$", shlex.join(map(str, args)), flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(list(map(str, args)))
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, args)
    return time.perf_counter() - start, usage.ru_maxrss / 1024.0  # Linux: KiB


def link(source: Path, target: Path) -> None:
    if not target.exists():
        target.symlink_to(Path(source).resolve())


def file_layout(dataset: Path) -> tuple[dict, str, int]:
    """The dataset.json, its file ending and its channel count."""
    meta = json.loads((dataset / "dataset.json").read_text(encoding="utf-8"))
    return meta, meta.get("file_ending", ".nii.gz"), len(meta["channel_names"])


def evaluate_folder(predictions: Path, references: Path, out: Path, options: Sequence[str] = ()) -> dict:
    """`medseg evaluate` of a folder of predictions; its summary.json."""
    run(MEDSEG + ["evaluate", predictions, references, "--out", out, *options])
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def label_means(summary: dict, metric: str) -> dict[str, float]:
    """The mean of ``metric`` over the cases, per label or region, from an evaluation summary."""
    return {name: summary["metrics"][name][metric]["mean"] for name in summary["labels"]}


def case_inputs(dataset: Path, case: str, channels: int, ending: str) -> list[str]:
    return [str(dataset / "imagesTr" / f"{case}_{c:04d}{ending}") for c in range(channels)]


def fold_dataset(dataset: Path, cases: Sequence[str], folder: Path, channels: int, ending: str) -> Path:
    """A dataset folder of symbolic links to ``cases`` only (the data are never copied)."""
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for case in cases:
        for file in case_inputs(dataset, case, channels, ending):
            link(Path(file), folder / "imagesTr" / Path(file).name)
        link(dataset / "labelsTr" / f"{case}{ending}", folder / "labelsTr" / f"{case}{ending}")
    meta = json.loads((dataset / "dataset.json").read_text(encoding="utf-8"))
    (folder / "dataset.json").write_text(json.dumps(meta | {"numTraining": len(cases)}, indent=2), encoding="utf-8")
    return folder


def add_fold_arguments(parser, run_folds: int | None) -> None:
    """``--run-folds N`` (the first N folds; ``run_folds`` by default, None: all) or ``--fold K`` (fold K only)."""
    parser.add_argument("--run-folds", type=int, default=run_folds,
                        help=f"Folds actually trained: the first N (default: {run_folds or 'all'}).")
    parser.add_argument("--fold", type=int, action="append", default=None,
                        help="Train and predict only this fold (repeatable): two processes with their own --work "
                             "can run two folds side by side.")


def folds_to_run(args) -> list[int] | None:
    """The fold indices that :func:`add_fold_arguments`'s options ask for (None: all)."""
    if args.fold is not None:
        return args.fold
    return None if args.run_folds is None else list(range(max(1, args.run_folds)))


def fold_splits(dataset: Path, folds: int, run_folds: Sequence[int] | None) -> tuple[list[dict], list[int]]:
    """medseg's grouped ``folds``-fold split of the dataset's cases (seed 0) and the fold indices to run."""
    from medseg.datasets import load_dataset
    from medseg.datasets.splits import make_splits

    splits = make_splits([c.name for c in load_dataset(dataset).cases], folds=folds, seed=0)
    ran = list(range(len(splits))) if run_folds is None else sorted(set(run_folds))
    if not ran or ran[0] < 0 or ran[-1] >= len(splits):
        raise SystemExit(f"folds to run {ran}: each must be one of 0..{len(splits) - 1}")
    return splits, ran


def predict_held_out(dataset: Path, work: Path, tag: str, fold_models: dict[int, Sequence[Path]],
                     splits: list[dict], predict_options: Sequence[str] = (),
                     evaluate_options: Sequence[str] = ()) -> dict:
    """Predict each fold's held-out cases with that fold's model folders (several: `medseg predict` averages them),
    one process per case, and evaluate them all together; the pooled metrics and the costs per case."""
    meta, ending, channels = file_layout(dataset)
    pooled, references = work / f"pred_{tag}", work / "references"
    pooled.mkdir(parents=True, exist_ok=True)
    references.mkdir(exist_ok=True)
    case_seconds, case_mib = [], []
    for fold, models in fold_models.items():
        pred = work / f"pred_{tag}_fold{fold}"
        for case in splits[fold]["val"]:
            inputs = case_inputs(dataset, case, channels, ending)
            seconds, mib = run_measured(MEDSEG + ["predict", *models, "-i", *inputs, "-o", pred, "--overwrite",
                                                  *predict_options])
            case_seconds.append(seconds)
            case_mib.append(mib)
            link(pred / f"{case}{ending}", pooled / f"{case}{ending}")
            link(dataset / "labelsTr" / f"{case}{ending}", references / f"{case}{ending}")
    link(dataset / "dataset.json", references / "dataset.json")  # labels / regions and the metric convention
    summary = evaluate_folder(pooled, references, work / f"eval_{tag}", evaluate_options)
    return {
        "dataset": meta.get("name", dataset.name), "tag": tag, "folds": len(splits), "folds_run": sorted(fold_models),
        "held_out_cases": sorted(p.name for p in pooled.iterdir()),
        "convention": summary["settings"].get("convention"),
        "dice": label_means(summary, "dice"), "hd95_mm": label_means(summary, "hd95"),
        "seconds_per_case": statistics.mean(case_seconds), "seconds_per_case_max": max(case_seconds),
        "peak_mib_per_case_max": max(case_mib), "peak_mib_per_case": case_mib,
        "note": "seconds per case include the `medseg predict` process start-up; peak memory is the predicting "
                "process's maximum resident set (ru_maxrss; it counts from this script's own footprint at the "
                "fork, tens of MiB)",
    }


def write_result(work: Path, tag: str, result: dict) -> dict:
    (work / f"result_{tag}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))
    return result


def cross_validate(dataset: Path, work: Path, net: str, minutes: float, *, folds: int, tag: str,
                   train_options: Sequence[str] = (), predict_options: Sequence[str] = (),
                   evaluate_options: Sequence[str] = (), reuse: bool = False,
                   run_folds: Sequence[int] | None = None) -> dict:
    """The protocol above; returns (and writes to WORK/result_TAG.json) the pooled metrics and costs.

    ``run_folds``: train and predict only these folds of the ``folds``-fold split (None: all), e.g. fold 0 of 4 =
    two BraTS cases held out, one model per network within its budget; two processes with other work folders can
    run other folds side by side."""
    work.mkdir(parents=True, exist_ok=True)
    splits, ran = fold_splits(dataset, folds, run_folds)
    _, ending, channels = file_layout(dataset)
    train_seconds, iterations, models = [], [], {}
    for fold in ran:
        model = models[fold] = work / f"model_{tag}_fold{fold}"
        folder = fold_dataset(dataset, splits[fold]["train"], work / f"train_fold{fold}", channels, ending)
        command = MEDSEG + ["train", folder, "--out", model, "--net", net, "--time-limit", f"{minutes}m", "--overwrite",
                            "--no-progress", *train_options]
        if not (reuse and (model / "model.safetensors").is_file()):
            train_seconds.append(run(command))
        log = (model / "training_log.csv").read_text(encoding="utf-8").strip().splitlines()
        iterations.append(int(log[-1].split(",")[0]))
    result = predict_held_out(dataset, work, tag, {fold: [models[fold]] for fold in ran}, splits,
                              predict_options, evaluate_options)
    return write_result(work, tag, result | {
        "net": net, "iterations": iterations,
        "train_minutes_per_fold": statistics.mean(train_seconds) / 60 if train_seconds else None})


def ensemble_folds(dataset: Path, work: Path, tags: Sequence[str], *, folds: int,
                   run_folds: Sequence[int] | None = None, evaluate_options: Sequence[str] = ()) -> dict:
    """Each fold's held-out cases predicted by the average of the models ``cross_validate`` trained under ``tags``
    (WORK/model_TAG_foldK, which must exist), evaluated as one more entry, WORK/result_ensemble.json."""
    splits, ran = fold_splits(dataset, folds, run_folds)
    models = {fold: [work / f"model_{tag}_fold{fold}" for tag in tags] for fold in ran}
    missing = [str(m) for ms in models.values() for m in ms if not (m / "model.safetensors").is_file()]
    if missing:
        raise SystemExit(f"ensemble: no trained model in {', '.join(missing)}")
    result = predict_held_out(dataset, work, "ensemble", models, splits, evaluate_options=evaluate_options)
    return write_result(work, "ensemble", result | {"members": list(tags)})
