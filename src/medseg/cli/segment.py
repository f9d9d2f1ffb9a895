"""``medseg segment``: run a classical method on any readable image and write a label map on its grid.

Colour input: every method works on one channel. Vesselness methods (frangi, sato) use the green channel
by default — it carries the vessel contrast of fundus photographs; all others stop with an error asking
for ``--channel`` (an index or a channel name).
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer
from rich.table import Table

from medseg.cli import app
from medseg.cli._consoles import out
from medseg.cli._options import parse_key_values
from medseg.errors import MedsegError
from medseg.image import Image


def _parse_seed(text: str) -> tuple[list[float], int | None]:
    point, _, label = text.partition(":")
    try:
        coords = [float(v) for v in point.replace(" ", "").split(",") if v != ""]
        return coords, (int(label) if label else None)
    except ValueError:
        raise MedsegError(f"--seed '{text}' is not 'z,y,x' or 'z,y,x:label' (numbers, array order)") from None


def _select_channel(image, channel: str | None, method: str, default: int | None):
    if image.num_channels == 1:
        if channel not in (None, "0", image.channel_names[0]):
            raise MedsegError(f"--channel {channel}: the input has a single channel")
        return image, None
    if channel is None:
        if default is None:
            raise MedsegError(
                f"the input has {image.num_channels} channels ({', '.join(image.channel_names)}); "
                f"'{method}' needs one: choose it with --channel (index or name)"
            )
        index = default
    elif channel in image.channel_names:
        index = image.channel_names.index(channel)
    else:
        try:
            index = int(channel)
        except ValueError:
            index = -1
        if not 0 <= index < image.num_channels:
            raise MedsegError(
                f"--channel {channel}: no such channel; the input has {', '.join(image.channel_names)}"
            )
    return image.channel(index), index


def build_kwargs(func, *, seeds=None, physical=False, classes=None, threshold=None, sigma=None,
                 polarity=None, roi=None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Map CLI options onto ``func``'s parameters; an option the method does not take is an error."""
    params = inspect.signature(func).parameters
    kwargs: dict[str, Any] = {}
    name = func.__name__.removeprefix("segment_")

    def put(param: str, value: Any, flag: str) -> None:
        if param not in params:
            raise MedsegError(f"{flag}: method '{name}' has no parameter '{param}'")
        kwargs[param] = value

    if seeds:
        points = [p for p, _ in seeds]
        labels = [lab for _, lab in seeds]
        put("seeds", points, "--seed")
        if any(lab is not None for lab in labels):
            if any(lab is None for lab in labels):
                raise MedsegError("--seed: give a label to every seed (z,y,x:label) or to none")
            put("seed_labels", labels, "--seed")
        if physical:
            put("physical", True, "--physical-seeds")
    elif physical:
        raise MedsegError("--physical-seeds given without --seed")
    if classes is not None:
        put("classes", classes, "--classes")
    if threshold is not None:
        put("threshold", threshold, "--threshold")
    if sigma:
        if "sigmas" in params:
            put("sigmas", list(sigma), "--sigma")
        else:
            put("sigma", sigma[0] if len(sigma) == 1 else list(sigma), "--sigma")
    if polarity is not None:
        put("polarity", polarity, "--polarity")
    if roi is not None:
        put("roi", roi, "--roi")
    for key, value in (options or {}).items():
        if key in ("image", "spacing"):
            raise MedsegError(f"--option {key}: set by the command itself")
        put(key, value, f"--option {key}")
    return kwargs


_FLAGS = {"seeds": "--seed z,y,x", "threshold": "--threshold VALUE", "classes": "--classes N",
          "sigma": "--sigma MM", "sigmas": "--sigma MM", "polarity": "--polarity bright|dark", "roi": "--roi FILE"}


