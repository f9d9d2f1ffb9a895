"""OCT referral cascade on DukeDME: fluid segmentation → "fluid present" classification, split by patient.

Three folds of two patients each (subject01+02, 03+04, 05+06). One fold per run (each run ≤ 10 min):

    .venv/bin/python benchmarks/oct_cascade.py --data ../shared/data/DukeDME --work /tmp/oct_cascade --fold 0 --minutes 5
    .venv/bin/python benchmarks/oct_cascade.py ... --fold 1 --minutes 5
    .venv/bin/python benchmarks/oct_cascade.py ... --fold 2 --minutes 5
    .venv/bin/python benchmarks/oct_cascade.py --data ../shared/data/DukeDME --work /tmp/oct_cascade --report

A fold run: `medseg train` (U-Net, the automatic plan, --time-limit) on a dataset holding only the other
four patients, the last of them validating (best checkpoint, decision threshold, postprocessing and
mirroring are chosen there, never on the fold's test patients), then `medseg predict --probabilities` of
the fold's B-scans (timed per B-scan). The plan's grid is the planner's: on 2 cores it coarsens the
B-scans (``2d.target_spacing``, the low-resolution rule) and predictions come back on the B-scans' grid.
``--scale 0.5`` studies the zoom by hand instead: training and prediction see the B-scans at half size
(248×384, written once to WORK/dataset_x0.5); the report brings the probabilities back to 496×768 (bilinear)
and scores there. ``--train-option`` passes a studied option to `medseg train` (e.g. "--net
segresnet_vae"). The report:

1. fluid Dice of the out-of-fold label maps at full size (p ≥ 0.5; mean over B-scans with fluid; pooled
   over all pixels);
2. B-scan "fluid present" (reference fluid area > 0) from the out-of-fold tissue maps: nested
   leave-one-patient-out — on five patients medseg.cascade chooses and calibrates the classifier and its
   threshold (its default criterion, or ``--criterion``), the sixth patient is classified — → AUC,
   sensitivity/specificity at the threshold, ECE, bootstrap 95 % CIs; next to the bare rule "predicted fluid
   area > 0";
3. the CLI end to end on fold 0: `medseg train-classifier` (on the fold's 44 training B-scans, segmented
   by the fold's model — in-sample tissue maps), `medseg predict CASCADE --report` (overlays) of the 22
   held-out B-scans, `medseg evaluate PRED classes.csv`.

The referral cascade for new scans (e.g. held-out B-scans labelled with diagnoses), after the three folds:

    .venv/bin/python benchmarks/oct_cascade.py --data ../shared/data/DukeDME --work W --referral --minutes 40
    .venv/bin/python -m medseg predict W/referral -i SCANS/ -o OUT/
    .venv/bin/python -m medseg evaluate OUT/ diagnoses.csv --positive CNV --positive DME --out EVAL/

``--referral`` trains W/final on all six patients (subject06 validating) and fits its classifier on the
folds' out-of-fold tissue maps (`medseg train-classifier --present fluid --out-of-fold W/fold0 ...`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from _fewlabels import MEDSEG, link_cases
from _timing import run  # benchmarks/ is on sys.path when a script runs

FOLDS = 3


def fold_patients(k: int) -> tuple[str, str]:
    return f"subject{2 * k + 1:02d}", f"subject{2 * k + 2:02d}"


def fold_cases(data: Path, k: int) -> list[str]:
    cases = sorted(p.name[: -len(".png")] for p in (data / "labelsTr").glob("*.png"))
    return [c for c in cases if c.split("_")[0] in fold_patients(k)]


def scaled_dataset(data: Path, work: Path, scale: float) -> Path:
    """DukeDME with every B-scan zoomed by ``scale`` (images bilinear, labels nearest): 4× fewer pixels per
    training patch at 0.5, so that a few minutes of CPU training see more of each B-scan."""
    if scale == 1:
        return data
    from PIL import Image as PILImage

    out = work / f"dataset_x{scale:g}"
    if (out / "dataset.json").is_file():
        return out
    for sub, resample in (("imagesTr", PILImage.BILINEAR), ("labelsTr", PILImage.NEAREST)):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for path in sorted((data / sub).glob("*.png")):
            image = PILImage.open(path)
            size = (round(image.width * scale), round(image.height * scale))
            image.resize(size, resample).save(out / sub / path.name)
    (out / "dataset.json").write_text((data / "dataset.json").read_text())
    return out


def image_folder(data: Path, cases: list[str], folder: Path) -> Path:
    """Symlinks to the images of ``cases`` (medseg predict reads a folder)."""
    return link_cases(folder, [data / "imagesTr" / f"{c}_0000.png" for c in cases])


def training_dataset(data: Path, cases: list[str], folder: Path) -> Path:
    """A dataset folder of symlinks to ``cases`` only: the fold's test patients never reach training."""
    image_folder(data, cases, folder / "imagesTr")
    link_cases(folder / "labelsTr", [data / "labelsTr" / f"{c}.png" for c in cases])
    meta = json.loads((data / "dataset.json").read_text())
    (folder / "dataset.json").write_text(json.dumps(meta | {"numTraining": len(cases)}, indent=2))
    return folder


