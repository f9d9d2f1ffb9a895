"""``medseg predict MODEL [MODEL...] -i INPUT [INPUT...] -o OUTDIR``: label maps in the inputs' own format
and geometry; several model folders are ensembled (probabilities averaged). OUTDIR/volumes.csv lists the
size of every predicted label (mL in 3D, mm² in 2D), OUTDIR/lesions.json its connected components;
``--report`` adds a clinical report per case (HTML and PDF). A case whose largest-component step removed a rival
at least half the kept component's size gets a warning line (and one in its report). ``medseg predict CASCADE
[SEG_MODEL]`` runs a cascade (segmentation → measurements → class, OUTDIR/classification.csv)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from medseg.cli import app
from medseg.cli._consoles import err
from medseg.cli._options import TTA_AXES_HELP, tta_choice
from medseg.constants import DEFAULT_BACKEND, TILE_BATCH
from medseg.errors import MedsegError

if TYPE_CHECKING:
    from medseg.image import Image
    from medseg.model_folder import ModelConfig

console = err
VOLUMES_NAME = "volumes.csv"


def _image_files(folder: Path) -> list[Path]:
    from medseg.io import SUPPORTED_EXTENSIONS, image_extension

    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and image_extension(p) in SUPPORTED_EXTENSIONS)


def collect_inputs(paths: list[Path], channels: int) -> list[tuple[str, list[Path]]]:
    """Group input files into cases: ``(case name, [one file per channel] or [one file])``.

    Folders contribute their image files; a DICOM series folder (no image files with known extensions
    inside) is one case, and so is each series folder inside a folder that holds only folders. Files named
    ``case_0000``, ``case_0001``... (nnU-Net layout) are stacked as channels when the model takes more than
    one channel.
    """
    from medseg.io import image_extension, strip_extension
    from medseg.io.cases import split_channel
    from medseg.io.dicom_series import series_folders
    from medseg.io.formats import DICOM_EXTENSIONS

    files: list[Path] = []
    cases: list[tuple[str, list[Path]]] = []
    for p in paths:
        if p.is_dir():
            inside = _image_files(p)
            if inside and not all(image_extension(f) in DICOM_EXTENSIONS for f in inside):
                files += inside
            elif not any(q.is_file() for q in p.iterdir()) and series_folders(p):
                cases += [(s.name, [s]) for s in series_folders(p)]  # a folder of DICOM series folders
            else:
                cases.append((p.name, [p]))  # a DICOM series folder: one case
        elif p.is_file():
            files.append(p)
        else:
            raise MedsegError("input not found", p)
    groups: dict[str, list[tuple[int, Path]]] = {}
    for f in files:
        case, channel = split_channel(strip_extension(f))
        groups.setdefault(case, []).append((channel or 0, f))
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
    """The label map's extension: the input's own when lossless (see :func:`medseg.io.formats.label_output_extension`)."""
    from medseg.io.formats import label_output_extension

    return label_output_extension(first_input)


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
    tta: bool = typer.Option(None, "--tta/--no-tta", help="Mirroring test-time augmentation over the model's mirror "
                             "axes, or none. Default: the model's recorded choice (kept after training where it "
                             "raised the validation Dice; rules.json says why)."),
    tta_axes: str = typer.Option(None, "--tta-axes", help=TTA_AXES_HELP),
    roi: list[Path] = typer.Option(None, "--roi", help="ROI mask file(s) or folder (matched by case name)."),
    largest_component: bool = typer.Option(False, "--largest-component", help="Keep each label's largest component "
                                           "(on top of the model's recorded postprocessing)."),
    postprocessing: bool = typer.Option(True, "--postprocessing/--no-postprocessing", help="Apply the postprocessing "
                                        "recorded in the model folder (chosen on its validation cases)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    backend: str = typer.Option(DEFAULT_BACKEND, "--backend", help="auto (the fastest measured: compile in 3D, onnx in 2D), "
                                "torch (eager, the reference), onnx (ONNX Runtime) or compile (TorchInductor, compiled "
                                "once into the model folder; ~1.25× for 3D networks)."),
    checkpoint: str = typer.Option("final", "--checkpoint", help="final or best weights."),
    overlap: float = typer.Option(None, "--overlap", help="Sliding-window overlap (default: the model's, 0.5)."),
    batch_size: int = typer.Option(TILE_BATCH, "--batch-size", help="Tiles per network call."),
    tile_size: str = typer.Option(None, "--tile-size", help="Sliding-window tile, e.g. 512,512 (default: the "
                                  "model's recorded tile — whole 2D images when they fit — else the training patch)."),
    threads: int = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
    prune_level: str = typer.Option("auto", "--prune-level", help="UNet++ sub-network 1..depth, or auto (the "
                                    "level chosen on the validation cases at training, recorded in pruning.json)."),
    fast: float = typer.Option(None, "--fast", help="Predict on a grid FACTOR times coarser in-plane (e.g. --fast 2: "
                               "~4x fewer pixels in 2D, up to 8x fewer voxels in 3D), then resample to the input "
                               "grid. Faster; loses detail finer than the coarse voxels (thin vessels first)."),
    report: bool = typer.Option(False, "--report", help="Also write OUTDIR/<case>_report.html: overlays, volumes, "
                                "lesions and the model's provenance in one self-contained file, and the same "
                                "content as OUTDIR/<case>_report.pdf."),
    spacing_unknown: bool = typer.Option(False, "--spacing-unknown", help="The inputs' spacing is a placeholder "
                                         "(e.g. PROMISE12 as released): volumes and lesions in voxels."),
    output_format: str = typer.Option("auto", "--format", help="auto (a DICOM SEG for a DICOM series input, the "
                                      "input's format otherwise), image (the input's format; .nii.gz for DICOM) or "
                                      "dicom-seg (CASE.seg.dcm referencing the input series)."),
    codes: Path = typer.Option(None, "--codes", help="DICOM SEG: JSON file of extra label name -> SNOMED CT codes, "
                               "searched before medseg's (format of medseg/io/segment_codes.json)."),
    shard: str = typer.Option(None, "--shard", help="I/N: predict only shard I of N (1 <= I <= N) of the cases, "
                              "sorted by name and dealt round-robin: N array jobs together predict every case once "
                              "(volumes in OUTDIR/volumes.shard-I-of-N.csv)."),
    fov_normalisation: bool = typer.Option(True, "--fov-normalisation/--no-fov-normalisation", help="Models with a "
                                           "recorded field-of-view diameter (fundus): find each image's FOV (or use "
                                           "--roi), rescale it to the training camera's diameter, return outputs at "
                                           "the input's size (default); off: predict at the native size (FOV still found)."),
    workers: int = typer.Option(1, "--workers", help="Worker processes sharing the cores (--threads or all), each "
                                "with its own copy of the model; outputs are identical to a single process run with "
                                "the same threads per process."),
) -> None:
    """Predict label maps with a trained model (or an ensemble of model folders).

    Outputs keep the input's format, size, spacing, origin and direction; a DICOM series folder gives a
    DICOM SEG (CASE.seg.dcm) referencing it. --shard I/N and --workers K split the cases over array jobs
    and over processes. A model with a recorded field of view (fundus) sees every photograph at its
    training camera's FOV diameter; the FOV found in it is written to OUTDIR/roi/ (for `medseg evaluate --roi`). A cascade folder (`medseg train-classifier`) also writes
    OUTDIR/classification.csv: class probability, decision with its threshold, the measurements behind it;
    and OUTDIR/patients.csv: one decision per patient (positive when any of its cases is).

    Example: medseg predict model -i test_images/ -o predictions/ --probabilities

    Example: medseg predict cascade_folder -i scans/ -o results/ --report
    """
    import torch

    from medseg.cli.guards import check_predict_options, prepare_output_folder
    from medseg.fileutil import check_outputs
    from medseg.inference.sharding import map_cases, parse_shard, shard_file_name, shard_items
    from medseg.inference.volumes import write_volumes
    from medseg.io.formats import label_format_note
    from medseg.measure import LESIONS_NAME, write_lesions
    from medseg.training.config import parse_size

    check_predict_options(overlap=overlap, batch_size=batch_size, threads=threads, fast=fast)
    # `-i a.png b.png`: click hands the extra values over as positional arguments
    model_dirs, inputs = _models_and_inputs(list(models) + [Path(a) for a in ctx.args], list(inputs))
    check_outputs([output], inputs + list(roi or []) + model_dirs, "--output")
    if threads:
        torch.set_num_threads(threads)
    predictor_options = dict(checkpoint=checkpoint, backend=backend, tta=tta_choice(tta, tta_axes),
                             largest_component=largest_component, overlap=overlap, batch_size=batch_size,
                             tile_size=parse_size(tile_size) or None, prune_level=prune_level, fast=fast,
                             postprocessing=postprocessing, fov_normalisation=fov_normalisation)
    if any(is_cascade_folder(p) for p in model_dirs):  # segmentation → measurements → class (medseg.cascade)
        _predict_cascade(model_dirs, inputs, output, probabilities=probabilities, report=report, overwrite=overwrite,
                         predictor_options=predictor_options,
                         unsupported=bool(roi or shard or workers != 1 or output_format != "auto"))
        return
    make_predictor = _predictor_factory(model_dirs, probabilities, predictor_options)
    predictor = make_predictor()
    _print_predictor(predictor, backend, fov_normalisation)
    cases = collect_inputs(inputs, predictor.config.input_channels)
    if not cases:
        raise MedsegError("no input images found")
    volumes_path, lesions_path = output / VOLUMES_NAME, output / LESIONS_NAME
    if shard:  # array jobs share OUTDIR: each writes its own tables
        cases = shard_items(cases, *parse_shard(shard), key=lambda case: case[0])
        volumes_path = output / shard_file_name(VOLUMES_NAME, *parse_shard(shard))
        lesions_path = output / shard_file_name(LESIONS_NAME, *parse_shard(shard))
        console.print(f"shard {shard}: {len(cases)} case(s)", highlight=False)
    jobs = _plan_jobs(cases, predictor.config, output, roi_paths=_match_rois(list(roi or []), cases),
                      output_format=output_format, codes=codes, probabilities=probabilities, report=report,
                      spacing_unknown=spacing_unknown, overwrite=overwrite, model_dirs=model_dirs)
    note = label_format_note(jobs[0].files[0])
    if note:
        console.print(note, highlight=False)
    prepare_output_folder(output, probabilities, "roi" if _finds_fov(predictor.config) else None)
    for i, (rows, line, found) in enumerate(map_cases(predict_case, jobs, state=predictor, make_state=make_predictor,
                                                      workers=workers, threads=threads), start=1):
        write_volumes(rows, volumes_path)  # rewritten atomically after every case
        write_lesions([found], lesions_path)
        console.print(f"[{i}/{len(jobs)}] {line}", highlight=False)


def _models_and_inputs(positional: list[Path], inputs: list[Path]) -> tuple[list[Path], list[Path]]:
    """The model folders among the positional arguments; a positional that is not one is an input."""
    from medseg.inference.localise import is_localise_folder
    from medseg.model_folder import CONFIG_NAME

    model_dirs = [p for p in positional if (p / CONFIG_NAME).is_file() or is_localise_folder(p)
                  or is_cascade_folder(p)]
    if not model_dirs:
        raise MedsegError(f"no model folder (with {CONFIG_NAME}) among {', '.join(map(str, positional))}")
    return model_dirs, inputs + [p for p in positional if p not in model_dirs]


def _predict_cascade(model_dirs: list[Path], inputs: list[Path], output: Path, *, probabilities: bool, report: bool,
                     overwrite: bool, predictor_options: dict, unsupported: bool) -> None:
    """A cascade folder, alone or with one segmentation model fine-tuned from its own (CASCADE [SEG_MODEL]);
    ``unsupported``: an option given that a cascade does not take."""
    cascades = [p for p in model_dirs if is_cascade_folder(p)]
    others = [p for p in model_dirs if not is_cascade_folder(p)]
    if len(cascades) > 1 or len(others) > 1 or unsupported:
        raise MedsegError("a cascade folder predicts with its own segmentation model or one fine-tuned from it "
                          "(CASCADE [SEG_MODEL]; no ensemble, --roi, --shard, --workers or --format)", cascades[0])
    _print_fov_rule(others[0] if others else cascades[0], predictor_options["fov_normalisation"])
    predict_cascade_folder(cascades[0], inputs, output, segmentation_model=others[0] if others else None,
                           probabilities=probabilities, overlays=report, overwrite=overwrite, **predictor_options)


def _predictor_factory(model_dirs: list[Path], probabilities: bool, predictor_options: dict):
    """What builds the predictor (again in each ``--workers`` process): an ensemble of model folders, or a
    localise-then-segment pair (localise.json)."""
    from functools import partial

    from medseg.inference.localise import LocaliseThenSegment, is_localise_folder
    from medseg.inference.predictor import Predictor

    if any(is_localise_folder(p) for p in model_dirs):
        if len(model_dirs) > 1 or probabilities:
            raise MedsegError("a localise-then-segment folder predicts labels alone (no ensemble, no --probabilities)",
                              model_dirs[0])
        return partial(LocaliseThenSegment.from_folder, model_dirs[0], **predictor_options)
    return partial(Predictor.from_folders, model_dirs, **predictor_options)


def _print_predictor(predictor, backend: str, fov_normalisation: bool) -> None:
    """The choices a prediction runs with: backend, field of view, recorded postprocessing, UNet++ prune level."""
    from medseg.planning.training_rules import describe, describe_steps

    if backend == "auto":
        from medseg.inference.predictor import auto_backend

        console.print(describe(auto_backend(predictor.config.spatial_dims)), highlight=False, soft_wrap=True)
    _print_fov_rule(predictor.config, fov_normalisation)
    if getattr(predictor, "postprocessing", None):
        console.print(f"postprocessing (recorded): {describe_steps(predictor.postprocessing)}", highlight=False,
                      soft_wrap=True)
    levels = [m.prune_level for m in predictor.models if m.prune_level is not None]
    if levels:
        console.print(f"UNet++ prune level(s): {', '.join(map(str, levels))}", highlight=False)


def _finds_fov(config) -> bool:
    """A fundus model (recorded FOV diameter) finds each photograph's field of view and writes it out."""
    return bool(getattr(config, "fov_diameter", None))


