"""``medseg predict MODEL [MODEL...] -i INPUT [INPUT...] -o OUTDIR``: label maps in the inputs' own format
and geometry; several model folders are ensembled (probabilities averaged). OUTDIR/volumes.csv lists the
size of every predicted label (mL in 3D, mm² in 2D), OUTDIR/lesions.json its connected components;
``--report`` adds a clinical HTML report per case."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from medseg.cli import app
from medseg.cli._options import TTA_AXES_HELP, tta_choice
from medseg.errors import MedsegError

if TYPE_CHECKING:
    from medseg.image import Image
    from medseg.model_folder import ModelConfig

console = Console(stderr=True)
VOLUMES_NAME = "volumes.csv"
_CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def _image_files(folder: Path) -> list[Path]:
    from medseg.io import SUPPORTED_EXTENSIONS, image_extension

    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and image_extension(p) in SUPPORTED_EXTENSIONS)


def collect_inputs(paths: list[Path], channels: int) -> list[tuple[str, list[Path]]]:
    """Group input files into cases: ``(case name, [one file per channel] or [one file])``.

    Folders contribute their image files; a DICOM series folder (no image files with known extensions
    inside) is one case. Files named ``case_0000``, ``case_0001``... (nnU-Net layout) are stacked as
    channels when the model takes more than one channel.
    """
    from medseg.io import image_extension, strip_extension
    from medseg.io.formats import DICOM_EXTENSIONS

    files: list[Path] = []
    cases: list[tuple[str, list[Path]]] = []
    for p in paths:
        if p.is_dir():
            inside = _image_files(p)
            if inside and not all(image_extension(f) in DICOM_EXTENSIONS for f in inside):
                files += inside
            else:
                cases.append((p.name, [p]))  # a DICOM series folder: one case
        elif p.is_file():
            files.append(p)
        else:
            raise MedsegError("input not found", p)
    groups: dict[str, list[tuple[int, Path]]] = {}
    for f in files:
        stem = strip_extension(f)
        m = _CHANNEL_SUFFIX.match(stem)
        if m:
            groups.setdefault(m.group("case"), []).append((int(m.group("channel")), f))
        else:
            groups.setdefault(stem, []).append((0, f))
    for name, members in groups.items():
        members.sort()
        if len(members) > 1 and channels == 1:  # not channels: separate single-channel cases
            for _, f in members:
                cases.append((strip_extension(f), [f]))
        else:
            cases.append((name, [f for _, f in members]))
    names = [c for c, _ in cases]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise MedsegError(f"several inputs map to the same case name: {', '.join(dupes[:5])}")
    return cases


def output_extension(first_input: Path) -> str:
    """The input's own extension; DICOM (read-only) becomes .nii.gz."""
    from medseg.io import image_extension
    from medseg.io.formats import DICOM_EXTENSIONS

    ext = image_extension(first_input) if first_input.is_file() else ""
    return ".nii.gz" if not ext or ext in DICOM_EXTENSIONS else ext


def probabilities_extension(ext: str, channels: int) -> str:
    """Float-capable format: the input's for NIfTI/MHA/NRRD; for raster inputs float TIFF (1 or 3 channels)
    or ``.npz`` (key ``probabilities``) otherwise."""
    from medseg.io.formats import RASTER_EXTENSIONS

    if ext in RASTER_EXTENSIONS:
        return ".tif" if channels in (1, 3) else ".npz"
    return ext


def probabilities_for_evaluation(probs: Image, config: ModelConfig) -> Image:
    """Probabilities laid out as the evaluator reads them: channel ``c`` = label value ``c``; a binary
    task keeps only the foreground channel. Region outputs stay one channel per region."""
    import numpy as np

    if config.regions:
        return probs
    values = config.label_values
    if len(values) == 2 and values[0] == 0:
        return probs.with_array(probs.array[1:2], (probs.channel_names[1],))
    if values == list(range(len(values))):
        return probs
    out = np.zeros((max(values) + 1,) + probs.spatial_shape, np.float32)
    out[values] = probs.array
    return probs.with_array(out, [str(v) for v in range(len(out))])


def _probability_channels(config) -> int:
    if config.regions:
        return len(config.regions)
    values = config.label_values
    return 1 if len(values) == 2 and values[0] == 0 else max(values) + 1