def train_model(args: argparse.Namespace, dataset: Path, out: Path, val_cases: list[str]) -> None:
    """`medseg train` as every model of this benchmark is trained: the budget, one thread, seed 0."""
    validation = ["--val-cases", ",".join(val_cases)] if val_cases else ["--fold", "all"]
    run(MEDSEG + ["train", str(dataset), "--out", str(out), *validation,
                  "--time-limit", f"{args.minutes}m", "--threads", "1", "--no-progress", "--overwrite", "--seed", "0",
                  *[a for option in args.train_option for a in shlex.split(option)]])


def run_fold(args: argparse.Namespace, k: int) -> None:
    test = fold_cases(args.data, k)
    train = [c for k2 in range(FOLDS) if k2 != k for c in fold_cases(args.data, k2)]
    # validation (checkpoint, threshold, postprocessing and mirroring choices) on the last training patient,
    # so that nothing is chosen on the fold's test patients
    val_patient = train[-1].split("_")[0]
    val = [] if args.no_validation else [c for c in train if c.startswith(val_patient + "_")]
    model = args.work / f"fold{k}"
    data = scaled_dataset(args.data, args.work, args.scale)
    if not (args.reuse_models and (model / "model.safetensors").is_file()):
        train_model(args, training_dataset(data, train, args.work / f"train_fold{k}"), model, val)
    images = image_folder(data, test, args.work / f"images_fold{k}")
    seconds = run(MEDSEG + ["predict", str(model), "-i", str(images), "-o", str(args.work / "pred"), "--probabilities",
                            "--threads", "1", "--overwrite"])
    (args.work / f"timing_fold{k}.json").write_text(json.dumps({"predict_seconds": seconds, "cases": len(test)}))


def referral_model(args: argparse.Namespace) -> None:
    """WORK/referral (the module docstring): WORK/final on all six patients, the classifier on the folds'
    out-of-fold tissue maps; then the same classifier on WORK/final's own maps, for the comparison."""
    folds = [args.work / f"fold{k}" for k in range(FOLDS)]
    missing = [str(f) for f in folds if not (f / "model.safetensors").is_file()]
    if missing:
        sys.exit(f"train the folds first (--fold K): missing {', '.join(missing)}")
    cases = [c for k in range(FOLDS) for c in fold_cases(args.data, k)]
    last = cases[-1].split("_")[0]
    final = args.work / "final"
    if not (args.reuse_models and (final / "model.safetensors").is_file()):
        train_model(args, args.data, final, [c for c in cases if c.startswith(last + "_")])
    run(MEDSEG + ["train-classifier", str(final), str(args.data), "--present", "fluid",
                  *[a for f in folds for a in ("--out-of-fold", str(f))], "--out", str(args.work / "referral"),
                  "--overwrite", "--threads", "1"])
    run(MEDSEG + ["train-classifier", str(final), str(args.data), "--present", "fluid", "--out",
                  str(args.work / "referral_insample"), "--overwrite", "--threads", "1"])
    compare_tissue_maps(args.work / "referral", args.work / "referral_insample")