@dataclass(frozen=True)
class CaseJob:
    """One case of ``medseg predict``: its input files and every output, all checked before any work starts."""

    name: str
    files: list[Path]
    target: Path
    probabilities: Path | None
    roi: Path | None
    as_seg: bool
    codes: Path | None
    report: Path | None
    fov: Path | None
    spacing_unknown: bool
    model_dirs: list[Path]


def _plan_jobs(cases: list[tuple[str, list[Path]]], config, output: Path, *, roi_paths: dict[str, Path],
               output_format: str, codes: Path | None, probabilities: bool, report: bool, spacing_unknown: bool,
               overwrite: bool, model_dirs: list[Path]) -> list[CaseJob]:
    """Every case's outputs, checked before any work, so that a refused run writes nothing."""
    from medseg.io.dicom_seg import DICOM_SEG_SUFFIX, load_segment_codes, writes_dicom_seg
    from medseg.io.dicom_series import read_series_grid
    from medseg.io.probabilities import probabilities_extension
    from medseg.report.prediction import pdf_path

    if codes is not None:
        load_segment_codes(codes)  # a malformed code file stops the run here
    jobs = []
    for name, files in cases:
        ext = output_extension(files[0])
        as_seg = writes_dicom_seg(output_format, files[0])
        if files[0].is_dir():
            read_series_grid(files[0])  # a bad series (two series, a missing slice) stops the run before any output
        target = output / (f"{name}{DICOM_SEG_SUFFIX}" if as_seg else f"{name}{ext}")
        prob_ext = probabilities_extension(ext, _probability_channels(config))
        prob_target = output / "probabilities" / f"{name}{prob_ext}" if probabilities else None
        report_target = output / f"{name}_report.html" if report else None
        # the field of view found in a fundus photograph is written beside it, for `medseg evaluate --roi`
        fov_target = output / "roi" / f"{name}{ext}" if _finds_fov(config) and name not in roi_paths else None
        for t in (target, prob_target, report_target, pdf_path(report_target) if report else None, fov_target):
            if t is not None and t.exists() and not overwrite:
                raise MedsegError("output file exists; pass --overwrite to replace it", t)
        jobs.append(CaseJob(name, files, target, prob_target, roi_paths.get(name), as_seg, codes, report_target,
                            fov_target, spacing_unknown, model_dirs))
    return jobs


