"""Fundus photographs from another camera: the field of view found, the image seen at the training FOV size.

- ``medseg fov-record MODEL DATASET``: measure the training images' FOV diameter (their ROI masks where
  the dataset has them, else the FOV found in them) and record it in MODEL/fov.json
- ``medseg predict-fov MODEL -i IN -o OUT``: find each image's FOV, zoom it to the recorded diameter,
  predict, write label maps (and probabilities) at the input's size and the found FOV in OUT/fov/
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from medseg.cli import app
from medseg.cli._consoles import err
from medseg.errors import MedsegError

console = err


@app.command("fov-record")
def fov_record(
    model: Path = typer.Argument(..., help="Model folder trained on fundus photographs."),
    dataset: Path = typer.Argument(..., help="Its training dataset."),
) -> None:
    """Record the training images' field-of-view diameter in MODEL/fov.json (median over the model's
    training cases: their ROI masks where present, else the FOV found in the image).

    Example: medseg fov-record models/drive data/drive
    """
    import numpy as np

    from medseg.datasets import load_dataset
    from medseg.inference.fov import save_fov_diameter, training_fov_diameter
    from medseg.model_folder import load_config

    config = load_config(model)
    ds = load_dataset(dataset)
    names = set(config.train_cases) or {c.name for c in ds.cases}
    cases = [c for c in ds.cases if c.name in names]
    if not cases:
        raise MedsegError("none of the model's training cases is in this dataset", dataset)
    images, rois = [], []
    for case in cases:
        images.append(case.read_image().array)
        roi = case.read_roi()
        rois.append(np.asarray(roi.array[0]) != 0 if roi is not None else None)
    diameter = training_fov_diameter(images, rois)
    source = f"median aperture diameter of {len(cases)} training case(s) of {dataset.name} " + \
        ("(ROI masks)" if all(r is not None for r in rois) else "(FOV found in the images where no ROI)")
    path = save_fov_diameter(model, diameter, source)
    console.print(f"training FOV diameter {diameter:.1f} px ({source}) -> {path}", highlight=False, markup=False)


@app.command("predict-fov")
def predict_fov(
    model: Path = typer.Argument(..., help="Model folder (with fov.json, or pass --fov-diameter)."),
    inputs: List[Path] = typer.Option(..., "-i", "--input", help="Image file(s) or folder(s)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
    fov_diameter: Optional[float] = typer.Option(None, "--fov-diameter", help="Training FOV diameter in pixels "
                                                 "(default: the model's fov.json)."),
    probabilities: bool = typer.Option(False, "--probabilities", help="Also write probabilities."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
) -> None:
    """Predict on fundus photographs of another camera at the training camera's FOV diameter; outputs at
    the input's size, the found FOV in OUT/fov/<case>.png.

    Example: medseg predict-fov models/drive -i stare/ -o stare_pred/ --probabilities
    """
    import time

    import numpy as np

    from medseg.cli.predict import collect_inputs, output_extension, probabilities_for_evaluation
    from medseg.io.probabilities import probabilities_extension, write_probabilities
    from medseg.inference.fov import FovNormalisedPredictor, load_fov_diameter
    from medseg.inference.predictor import Predictor
    from medseg.io import read_image, write_image
    from medseg.preprocessing.fov import find_fov

    if threads:
        import torch

        torch.set_num_threads(threads)
    diameter = fov_diameter or load_fov_diameter(model)
    if diameter is None:
        raise MedsegError("no fov.json: run `medseg fov-record MODEL DATASET` or pass --fov-diameter", model)
    predictor = FovNormalisedPredictor(Predictor.from_folder(model), diameter)
    cases = collect_inputs(list(inputs), predictor.config.input_channels)
    if not cases:
        raise MedsegError("no input images found")
    plan = []
    for name, files in cases:
        ext = output_extension(files[0])
        targets = [output / f"{name}{ext}", output / "fov" / f"{name}.png"]
        if probabilities:
            targets.append(output / "probabilities" / f"{name}{probabilities_extension(ext, 1)}")
        for t in targets:
            if t.exists() and not overwrite:
                raise MedsegError("output file exists; pass --overwrite to replace it", t)
        plan.append((name, files, targets))
    for i, (name, files, targets) in enumerate(plan, 1):
        t0 = time.perf_counter()
        image = read_image(files if len(files) > 1 else files[0])
        fov = find_fov(image.array, name=str(files[0]))
        roi = image.with_array(fov[None].astype(np.uint8), ("roi",))
        labels, probs = predictor.predict_with_probabilities(image, roi, probabilities=probabilities)
        write_image(labels, targets[0])
        write_image(roi, targets[1])
        if probabilities and probs is not None:
            write_probabilities(probabilities_for_evaluation(probs, predictor.config), targets[2])
        console.print(f"[{i}/{len(plan)}] {name} -> {targets[0]} (zoom {diameter / (2 * _radius(fov)):.3f}, "
                      f"{time.perf_counter() - t0:.2f} s)", highlight=False, markup=False)


def _radius(fov) -> float:
    from medseg.preprocessing.fov import fit_fov_circle

    return fit_fov_circle(fov)[2]