def compare_tissue_maps(out_of_fold: Path, in_sample: Path) -> None:
    """Leave-one-patient-out over the 66 B-scans: the classifier fitted on five patients' out-of-fold or
    in-sample tissue maps, scored on the sixth patient's out-of-fold maps (what a new scan's map is like)."""
    import csv

    from medseg.cascade.model import FEATURES_NAME, read_cascade
    from medseg.metrics.classification import binary_metrics

    def table(folder: Path) -> tuple[dict, dict]:
        with open(folder / FEATURES_NAME, newline="") as fh:
            rows = list(csv.DictReader(fh))
        names = read_cascade(folder)["features"]  # the table also holds the cascade's own probabilities
        return ({r["case"]: {n: float(r[n]) for n in names} for r in rows},
                {r["case"]: int(r["class"] == "fluid") for r in rows})

    oof, truth = table(out_of_fold)
    insample, _ = table(in_sample)
    print("\nclassifier fitted on five patients' tissue maps, scored on the sixth's out-of-fold maps:")
    for name, fit_features in (("out-of-fold maps (--out-of-fold)", oof), ("in-sample maps (final model)", insample)):
        p, decisions, y, _, chosen = nested_classification(oof, truth, fit_features=fit_features)
        m = binary_metrics(y, p)
        print(f"  {name}: AUC {m['auc']:.3f}, ECE {m['ece']:.3f}, Brier {m['brier']:.3f}; at the threshold: "
              f"accuracy {(decisions == y).mean():.3f}, sensitivity {decisions[y == 1].mean():.3f}, specificity "
              f"{1 - decisions[y == 0].mean():.3f}; thresholds {[c[2] for c in chosen]}, models "
              f"{sorted({c[1] for c in chosen})}")


def read_png(path: Path) -> np.ndarray:
    from medseg.io import read_image

    return np.asarray(read_image(path).array[0])


def segmentation_table(args: argparse.Namespace) -> tuple[dict, dict]:
    from medseg.cascade import segmentation_features
    from medseg.io import read_image
    from medseg.metrics import dice
    from medseg.preprocessing.fov import restore_size

    labels = json.loads((args.data / "dataset.json").read_text())["labels"]
    # the fold model's decision threshold (chosen on its validation patient), else the argmax's 0.5
    thresholds = [json.loads((args.work / f"fold{k}" / "config.json").read_text()).get("decision_threshold") or 0.5
                  for k in range(FOLDS)]
    rows, features = {}, {}
    for k in range(FOLDS):
        for c in fold_cases(args.data, k):
            ref = read_png(args.data / "labelsTr" / f"{c}.png")
            fg = np.asarray(read_image(args.work / "pred" / "probabilities" / f"{c}.tif").array[0], np.float32)
            if fg.shape != ref.shape:  # a model trained at --scale: probabilities back to the B-scan's size
                fg = restore_size(fg, ref.shape)
            pred = (fg >= thresholds[k]).astype(np.uint8)
            probs = np.stack([1 - fg, fg])
            rows[c] = {"fold": k, "reference_area": int((ref == 1).sum()), "predicted_area": int((pred == 1).sum()),
                       "dice": dice(pred == 1, ref == 1), "tp": int(((pred == 1) & (ref == 1)).sum())}
            features[c] = segmentation_features(pred, labels, probs)
    return rows, features