def is_cascade_folder(path: Path) -> bool:
    """Whether ``path`` is a cascade folder (``medseg train-classifier``'s output)."""
    from medseg.cascade.model import CASCADE_NAME

    return (Path(path) / CASCADE_NAME).is_file()


def predict_cascade_folder(cascade: Path, inputs: list[Path], output: Path, *, segmentation_model: Path | None = None,
                           probabilities: bool = False, overlays: bool = False, overwrite: bool = False,
                           **predictor_options) -> None:
    """What ``medseg predict CASCADE`` does: per case the label map, the class probability, the decision with
    its threshold and the measurements behind it (OUT/classification.csv and .json), optionally the
    probability maps and an overlay PNG; every output is checked before any work."""
    import time

    from medseg.cascade import CascadeModel
    from medseg.cascade.results import (CLASSIFICATION_CSV, PATIENT_RULE, PATIENTS_CSV, result_row, write_overlay,
                                        write_results)
    from medseg.io.probabilities import probabilities_extension, write_probabilities
    from medseg.io import read_image, write_image

    model = CascadeModel.load(cascade, segmentation_model, **predictor_options)
    config = model.predictor.config
    cases = collect_inputs(list(inputs), config.input_channels)
    if not cases:
        raise MedsegError("no input images found")
    plan = []
    for name, files in cases:
        ext = output_extension(files[0])
        targets = {"labels": output / f"{name}{ext}"}
        if probabilities:
            targets["probabilities"] = output / "probabilities" / f"{name}{probabilities_extension(ext, 1)}"
        if overlays:
            targets["overlay"] = output / "overlays" / f"{name}.png"
        for t in list(targets.values()) + [output / CLASSIFICATION_CSV, output / PATIENTS_CSV]:
            if t.exists() and not overwrite:
                raise MedsegError("output file exists; pass --overwrite to replace it", t)
        plan.append((name, files, targets))
    negative, positive = model.record["classes"]
    console.print(f"cascade: {model.record['decision']} ({model.record['classifier']['name']} on "
                  f"{len(model.record['features'])} measurements of the tissue map)", highlight=False, markup=False)
    rows = []
    for i, (name, files, targets) in enumerate(plan, 1):
        t0 = time.perf_counter()
        image = read_image(files if len(files) > 1 else files[0])
        warnings: list[str] = []
        try:
            result = model.predict(image, notes=warnings)
        except MedsegError as exc:
            if exc.path is not None:
                raise
            raise MedsegError(exc.message, files[0]) from None
        output.mkdir(parents=True, exist_ok=True)
        write_image(result.label_map, targets["labels"])
        if "probabilities" in targets and result.probabilities is not None:
            write_probabilities(probabilities_for_evaluation(result.probabilities, config), targets["probabilities"])
        text = f"{name}: P({positive}) = {result.probability:.3f} → {result.decision} (threshold {result.threshold:.3f})"
        if "overlay" in targets:
            write_overlay(image, result.label_map, text, targets["overlay"])
        rows.append(result_row(name, result, positive))
        patients = write_results(rows, model.record, output)  # after every case: an interrupted run keeps its rows
        console.print(f"[{i}/{len(plan)}] {text} ({time.perf_counter() - t0:.2f} s){_warning_lines(warnings)}",
                      highlight=False, markup=False)
    console.print(f"patients ({PATIENT_RULE.format(positive=positive)}):", highlight=False, markup=False)
    for p in patients:
        console.print(f"  {p['patient']}: {p[f'{positive}_cases']}/{p['cases']} case(s) {positive} → {p['decision']}",
                      highlight=False, markup=False)