def _require_parameters(func, kwargs: dict[str, Any]) -> None:
    """Name the option a method needs (e.g. ``--seed`` for region growing) instead of a Python error."""
    missing = [name for name, p in inspect.signature(func).parameters.items()
               if p.default is inspect.Parameter.empty and name not in kwargs and name not in ("image", "spacing")
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if missing:
        method = func.__name__.removeprefix("segment_")
        needs = ", ".join(_FLAGS.get(m, f"--option {m}=VALUE") for m in missing)
        raise MedsegError(f"method '{method}' needs {needs}")


def _list_methods() -> None:
    from medseg.classical import METHODS

    table = Table(title="classical methods (medseg segment METHOD INPUT -o OUTPUT)")
    for column in ("method", "family", "dims", "seeds", "output"):
        table.add_column(column, no_wrap=True)
    table.add_column("what it does", overflow="fold")
    for entry in METHODS:
        m = entry.metadata
        dims = "/".join(f"{d}D" for d in m.get("dims", (2, 3)))
        table.add_row(entry.name, m.get("family", "-"), dims, m.get("seeds", "no"), m.get("output", "-"),
                      m.get("summary", ""))
    out.print(table)


@app.command()
def segment(
    method: Optional[str] = typer.Argument(None, help="Method name; see --list."),
    input: Optional[Path] = typer.Argument(None, help="Any readable image (NIfTI, MHA, NRRD, DICOM, PNG, TIFF...)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Label map to write (input's geometry)."),
    list_methods: bool = typer.Option(False, "--list", help="List the methods and exit."),
    seed: Optional[list[str]] = typer.Option(None, "--seed", help="Seed 'z,y,x' or 'z,y,x:label' (array order); repeat."),
    physical_seeds: bool = typer.Option(False, "--physical-seeds", help="Seeds are physical points in mm (array-axis order)."),
    classes: Optional[int] = typer.Option(None, "--classes", help="Number of classes (multi_otsu, clustering)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Threshold (threshold; frangi/sato on [0, 1])."),
    channel: Optional[str] = typer.Option(None, "--channel", help="Channel index or name for multi-channel input."),
    sigma: Optional[list[float]] = typer.Option(None, "--sigma", help="Scale(s) in mm; repeat for several."),
    polarity: Optional[str] = typer.Option(None, "--polarity", help="bright or dark object."),
    roi: Optional[Path] = typer.Option(None, "--roi", "--mask", help="Region-of-interest image on the same grid "
                                       "(--mask is the former name)."),
    postprocess: Optional[str] = typer.Option(None, "--postprocess", help="Comma-separated: fill_holes, largest, min_size=N (mm³)."),
    option: Optional[list[str]] = typer.Option(None, "--option", "-O", help="Extra method parameter key=value; repeat."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
) -> None:
    """Segment an image with a classical method (threshold, contours, region growing, clustering, graph,
    vesselness) and write the label map in the input's geometry.

    Example: medseg segment connected_threshold ct.nii.gz -o liver.nii.gz --seed 40,120,96 -O lower=50 -O upper=200
    """
    if list_methods or (method == "list" and input is None):
        _list_methods()
        return
    if method is None or input is None:
        raise MedsegError("usage: medseg segment METHOD INPUT -o OUTPUT, options in --help, methods in --list")
    if output is None:
        raise MedsegError("--output: give the label map to write (-o OUTPUT)")
    from medseg.classical import METHODS
    from medseg.cli.guards import prepare_output_folder, refuse_existing
    from medseg.fileutil import check_outputs
    from medseg.io import read_image, write_image
    from medseg.io.formats import label_output_extension
    from medseg.io.labels import read_label_map
    from medseg.postprocessing import postprocess as run_postprocess

    entry = METHODS.entry(method)
    check_outputs([output], [input] + ([roi] if roi is not None else []), "--output")
    refuse_existing(output, overwrite)
    from medseg.io import image_extension

    if image_extension(output) in (".jpg", ".jpeg"):
        raise MedsegError(f"a label map is never written as {image_extension(output)} (lossy); use "
                          f"{label_output_extension(output)}", output)
    prepare_output_folder(output.parent)  # writable, before any work
    image = read_image(input).check_finite(input)
    single, used = _select_channel(image, channel, entry.name, entry.metadata.get("colour_channel"))
    if used is not None and channel is None:
        out.print(f"colour input: using channel {used} ({image.channel_names[used]}) for {entry.name}")
    roi_array = None
    if roi is not None:
        roi_image = read_label_map(roi, "roi")
        if roi_image.spatial_shape != image.spatial_shape:
            raise MedsegError(f"--roi: shape {roi_image.spatial_shape} differs from the input's {image.spatial_shape}",
                              roi)
        image.check_same_geometry(roi_image, f"--roi {roi} and {input}")
        roi_array = roi_image.array[0] != 0
    options = parse_key_values(option, "--option")
    seeds = [_parse_seed(s) for s in seed or []]
    kwargs = build_kwargs(entry.factory, seeds=seeds, physical=physical_seeds, classes=classes,
                          threshold=threshold, sigma=sigma, polarity=polarity, roi=roi_array, options=options)
    _require_parameters(entry.factory, kwargs)
    steps = [s for s in (postprocess or "").split(",") if s.strip()]
    start = time.perf_counter()
    try:
        labels = entry.factory(single, spacing=single.spacing, **kwargs)
    except TypeError as exc:  # a missing required parameter, e.g. the threshold value
        raise MedsegError(f"{entry.name}: {exc}") from None
    if isinstance(labels, Image):  # given an Image, a method returns one on the same grid
        labels = labels.array[0]
    if steps:
        labels = run_postprocess(labels, steps, spacing=single.spacing)
    elapsed = time.perf_counter() - start
    write_image(image.with_array(labels, channel_names=("label",)), output)
    values, counts = np.unique(labels, return_counts=True)
    summary = ", ".join(f"{int(v)}: {int(c)}" for v, c in zip(values, counts))
    out.print(f"{entry.name}: {elapsed:.2f} s on {image.spatial_shape}; voxels per label {{{summary}}}; wrote {output}")
