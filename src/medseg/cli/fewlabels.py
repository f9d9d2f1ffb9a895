"""Learning from few labels: ``medseg pseudolabel`` (confident pseudo-labels as a training dataset) and
``medseg suggest`` (which unlabelled cases to label next). Semi-supervised training itself is
``medseg train --labeled N [--unlabeled FOLDER] --semi-supervised METHOD``."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import typer

from medseg.cli import app
from medseg.cli._consoles import err
from medseg.cli._options import TTA_AXES_HELP, tta_choice
from medseg.constants import DEFAULT_BACKEND
from medseg.errors import MedsegError

console = err


def _predictor(model: Path, tta: bool, tta_axes: str | None, threads: int | None,
               backend: str = DEFAULT_BACKEND):
    import torch

    from medseg import Predictor

    if threads:
        torch.set_num_threads(int(threads))
    if not (model / "config.json").is_file():
        raise MedsegError("not a model folder (no config.json)", model)
    return Predictor.from_folder(model, tta=tta_choice(tta, tta_axes), backend=backend)


def _cases(inputs: list[Path], channels: int, out: Path | None = None) -> list[tuple[str, list[Path]]]:
    # `-i a b c`: click hands the values after the first over as extra arguments, appended by the callers
    from medseg.cli.predict import collect_inputs

    cases = collect_inputs(inputs, channels)
    if out is not None:
        target = out.resolve()
        for _, paths in cases:
            for p in paths:
                if target == p.resolve() or target in p.resolve().parents:
                    raise MedsegError("the output folder holds an input; outputs never overwrite inputs", p)
    return cases


def _progress(task: str):
    from rich.progress import Progress

    progress = Progress(console=console, transient=True)
    handle = progress.add_task(task, total=None)
    return progress, (lambda done, total, name: progress.update(handle, completed=done, total=total,
                                                                description=f"{task} {name}"))


@app.command(no_args_is_help=True, context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
def pseudolabel(
    ctx: typer.Context,
    model: Path = typer.Argument(..., help="Model folder."),
    inputs: list[Path] = typer.Option(..., "-i", "--input", help="Unlabelled image file(s) or folder(s)."),
    output: Path = typer.Option(..., "-o", "--output", help="Dataset folder to write (imagesTr, labelsTr, "
                                "confidenceTr, dataset.json, pseudolabels.csv)."),
    voxel_threshold: float = typer.Option(0.9, "--voxel-threshold", help="Voxels with confidence (1 - normalised "
                                          "entropy) below it get the ignore label."),
    case_threshold: float = typer.Option(0.0, "--case-threshold", help="Cases whose mean foreground confidence "
                                         "is below it are left out."),
    tta: bool = typer.Option(True, "--tta/--no-tta", help="Average mirrored predictions before the entropy."),
    tta_axes: str = typer.Option(None, "--tta-axes", help=TTA_AXES_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
    threads: int = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
    backend: str = typer.Option(DEFAULT_BACKEND, "--backend", help="As for `medseg predict`: auto, torch, onnx "
                                "or compile."),
) -> None:
    """Pseudo-label unlabelled images: label maps, voxel confidence, and only the confident part kept.

    The output is a dataset that `medseg train` reads (unconfident voxels carry the ignore label).

    Example: medseg pseudolabel models/acdc3 -i unlabelled/ -o pseudo/ --voxel-threshold 0.9
    """
    from medseg.inference.pseudolabel import write_pseudo_dataset

    if output.exists() and not overwrite:
        raise MedsegError("output folder exists; use --overwrite to replace it", output)
    predictor = _predictor(model, tta, tta_axes, threads, backend)
    cases = _cases(inputs + [Path(a) for a in ctx.args], predictor.config.input_channels, output)
    progress, update = _progress("pseudo-labelling")
    with progress:
        rows = write_pseudo_dataset(predictor, cases, output, voxel_threshold=voxel_threshold,
                                    case_threshold=case_threshold, progress=update)
    kept = [r for r in rows if r["kept"]]
    share = sum(r["kept_voxels"] for r in kept) / max(len(kept), 1)
    console.print(f"{len(kept)} of {len(rows)} case(s) kept (case confidence ≥ {case_threshold}); on average "
                  f"{share:.1%} of their voxels reach confidence {voxel_threshold}; dataset: [bold]{output}[/]",
                  highlight=False)


@app.command(no_args_is_help=True, context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
def suggest(
    ctx: typer.Context,
    model: Path = typer.Argument(..., help="Model folder."),
    inputs: list[Path] = typer.Option(..., "-i", "--input", help="Unlabelled image file(s) or folder(s)."),
    count: int = typer.Option(10, "-n", "--count", help="How many cases to suggest."),
    output: Path = typer.Option(None, "-o", "--output", help="CSV file to write (default: standard output)."),
    tta: bool = typer.Option(False, "--tta/--no-tta", help="Average mirrored predictions before the entropy."),
    tta_axes: str = typer.Option(None, "--tta-axes", help=TTA_AXES_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing CSV file."),
    threads: int = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
    backend: str = typer.Option(DEFAULT_BACKEND, "--backend", help="As for `medseg predict`: auto, torch, onnx "
                                "or compile."),
) -> None:
    """Rank unlabelled cases by how much a label would help (uncertainty × diversity), as CSV.

    Columns: rank, case, score, uncertainty, distance, reason, slices (3D: the most uncertain slices).

    Example: medseg suggest models/acdc3 -i unlabelled/ -n 4 -o to_label.csv
    """
    from medseg.fileutil import write_text_atomic
    from medseg.inference.suggest import suggest as rank_cases

    if count < 1:
        raise MedsegError(f"-n must be at least 1, not {count}")
    if output is not None and output.exists() and not overwrite:
        raise MedsegError("output file exists; use --overwrite to replace it", output)
    predictor = _predictor(model, tta, tta_axes, threads, backend)
    cases = _cases(inputs + [Path(a) for a in ctx.args], predictor.config.input_channels)
    if output is not None and any(output.resolve() == p.resolve() for _, paths in cases for p in paths):
        raise MedsegError("the output file is an input; outputs never overwrite inputs", output)
    progress, update = _progress("scoring")
    with progress:
        rows = rank_cases(predictor, cases, count, progress=update)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    if output is None:
        sys.stdout.write(buffer.getvalue())
    else:
        write_text_atomic(output, buffer.getvalue())
        console.print(f"{len(rows)} suggestion(s) of {len(cases)} case(s): [bold]{output}[/]", highlight=False)