def nested_classification(features: dict, truth: dict[str, int], seed: int = 0, criterion: str | None = None,
                          fit_features: dict | None = None) -> tuple[np.ndarray, list]:
    """Leave-one-patient-out: the cascade's own selection + calibration + threshold on five patients
    (their ``fit_features``, by default ``features``), applied to the sixth patient's ``features``."""
    from medseg.cascade import fit_classifier
    from medseg.cascade.classifier import DEFAULT_CRITERION
    from medseg.datasets.splits import case_group

    cases = sorted(features)
    names = list(features[cases[0]])
    X = np.array([[features[c][f] for f in names] for c in cases])
    X_fit = X if fit_features is None else np.array([[fit_features[c][f] for f in names] for c in cases])
    y = np.array([truth[c] for c in cases])
    groups = np.array([case_group(c) for c in cases])
    p, decisions, chosen = np.zeros(len(cases)), np.zeros(len(cases), int), []
    for patient in sorted(set(groups)):
        test = groups == patient
        fit = fit_classifier(X_fit[~test], y[~test], groups[~test], seed=seed, class_names=("no_fluid", "fluid"),
                             feature_names=names, criterion=criterion or DEFAULT_CRITERION)
        p[test] = fit.predict_proba(X[test])
        decisions[test] = p[test] >= fit.threshold["value"]
        chosen.append((patient, fit.name, round(fit.threshold["value"], 3),
                       {n: round(s["log_loss"], 3) for n, s in fit.scores.items()}))
    return p, decisions, y, cases, chosen


def report(args: argparse.Namespace) -> None:
    from medseg.metrics.classification import binary_metrics, bootstrap_intervals

    rows, features = segmentation_table(args)
    cases = sorted(rows)
    with_fluid = [c for c in cases if rows[c]["reference_area"] > 0]
    dices = [rows[c]["dice"] for c in with_fluid]
    tp = sum(rows[c]["tp"] for c in cases)
    pooled = 2 * tp / (sum(rows[c]["reference_area"] + rows[c]["predicted_area"] for c in cases))
    per_fold = [np.mean([rows[c]["dice"] for c in with_fluid if rows[c]["fold"] == k]) for k in range(FOLDS)]
    timings = [json.loads((args.work / f"timing_fold{k}.json").read_text()) for k in range(FOLDS)]
    per_scan = sum(t["predict_seconds"] for t in timings) / sum(t["cases"] for t in timings)
    print(f"\nfluid Dice, out-of-fold: mean over {len(with_fluid)} B-scans with fluid {np.mean(dices):.3f} "
          f"(folds {', '.join(f'{d:.3f}' for d in per_fold)}); pooled over all 66 B-scans {pooled:.3f}; "
          f"`medseg predict` {per_scan:.2f} s per B-scan incl. process start-up")

    truth = {c: int(rows[c]["reference_area"] > 0) for c in cases}
    p, decisions, y, order, chosen = nested_classification(features, truth, criterion=args.criterion)
    threshold_free = binary_metrics(y, p)
    at_thr = {"sensitivity": float(decisions[y == 1].mean()), "specificity": float(1 - decisions[y == 0].mean()),
              "accuracy": float((decisions == y).mean())}
    ci = bootstrap_intervals(y, p, seed=0)
    area = np.array([rows[c]["predicted_area"] for c in order], float)
    area_rule = binary_metrics(y, (area > 0).astype(float), 0.5)
    area_auc = binary_metrics(y, area / area.max(), 0.5)["auc"]
    print(f"B-scan 'fluid present' ({int(y.sum())} with fluid / {int((1 - y).sum())} without), nested "
          f"leave-one-patient-out:\n  cascade classifier: AUC {threshold_free['auc']:.3f} "
          f"[{ci['auc'][0]:.3f}, {ci['auc'][1]:.3f}], ECE {threshold_free['ece']:.3f} "
          f"[{ci['ece'][0]:.3f}, {ci['ece'][1]:.3f}], Brier {threshold_free['brier']:.3f}; at each fold's threshold: "
          f"accuracy {at_thr['accuracy']:.3f}, sensitivity {at_thr['sensitivity']:.3f}, specificity "
          f"{at_thr['specificity']:.3f}")
    print(f"  rule 'predicted fluid area > 0': accuracy {area_rule['accuracy']:.3f}, sensitivity "
          f"{area_rule['sensitivity']:.3f}, specificity {area_rule['specificity']:.3f}; predicted area as score: "
          f"AUC {area_auc:.3f}")
    print("  classifier chosen per held-out patient (patient, model, threshold, CV log loss):")
    for row in chosen:
        print("   ", *row)
    patients = sorted({c.split("_")[0] for c in order})
    for patient in patients:
        sel = np.array([c.startswith(patient) for c in order])
        print(f"  patient {patient}: {int(decisions[sel].sum())}/{int(sel.sum())} B-scans referred "
              f"(reference: {int(y[sel].sum())} with fluid) → patient decision "
              f"{'refer' if decisions[sel].any() else 'routine'}")
    (args.work / "result.json").write_text(json.dumps(
        {"dice_mean_with_fluid": float(np.mean(dices)), "dice_pooled": pooled, "dice_per_fold": per_fold,
         "seconds_per_bscan": per_scan, "classification": threshold_free, "at_threshold": at_thr, "ci": ci,
         "area_rule": area_rule, "chosen": chosen}, indent=2, default=str))
    if not args.skip_cli:
        cli_end_to_end(args, truth)


