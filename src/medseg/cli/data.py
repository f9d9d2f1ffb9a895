"""Data commands: ``medseg convert``, ``medseg check``, ``medseg synth``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.table import Table

from medseg.cli import app
from medseg.cli._consoles import err, out
from medseg.errors import MedsegError


@app.command(no_args_is_help=True)
def convert(
    kind: str = typer.Argument(..., help="Source layout: drive, chase_db1, stare, hrf, folder (or a plug-in)."),
    src: Path = typer.Argument(..., help="Source folder, as distributed."),
    dst: Path = typer.Argument(..., help="New medseg dataset folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace DST if it exists."),
    images: str = typer.Option("images", help="folder: sub-folder holding the images."),
    labels: str = typer.Option("labels", help="folder: sub-folder holding the label maps."),
    rois: str = typer.Option(None, help="folder: optional sub-folder holding region-of-interest masks."),
) -> None:
    """Convert a dataset from its original layout into a medseg dataset (nnU-Net v2 layout + ROIs).

    Example: medseg convert drive ~/data/DRIVE /tmp/drive && medseg check /tmp/drive
    """
    from medseg.datasets.converters import convert_dataset
    from medseg.fileutil import check_outputs

    check_outputs([dst], [src], "DST")
    options = {"images": images, "labels": labels, "rois": rois} if kind.lower() == "folder" else {}
    with out.status(f"converting {src} ({kind}) ..."):
        path = convert_dataset(kind, src, dst, overwrite=overwrite, **options)
    out.print(f"wrote [bold]{path}[/]")


def _fmt(values) -> str:
    return " x ".join(f"{v:g}" for v in values)


def print_report(report) -> None:
    """Render a CheckReport as rich tables (problems, then the summary)."""
    s = report.summary
    root = Path(s["root"])
    for kind, items, style in (("problem", report.problems, "bold red"), ("warning", report.warnings, "yellow")):
        if not items:
            continue
        table = Table(title=f"{len(items)} {kind}(s) in {s['root']}", title_style=style)
        for column in ("case", "file", kind):
            table.add_column(column, overflow="fold")
        for p in items[:200]:
            file = "-" if p.file is None else str(p.file.relative_to(root) if p.file.is_relative_to(root) else p.file)
            table.add_row(p.case or "-", file, p.problem)
        out.print(table)
        if len(items) > 200:
            out.print(f"... and {len(items) - 200} more")
    table = Table(title=f"dataset {s['name']}  ({s['root']})", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    unlabeled = f" ({s['unlabeled_cases']} unlabelled)" if s.get("unlabeled_cases") else ""
    table.add_row("cases", f"{s['training_cases']} training{unlabeled}, {s['test_cases']} test, "
                           f"{s['cases_with_roi']} with ROI")
    table.add_row("channels", ", ".join(s["channel_names"]))
    for key in ("shape", "spacing"):
        if s[key]:
            table.add_row(key, f"min {_fmt(s[key]['min'])}   median {_fmt(s[key]['median'])}   max {_fmt(s[key]['max'])}")
    for name, st in s["intensity"].items():
        table.add_row(f"intensity {name}", f"[{st['min']:.4g}, {st['max']:.4g}]  mean {st['mean']:.4g}  std {st['std']:.4g}")
    for name, st in s["labels"].items():
        table.add_row(f"label {st['value']} {name}", f"{100 * st['fraction']:.3f} % of voxels, in {st['cases']} case(s)")
    if s["roi_fraction_mean"] is not None:
        table.add_row("ROI", f"{100 * s['roi_fraction_mean']:.1f} % of the image on average")
    out.print(table)
    out.print("[bold green]OK[/]: no problems" if report.ok else f"[bold red]{len(report.problems)} problem(s)[/]")


@app.command(no_args_is_help=True)
def check(dataset: Path = typer.Argument(..., help="Dataset folder (with dataset.json).")) -> None:
    """Check every case of a dataset and print its problems and a summary; exit 1 on problems.

    Checks that files exist and open, image/label/ROI grids agree, label values are declared,
    images hold no NaN/Inf, and the channel count matches channel_names.

    Example: medseg check /tmp/drive
    """
    from rich.progress import Progress

    from medseg.datasets.check import check_dataset

    with Progress(transient=True, console=err) as progress:
        task = progress.add_task("checking", total=None)
        report = check_dataset(dataset, progress=lambda done, total, name: progress.update(task, completed=done, total=total))
    print_report(report)
    if not report.ok:
        # SystemExit, not typer.Exit: click (standalone_mode=False) swallows Exit and main() ignores its code.
        raise SystemExit(1)


class Phantom(str, Enum):
    vessels2d = "vessels2d"
    organs3d = "organs3d"
    tumour3d = "tumour3d"


@app.command(no_args_is_help=True)
def synth(
    kind: Phantom = typer.Argument(..., help="vessels2d (fundus-like, PNG), organs3d or tumour3d (NIfTI)."),
    dst: Path = typer.Argument(..., help="New dataset folder."),
    cases: int = typer.Option(8, "--cases", help="Number of training cases."),
    test_cases: int = typer.Option(0, "--test-cases", help="Number of test cases (imagesTs/labelsTs)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same files."),
    size: str = typer.Option(None, "--size", help="vessels2d: N (N x N pixels, default 128); 3D: Z,Y,X (default 32,64,64)."),
    channels: int = typer.Option(1, "--channels", help="organs3d: number of contrasts (1 or 4)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace DST if it exists."),
) -> None:
    """Write a deterministic synthetic dataset (phantoms) for tests, demos and CPU training.

    Example: medseg synth vessels2d /tmp/vessels --cases 20 --seed 0 --size 128
    """
    from medseg.datasets import synthetic

    try:
        dims = [int(v) for v in size.replace("x", ",").split(",")] if size else None
    except ValueError:
        raise MedsegError(f"--size must be N or Z,Y,X; got '{size}'") from None
    if kind is Phantom.vessels2d:
        if dims is not None and len(dims) != 1:
            raise MedsegError(f"vessels2d --size is one number; got '{size}'")
        path = synthetic.make_vessels2d(dst, cases, seed, size=dims[0] if dims else 128, test_cases=test_cases,
                                        overwrite=overwrite)
    else:
        if dims is not None and len(dims) != 3:
            raise MedsegError(f"{kind.value} --size is Z,Y,X; got '{size}'")
        shape = tuple(dims) if dims else (32, 64, 64)
        if kind is Phantom.organs3d:
            path = synthetic.make_organs3d(dst, cases, seed, shape=shape, channels=channels, test_cases=test_cases,
                                           overwrite=overwrite)
        else:
            path = synthetic.make_tumour3d(dst, cases, seed, shape=shape, test_cases=test_cases, overwrite=overwrite)
    out.print(f"wrote [bold]{path}[/] ({cases} training, {test_cases} test cases)")
