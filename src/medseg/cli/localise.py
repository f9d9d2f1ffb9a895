"""``medseg localise DATASET --fine MODEL --out PAIR``: give a trained model a coarse model that finds the
structure first, so that ``medseg predict PAIR`` runs the fine model only inside its box (localise, then
segment; :mod:`medseg.inference.localise`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from medseg.cli import app
from medseg.cli._consoles import err
from medseg.errors import MedsegError

console = err

#: What a pair's copy of the fine model leaves out: the training state (for --resume) and the data cache.
_NOT_COPIED = ("checkpoint_*.pt", "cache")


@app.command()
def localise(
    dataset: Path = typer.Argument(..., help="The dataset the fine model was trained on (with dataset.json)."),
    fine: Path = typer.Option(..., "--fine", help="The trained model folder that segments (the fine model)."),
    out: Path = typer.Option(..., "--out", "-o", help="Pair folder to write: coarse/, fine/ and localise.json."),
    factor: float = typer.Option(4.0, "--factor", help="The coarse model's grid: this many times the fine model's "
                                 "voxel size on every axis."),
    margin_mm: float = typer.Option(10.0, "--margin-mm", help="Margin around the coarse model's box, in mm (voxels "
                                    "where the spacing is unknown)."),
    time_limit: str = typer.Option(None, "--time-limit", help="The coarse model's training budget, e.g. 20m "
                                   "(default: the fine model's plan's budget)."),
    iterations: int = typer.Option(None, "--iterations", help="The coarse model's iteration count."),
    threads: int = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
    force: bool = typer.Option(False, "--force", help="Build the pair even where the localise rule says that it "
                               "does not pay."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing pair folder."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Train a coarse model on the fine model's plan at a FACTOR× coarser grid and store both as one folder
    that `medseg predict` reads like a model folder: the coarse model finds the structure's box, the fine
    model segments inside it (plus the margin), the output is on the input's grid.

    The localise rule decides first, from the fine model's training cases, whether that pays: the
    whole-volume pass must need at least 16 tiles and the structure's box with margin must cover at most
    30 % of the image. Its decision and reason are printed and recorded in PAIR/localise.json; where it
    says no, nothing is trained or written (--force overrides).

    Example: medseg localise data/brats --fine models/brats_1mm --out models/brats_pair --time-limit 15m
    """
    from medseg.cli.guards import check_number
    from medseg.datasets import load_dataset
    from medseg.fileutil import atomic_dir, check_outputs
    from medseg.inference.localise import coarse_plan, dataset_localise_rule, write_localise_folder
    from medseg.io.jsonfile import read_json
    from medseg.model_folder import load_config

    check_number(factor, "--factor", lower=1, lower_open=True)
    check_number(margin_mm, "--margin-mm", lower=0)
    check_number(iterations, "--iterations", lower=1, integer=True)
    config = load_config(fine)
    plan_path = fine / "plan.json"
    if not plan_path.is_file():
        raise MedsegError("the model folder has no plan.json to coarsen (train it with `medseg train`)", fine)
    if config.data_dims != 3:
        raise MedsegError("localise-then-segment is for volumes; this model segments 2D images", fine)
    check_outputs([out], [dataset, fine], "--out")
    if out.exists() and not overwrite:
        raise MedsegError("the pair folder exists; pass --overwrite to replace it", out)
    ds = load_dataset(dataset)
    names = {c.name for c in ds.cases if c.label_path is not None}
    cases = [n for n in config.train_cases if n in names] if config.train_cases else sorted(names)
    if not cases:
        raise MedsegError("none of the fine model's training cases is in this dataset", dataset)
    pays, reason = dataset_localise_rule(ds, config, cases, margin_mm)
    console.print(f"Localise, then segment: {'pays' if pays else 'does not pay'} — {reason}", highlight=False,
                  markup=False)
    if not pays and not force:
        raise MedsegError(f"localising does not pay for this dataset ({reason}): predict with {fine} alone, or "
                          "pass --force", dataset)
    plan = coarse_plan(read_json(plan_path, "plan"), factor)
    with atomic_dir(out) as tmp:
        _train_coarse(ds.root, tmp / "coarse", plan, config.val_cases, time_limit, iterations, threads, progress)
        shutil.copytree(fine, tmp / "fine", ignore=shutil.ignore_patterns(*_NOT_COPIED))
        write_localise_folder(tmp, "coarse", "fine", margin_mm=margin_mm, rule=(pays, reason))
    console.print(f"localise-then-segment folder: [bold]{out}[/] (medseg predict {out} -i ... -o ...)")


def _train_coarse(dataset: Path, out: Path, plan: dict, val_cases: list[str], time_limit: str | None,
                  iterations: int | None, threads: int | None, progress: bool) -> None:
    """The coarse model: ``medseg train`` on the coarsened plan, validating on the fine model's cases."""
    from medseg.cli.train import prepare_backend
    from medseg.training.config import TrainingConfig, parse_duration
    from medseg.training.loop import train

    config = TrainingConfig(time_limit=parse_duration(time_limit), iterations=iterations, threads=threads)
    result = train(dataset, out, config, plan=plan, val_cases=val_cases or None, progress=progress, console=console)
    prepare_backend(result.folder, result.elapsed, console)