def cli_end_to_end(args: argparse.Namespace, truth: dict[str, int]) -> None:
    val = set(fold_cases(args.data, 0))
    name = {1: "fluid", 0: "no_fluid"}
    train_csv, test_csv = args.work / "classes_train_fold0.csv", args.work / "classes_test_fold0.csv"
    train_csv.write_text("case,class\n" + "".join(f"{c},{name[v]}\n" for c, v in sorted(truth.items()) if c not in val))
    test_csv.write_text("case,class\n" + "".join(f"{c},{name[v]}\n" for c, v in sorted(truth.items()) if c in val))
    cls, out = args.work / "cascade_fold0", args.work / "cascade_pred_fold0"
    run(MEDSEG + ["train-classifier", str(args.work / "fold0"), str(scaled_dataset(args.data, args.work, args.scale)),
                  "--labels", str(train_csv),
                  "--positive", "fluid", "--out", str(cls), "--overwrite", "--threads", "1"])
    run(MEDSEG + ["predict", str(cls), "-i", str(args.work / "images_fold0"), "-o", str(out), "--report",
                  "--overwrite", "--threads", "1", "--backend", "torch"])
    run(MEDSEG + ["evaluate", str(out), str(test_csv), "--out", str(args.work / "eval_fold0")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/DukeDME"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--fold", type=int, choices=range(FOLDS), help="Train and predict this fold.")
    parser.add_argument("--minutes", type=float, default=5.0, help="Training budget of a fold.")
    parser.add_argument("--scale", type=float, default=1.0, help="Study option: zoom the B-scans by hand for "
                        "training and prediction (the report scores at full size); 1 = the planner's grid.")
    parser.add_argument("--no-validation", action="store_true", help="Study option: train a fold on all four "
                        "of its patients (`medseg train --fold all`: the last weights, p >= 0.5, no choices).")
    parser.add_argument("--reuse-models", action="store_true", help="Do not retrain a fold that has weights.")
    parser.add_argument("--train-option", action="append", default=[], help='Extra `medseg train` arguments '
                        '(e.g. "--net segresnet_vae").')
    parser.add_argument("--report", action="store_true", help="Score the three folds and run the CLI cascade.")
    parser.add_argument("--referral", action="store_true", help="After the folds: the referral cascade for new "
                        "scans (WORK/final trained on all six patients for --minutes, WORK/referral).")
    parser.add_argument("--skip-cli", action="store_true", help="Report without the CLI end-to-end run.")
    parser.add_argument("--criterion", default=None, help="Study option: the cascade's threshold criterion "
                        "(`medseg train-classifier --criterion`; default its default), e.g. youden.")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.fold is not None:
        run_fold(args, args.fold)
    if args.referral:
        referral_model(args)
    if args.report:
        report(args)
    if args.fold is None and not args.report and not args.referral:
        parser.error("give --fold K, --referral or --report")


if __name__ == "__main__":
    main()
