"""`medseg evaluate`: score a folder of predictions against ground truth and write reports."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from medseg.cli import app
from medseg.cli.cascade import POSITIVE_HELP
from medseg.errors import MedsegError


def _parse_pairs(items: list[str] | None, option: str, many: bool) -> dict:
    out: dict = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise MedsegError(f"{option} expects name=value{',value...' if many else ''}; got '{item}'")
        try:
            values = [int(v) for v in value.split(",")] if many else int(value)
        except ValueError:
            raise MedsegError(f"{option}: label values must be integers; got '{item}'") from None
        out[name.strip()] = values
    return out


@app.command()
def evaluate(
    pred: Path = typer.Argument(..., help="Folder of predicted label maps (a cascade's output: with classification.csv)."),
    gt: Path = typer.Argument(..., help="Folder of ground-truth label maps (spacing is taken from these), or a class "
                              "file (CSV case,class or JSON \"classes\") to evaluate a cascade's classification only."),
    out: Path = typer.Option(..., "--out", help="Output folder for per_case.csv, summary.json and reports."),
    roi: Optional[Path] = typer.Option(None, "--roi", help="Folder of region-of-interest masks (same names)."),
    probabilities: Optional[Path] = typer.Option(
        None, "--probabilities", help="Folder of probability maps (.npz/.npy/images) for ROC AUC and PR AUC."
    ),
    labels: Optional[List[str]] = typer.Option(
        None, "--labels", help="name=value; repeat the option for several labels."
    ),
    regions: Optional[List[str]] = typer.Option(
        None, "--regions", help="name=v1,v2,...: a label group; repeat for several regions."
    ),
    nsd_tolerance: float = typer.Option(1.0, "--nsd-tolerance", help="Normalised surface Dice tolerance (mm)."),
    workers: int = typer.Option(2, "--workers", min=1, help="Cases evaluated in parallel."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of the input images: adds cases.html, one "
                                          "row per case with a thumbnail (prediction over the image, reference outlined)."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="True class per case (CSV case,class or JSON "
                                           "\"classes\"): also evaluate the cascade's classification.csv in PRED."),
    positive: Optional[List[str]] = typer.Option(None, "--positive", help=POSITIVE_HELP),
    bootstrap: int = typer.Option(2000, "--bootstrap", min=0, help="Classification: bootstrap resamples of the "
                                  "confidence intervals."),
    convention: str = typer.Option("auto", "--convention", help="Empty-mask scoring: medseg (one side empty -> "
                                   "distances inf), brats (Dice 0 / HD95 373.13 mm), auto (brats when the dataset.json declares regions)."),
) -> None:
    """Evaluate predictions against ground truth: overlap, HD95, ASSD, NSD, volumes (and AUCs); a cascade's
    classification (AUC, sensitivity/specificity at its threshold, confusion matrix, calibration, bootstrap
    CIs) when GT is a class file or --classes is given.

    Example: medseg evaluate predictions/ data/drive/labelsTs --out reports/drive --labels vessel=1

    Example: medseg evaluate cascade_results/ classes.csv --out reports/referral

    Example: medseg evaluate referral/ diagnoses.csv --positive CNV --positive DME --out reports/referral
    """
    import math

    from rich.table import Table

    from medseg.cli._consoles import out as stdout_console
    from medseg.cli.guards import check_number
    from medseg.fileutil import check_outputs
    from medseg.metrics.evaluator import evaluate_folders

    check_number(nsd_tolerance, "--nsd-tolerance", lower=0)
    if gt.is_file() or classes is not None:  # a cascade's classification (AUC, calibration, CIs)
        from medseg.cli.cascade import evaluate_classes

        check_outputs([out], [p for p in (pred, gt, classes) if p is not None], "--out")
        evaluate_classes(pred, classes or gt, out, positives=positive, bootstrap=bootstrap)
        if gt.is_file():
            return
    check_outputs([out], [p for p in (pred, gt, roi, probabilities) if p is not None], "--out")
    for folder, option in ((pred, "PRED"), (gt, "GT"), (roi, "--roi"), (probabilities, "--probabilities")):
        if folder is not None and not folder.is_dir():
            raise MedsegError(f"{option}: folder not found" if not folder.exists() else f"{option}: not a folder", folder)

    summary = evaluate_folders(
        pred, gt, out, roi_dir=roi, probabilities_dir=probabilities,
        labels=_parse_pairs(labels, "--labels", many=False), regions=_parse_pairs(regions, "--regions", many=True),
        nsd_tolerance=nsd_tolerance, workers=workers, convention=convention,
    )
    if images is not None:
        from medseg.report.evaluation import write_case_gallery

        write_case_gallery(summary, images, pred, gt)
    shown = [m for m in ("dice", "iou", "hd95", "assd", "nsd", "roc_auc", "pr_auc") if m in summary.metrics]
    table = Table(title=f"Mean over {summary.counts['cases']} cases")
    table.add_column("label")
    for metric in shown:
        table.add_column(metric, justify="right")
    table.add_column("inf", justify="right")  # cases whose distances are inf (one mask empty)
    for label in list(summary.labels) + ["foreground_mean"]:
        stats = summary.statistics[label]
        cells = ["–" if math.isnan(stats[m]["mean"]) else f"{stats[m]['mean']:.4f}" for m in shown]
        table.add_row(label, *cells, str(stats["hd95"].get("n_inf", "")))
    console = stdout_console
    console.print(table)
    unit = "pixels (raster files carry no physical spacing)" if summary.length_unit == "px" else "mm"
    console.print(f"distances in {unit}, averaged over finite values; 'inf' counts cases with an empty mask on one side")
    missing = summary.counts["missing_predictions"]
    if missing:
        console.print(f"[yellow]{len(missing)} missing prediction(s) scored as failures:[/] {', '.join(missing[:10])}")
    orphans = summary.counts["predictions_without_ground_truth"]
    if orphans:
        console.print(f"[yellow]{len(orphans)} prediction(s) without a ground truth, not scored:[/] {', '.join(orphans[:10])}")
    console.print(f"wrote {out / 'per_case.csv'}, {out / 'summary.json'}, {out / 'report.md'}, {out / 'report.html'}")