def write_probabilities(probs, path: Path) -> None:
    """Write probabilities as an image, or as ``.npz`` (key ``probabilities``) atomically."""
    if path.suffix == ".npz":
        import numpy as np

        from medseg.fileutil import atomic_path

        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, probabilities=probs.array.astype(np.float32),
                                    spacing=np.asarray(probs.spacing), origin=np.asarray(probs.origin),
                                    direction=probs.direction)
        return
    from medseg.io import write_image

    write_image(probs, path)


def _match_rois(rois: list[Path], cases: list[tuple[str, list[Path]]]) -> dict[str, Path]:
    from medseg.io import strip_extension

    if not rois:
        return {}
    files = []
    for r in rois:
        files += _image_files(r) if r.is_dir() else [r]
    by_name = {strip_extension(f): f for f in files}
    out = {}
    for name, _ in cases:
        if name in by_name:
            out[name] = by_name[name]
    if len(out) < len(cases):
        if len(files) == len(cases) and not any(isinstance(r, Path) and r.is_dir() for r in rois):
            return {name: f for (name, _), f in zip(cases, files)}
        missing = [n for n, _ in cases if n not in out]
        raise MedsegError(f"no ROI found for case(s) {', '.join(missing[:5])} (ROI files are matched by case name)")
    return out


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
def predict(
    ctx: typer.Context,
    models: list[Path] = typer.Argument(..., help="Model folder(s); several are ensembled."),
    inputs: list[Path] = typer.Option(..., "-i", "--input", help="Image file(s) or folder(s)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
    probabilities: bool = typer.Option(False, "--probabilities", help="Also write probabilities to "
                                       "OUTDIR/probabilities/<case> (channel c = label value c; binary: foreground "
                                       "only; float TIFF or .npz for raster inputs), ready for `medseg evaluate`."),
    tta: bool = typer.Option(False, "--tta", help="Mirroring test-time augmentation (slower)."),
    tta_axes: str = typer.Option(None, "--tta-axes", help=TTA_AXES_HELP),
    roi: list[Path] = typer.Option(None, "--roi", help="ROI mask file(s) or folder (matched by case name)."),
    largest_component: bool = typer.Option(False, "--largest-component", help="Keep each label's largest component."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    backend: str = typer.Option("torch", "--backend", help="torch (reference), onnx (ONNX Runtime), compile (TorchInductor, compiled once into the model folder; ~1.25× for 3D networks) or auto (compile in 3D, onnx in 2D)."),
    checkpoint: str = typer.Option("final", "--checkpoint", help="final or best weights."),
    overlap: float = typer.Option(None, "--overlap", help="Sliding-window overlap (default: the model's, 0.5)."),
    batch_size: int = typer.Option(4, "--batch-size", help="Tiles per network call."),
    tile_size: str = typer.Option(None, "--tile-size", help="Sliding-window tile, e.g. 512,512 (default: the "
                                  "training patch; larger tiles are faster on CPU)."),
    threads: int = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
    prune_level: str = typer.Option("auto", "--prune-level", help="UNet++ sub-network 1..depth, or auto (the "
                                    "level chosen on the validation cases at training, recorded in pruning.json)."),
    fast: float = typer.Option(None, "--fast", help="Predict on a grid FACTOR times coarser in-plane (e.g. --fast 2: "
                               "~4x fewer pixels in 2D, up to 8x fewer voxels in 3D), then resample to the input "
                               "grid. Faster; loses detail finer than the coarse voxels (thin vessels first)."),
    report: bool = typer.Option(False, "--report", help="Also write OUTDIR/<case>_report.html: overlays, volumes, "
                                "lesions and the model's provenance in one self-contained file."),
    spacing_unknown: bool = typer.Option(False, "--spacing-unknown", help="The inputs' spacing is a placeholder "
                                         "(e.g. PROMISE12 as released): volumes and lesions in voxels."),
) -> None:
    """Predict label maps with a trained model (or an ensemble of model folders).

    Outputs keep the input's format, size, spacing, origin and direction.

    Example: medseg predict model -i test_images/ -o predictions/ --probabilities
    """
    import time

    import torch

    from medseg.inference.predictor import Predictor, label_volumes, write_volumes
    from medseg.measure import LESIONS_NAME, lesions, rows_in_voxels, write_lesions
    from medseg.io import read_image, write_image
    from medseg.model_folder import CONFIG_NAME

    # `-i a.png b.png`: click hands the extra values over as positional arguments; a positional that is
    # not a model folder is an input.
    extra = [Path(a) for a in ctx.args]
    positional = list(models) + extra
    from medseg.inference.localise import LocaliseThenSegment, is_localise_folder

    model_dirs = [p for p in positional if (p / CONFIG_NAME).is_file() or is_localise_folder(p)]
    inputs = list(inputs) + [p for p in positional if p not in model_dirs]
    if not model_dirs:
        raise MedsegError(f"no model folder (with {CONFIG_NAME}) among {', '.join(map(str, positional))}")
    if threads:
        torch.set_num_threads(threads)
    from medseg.training.config import parse_size

    options = dict(checkpoint=checkpoint, backend=backend, tta=tta_choice(tta, tta_axes),
                   largest_component=largest_component, overlap=overlap, batch_size=batch_size,
                   tile_size=parse_size(tile_size) or None, prune_level=prune_level, fast=fast)
    if any(is_localise_folder(p) for p in model_dirs):  # a coarse + fine pair (localise.json)
        if len(model_dirs) > 1 or probabilities:
            raise MedsegError("a localise-then-segment folder predicts labels alone (no ensemble, no --probabilities)",
                              model_dirs[0])
        predictor = LocaliseThenSegment.from_folder(model_dirs[0], **options)
    else:
        predictor = Predictor.from_folders(model_dirs, **options)
    levels = [m.prune_level for m in predictor.models if m.prune_level is not None]
    if levels:
        console.print(f"UNet++ prune level(s): {', '.join(map(str, levels))}", highlight=False)
    cases = collect_inputs(inputs, predictor.config.input_channels)
    if not cases:
        raise MedsegError("no input images found")
    roi_paths = _match_rois(list(roi or []), cases)

    # every output is checked before any work, so a refused run writes nothing
    plan = []
    for name, files in cases:
        ext = output_extension(files[0])
        target = output / f"{name}{ext}"
        prob_ext = probabilities_extension(ext, _probability_channels(predictor.config))
        prob_target = output / "probabilities" / f"{name}{prob_ext}" if probabilities else None
        report_target = output / f"{name}_report.html" if report else None
        for t in (target, prob_target, report_target):
            if t is not None and t.exists() and not overwrite:
                raise MedsegError("output file exists; pass --overwrite to replace it", t)
        plan.append((name, files, target, prob_target))

    output.mkdir(parents=True, exist_ok=True)
    for i, (name, files, target, prob_target) in enumerate(plan, start=1):
        t0 = time.perf_counter()
        image = read_image(files if len(files) > 1 else files[0])
        roi_image: Image | None = read_image(roi_paths[name]) if name in roi_paths else None
        try:
            labels, probs = predictor.predict_with_probabilities(image, roi_image, probabilities=probabilities)
        except MedsegError as exc:
            if exc.path is not None:
                raise
            raise MedsegError(exc.message, files[0]) from None  # name the input the problem is about
        if prob_target is not None and probs is not None:
            write_probabilities(probabilities_for_evaluation(probs, predictor.config), prob_target)
        try:
            write_image(labels, target)
        except BaseException:
            if prob_target is not None:
                prob_target.unlink(missing_ok=True)  # no half-finished case is left behind
            raise
        rows = label_volumes(labels, predictor.config, name)
        if spacing_unknown:
            rows = rows_in_voxels(rows)
        write_volumes(rows, output / VOLUMES_NAME)  # rewritten atomically after every case
        found = lesions(labels, predictor.config.regions, predictor.config.labels,
                        spacing_known=not spacing_unknown, case=name)
        write_lesions([found], output / LESIONS_NAME)
        if report:
            from medseg.report.clinical import write_prediction_report

            notes = [f"input: {', '.join(f.name for f in files)}", f"prediction time {time.perf_counter() - t0:.1f} s"]
            if spacing_unknown:
                notes.append("spacing unknown (stored as a placeholder): sizes in voxels")
            write_prediction_report(image, labels, predictor.config, model_dirs, name, rows, found,
                                    output / f"{name}_report.html", notes)
        line = f"[{i}/{len(plan)}] {name} -> {target} ({time.perf_counter() - t0:.2f} s)"
        if labels.spatial_dims == 3:
            line += "; " + ", ".join(f"{r['label']} {r['volume']:.2f} {r['unit']}" for r in rows)
        console.print(line, highlight=False)