def _print_fov_rule(model, enabled: bool) -> None:
    """The field-of-view rule of a model with a recorded FOV diameter (a config, or a cascade's folder)."""
    from medseg.planning.device_rules import rule_fov_prediction
    from medseg.planning.training_rules import describe

    if isinstance(model, Path):
        from medseg.cascade import read_cascade
        from medseg.model_folder import CONFIG_NAME, load_config

        model = load_config(model if (model / CONFIG_NAME).is_file()
                            else model / read_cascade(model)["segmentation_model"]["path"])
    rule = rule_fov_prediction(getattr(model, "fov_diameter", None), enabled)
    if rule is not None:
        console.print(describe(rule), highlight=False, soft_wrap=True)


def predict_case(predictor, job: CaseJob) -> tuple[list[dict], str, dict]:
    """One case of ``medseg predict``: read, predict, write (and its report); returns its volume rows, a
    progress line and its lesions (connected components, written to lesions.json by the caller).

    Module-level so that ``--workers`` processes run this very function."""
    import time

    from medseg.cli.guards import require_finite
    from medseg.inference.volumes import label_volumes
    from medseg.io import read_image, write_image
    from medseg.io.dicom_seg import load_segment_codes, write_dicom_seg
    from medseg.io.labels import read_label_map
    from medseg.io.probabilities import write_probabilities
    from medseg.measure import lesions, rows_in_voxels

    name, files, target, prob_target = job.name, job.files, job.target, job.probabilities
    t0 = time.perf_counter()
    image = require_finite(read_image(files if len(files) > 1 else files[0]), files[0])
    roi_image: Image | None = read_label_map(job.roi, "roi") if job.roi is not None else None
    try:
        if job.fov is not None:  # found once here, so that it can be written (medseg.preprocessing.fov)
            from medseg.preprocessing.fov import fov_roi

            roi_image = fov_roi(image)
        warnings: list[str] = []
        labels, probs = predictor.predict_with_probabilities(image, roi_image, probabilities=prob_target is not None,
                                                             notes=warnings)
    except MedsegError as exc:
        if exc.path is not None:
            raise
        raise MedsegError(exc.message, files[0]) from None  # name the input the problem is about
    try:
        if job.fov is not None:
            write_image(roi_image, job.fov)
        if prob_target is not None and probs is not None:
            write_probabilities(probabilities_for_evaluation(probs, predictor.config), prob_target)
        if job.as_seg:
            write_dicom_seg(labels, files[0], target, labels=predictor.config.labels,
                            codes=load_segment_codes(job.codes))
        else:
            write_image(labels, target)
    except BaseException:
        for partial in (prob_target, job.fov):
            if partial is not None:
                partial.unlink(missing_ok=True)  # no half-finished case is left behind
        raise
    rows = label_volumes(labels, predictor.config, name)
    spacing_unknown = job.spacing_unknown or _placeholder_spacing(image, predictor.config)
    if spacing_unknown:
        rows = rows_in_voxels(rows)
    found = lesions(labels, predictor.config.regions, predictor.config.labels,
                    spacing_known=not spacing_unknown, case=name)
    if job.report is not None:
        from medseg.report.prediction import write_prediction_report

        notes = [f"input: {', '.join(f.name for f in files)}", f"prediction time {time.perf_counter() - t0:.1f} s"]
        if spacing_unknown:
            notes.append("spacing unknown (stored as a placeholder): sizes in voxels")
        notes += [f"warning: {w}" for w in warnings]
        write_prediction_report(image, labels, predictor.config, job.model_dirs, name, rows, found, job.report,
                                notes)
    line = f"{name} -> {target} ({time.perf_counter() - t0:.2f} s)"
    if labels.spatial_dims == 3:
        line += "; " + ", ".join(f"{r['label']} {r['volume']:.2f} {r['unit']}" for r in rows)
    return rows, line + _warning_lines(warnings), found


def _warning_lines(warnings: list[str]) -> str:
    """A case's warnings as indented lines under its progress line."""
    return "".join(f"\n  warning: {w}" for w in warnings)


def _placeholder_spacing(image: Image, config: ModelConfig) -> bool:
    """A model trained on volumes whose spacing was lost (its field-extent rule fired) given a volume at
    exactly 1 mm: the same placeholder, so that sizes are reported in voxels without --spacing-unknown."""
    from medseg.image import is_placeholder_spacing

    return bool(config.field_extent) and image.spatial_dims == 3 and is_placeholder_spacing(image.spacing)
