"""Converters from public datasets' original layouts to medseg datasets (nnU-Net v2 layout plus
``roisTr``/``imagesTs``/``labelsTs``/``roisTs``).

A converter is data, not code: a :class:`Layout` says, for each subset (training / test), which files
are the images and how the label and ROI files of a case are named. Adding a public dataset is a few
lines (see DRIVE, CHASE_DB1, STARE, HRF below). Labels and ROIs are binarised (non-zero or, for 0/255
masks, above half the maximum -> 1) and written losslessly as PNG for raster sources.
Third parties add converters through the ``medseg.converters`` entry point group (an object returning
a :class:`Layout`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseg.errors import DatasetError
from medseg.fileutil import atomic_dir
from medseg.io.cases import channel_file_name
from medseg.image import Image
from medseg.io import read_image, write_image
from medseg.io.formats import RASTER_EXTENSIONS, image_extension
from medseg.registry import Registry
from medseg.datasets.dataset import write_dataset_json

__all__ = ["Subset", "Layout", "converters", "convert_dataset", "folder_layout"]


@dataclass
class Subset:
    """How to find one subset's cases.

    Parameters
    ----------
    images : str
        Glob relative to the source folder matching the image files (``"training/images/*.tif"``;
        ``**`` searches sub-folders).
    pattern : str
        Regular expression matched against an image's file name; its named groups fill the templates.
        Files that do not match are skipped.
    label, roi : str, optional
        Glob templates relative to the source folder, formatted with the groups
        (``"training/1st_manual/{id}_manual1.gif"``). Exactly one file must match.
    case : str
        Template of the case name.
    """

    images: str
    pattern: str
    label: str | None = None
    roi: str | None = None
    case: str = "{id}"


@dataclass
class Layout:
    """A source dataset's layout: subsets for training and test, and what its images hold."""

    name: str
    training: Subset
    test: Subset | None = None
    channel_names: list[str] = field(default_factory=lambda: ["R", "G", "B"])
    labels: dict[str, int] = field(default_factory=lambda: {"background": 0, "vessel": 1})
    description: str = ""
    reference: str = ""


converters = Registry("converter", entry_point_group="medseg.converters")

converters.add("drive", lambda: Layout(
    "DRIVE",
    Subset("training/images/*.tif", r"^(?P<id>\d+)_training\.tif$", "training/1st_manual/{id}_manual1.gif",
           "training/mask/{id}_training_mask.gif", "drive_{id}"),
    Subset("test/images/*.tif", r"^(?P<id>\d+)_test\.tif$", "test/1st_manual/{id}_manual1.gif",
           "test/mask/{id}_test_mask.gif", "drive_{id}"),
    description="DRIVE retinal vessels; labels from 1st_manual; ROI = field-of-view mask",
    reference="Staal et al., IEEE TMI 23(4):501-509, 2004",
), description="DRIVE: training|test/images/*.tif, 1st_manual/*_manual1.gif, mask/*_mask.gif")

converters.add("chase_db1", lambda: Layout(
    "CHASE_DB1",
    Subset("**/Image_*.jpg", r"^Image_(?P<id>\d+[LR])\.jpg$", "**/Image_{id}_1stHO.png", None, "chase_{id}"),
    description="CHASE_DB1 retinal vessels (first observer); no field-of-view masks are distributed",
    reference="Fraz et al., IEEE TBME 59(9):2538-2548, 2012",
), description="CHASE_DB1: Image_01L.jpg with Image_01L_1stHO.png")

converters.add("stare", lambda: Layout(
    "STARE",
    Subset("**/im*.ppm", r"^im(?P<id>\d{4})\.ppm$", "**/im{id}.ah.ppm", None, "stare_{id}"),
    description="STARE retinal vessels (Hoover's labels, .ah); decompress the .ppm.gz files first",
    reference="Hoover et al., IEEE TMI 19(3):203-210, 2000",
), description="STARE: im0001.ppm with im0001.ah.ppm")

converters.add("hrf", lambda: Layout(
    "HRF",
    Subset("**/images/*.*", r"^(?P<id>\d+_(?:dr|g|h))\.(?:jpe?g|JPE?G)$", "**/manual1/{id}.tif", "**/mask/{id}_mask.tif",
           "hrf_{id}"),
    description="High-Resolution Fundus (healthy, glaucoma, diabetic retinopathy); ROI = field-of-view mask",
    reference="Budai et al., Int J Biomed Imaging 2013:154860",
), description="HRF: images/01_h.jpg, manual1/01_h.tif, mask/01_h_mask.tif")


def folder_layout(images: str = "images", labels: str = "labels", rois: str | None = None,
                  channel_names: list[str] | None = None, label_names: dict[str, int] | None = None) -> Layout:
    """A generic layout: ``images/<name>.<ext>`` with ``labels/<name>.<any ext>`` (and optional
    ``rois/<name>.<any ext>``), matched by file name without extension."""
    return Layout(
        "folder",
        Subset(f"{images}/*", r"^(?P<id>.+?)(\.nii\.gz|\.[A-Za-z0-9]+)$", f"{labels}/{{id}}.*",
               f"{rois}/{{id}}.*" if rois else None, "{id}"),
        channel_names=channel_names or [],
        labels=label_names or {},
        description="converted from image/label folders",
    )


converters.add("folder", folder_layout, description="generic: images/ and labels/ (optional rois/) matched by name")


def _one(src: Path, template: str, groups: dict, what: str, image: Path) -> Path:
    pattern = template.format(**{k: glob_escape(v) for k, v in groups.items()})
    matches = sorted(p for p in src.glob(pattern) if p.is_file() and not p.name.startswith("."))
    if not matches:
        raise DatasetError(f"no {what} file matching '{pattern}' for image {image.name}", src)
    if len(matches) > 1:
        raise DatasetError(f"{len(matches)} {what} files match '{pattern}' for {image.name}: "
                           f"{', '.join(p.name for p in matches[:4])}", src)
    return matches[0]


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", str(text))


def _find_cases(src: Path, subset: Subset) -> list[tuple[str, Path, Path | None, Path | None]]:
    regex = re.compile(subset.pattern)
    found = []
    for image in sorted(src.glob(subset.images)):
        match = regex.match(image.name)
        if not image.is_file() or image.name.startswith(".") or not match:
            continue
        groups = {k: v for k, v in match.groupdict().items() if v is not None}
        label = _one(src, subset.label, groups, "label", image) if subset.label else None
        roi = _one(src, subset.roi, groups, "roi", image) if subset.roi else None
        found.append((subset.case.format(**groups), image, label, roi))
    names = [c[0] for c in found]
    if len(set(names)) != len(names):
        raise DatasetError(f"several images give the same case name in '{subset.images}'", src)
    return found


def _binary(image: Image, path: Path) -> Image:
    """A 0/1 uint8 mask from a mask file (0/255 grey, 0/1, or RGB)."""
    array = image.array.max(axis=0, keepdims=True) if image.num_channels > 1 else image.array
    top = float(array.max()) if array.size else 0.0
    if top <= 0:
        return image.with_array(np.zeros_like(array, dtype=np.uint8), ("mask",))
    threshold = 0.0 if top <= 1 else top / 2  # 0/1 masks, or 0/255 (and JPEG-blurred 0/255) masks
    return image.with_array((array > threshold).astype(np.uint8), ("mask",))


def convert_dataset(kind: str, src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False,
                    **options) -> Path:
    """Convert a dataset from its original layout into a medseg dataset folder.

    Parameters
    ----------
    kind : str
        A registered converter: ``drive``, ``chase_db1``, ``stare``, ``hrf``, ``folder``, or a plug-in.
    src : path
        The source folder, as distributed.
    dst : path
        The new dataset folder; written atomically (nothing appears unless conversion succeeds).
    overwrite : bool
        Replace an existing ``dst``.
    **options
        Passed to the converter (``folder``: images, labels, rois, channel_names, label_names).

    Returns
    -------
    Path
        ``dst``.

    Examples
    --------
    >>> convert_dataset("drive", "DRIVE", "/tmp/drive")  # doctest: +SKIP
    PosixPath('/tmp/drive')
    """
    src, dst = Path(src), Path(dst)
    layout: Layout = converters.get(kind)(**options)
    if not src.is_dir():
        raise DatasetError("source folder not found", src)
    if dst.exists() and not overwrite:
        raise DatasetError("output folder exists; pass --overwrite to replace it", dst)
    if dst.resolve() == src.resolve():
        raise DatasetError("output folder must differ from the source", dst)
    training = _find_cases(src, layout.training)
    test = _find_cases(src, layout.test) if layout.test else []
    if not training:
        raise DatasetError(f"no training images matching '{layout.training.images}' "
                           f"(pattern {layout.training.pattern}) for {layout.name}", src)
    raster = image_extension(training[0][1]) in RASTER_EXTENSIONS
    ending = ".png" if raster else ".nii.gz"
    channel_names = list(layout.channel_names)
    label_values: set[int] = set()
    with atomic_dir(dst) as tmp:
        for sub, cases in (("Tr", training), ("Ts", test)):
            for name, image_path, label_path, roi_path in cases:
                image = read_image(image_path)
                if not channel_names:
                    channel_names = list(image.channel_names) if image.num_channels > 1 else ["image"]
                if image.num_channels != len(channel_names):
                    raise DatasetError(f"has {image.num_channels} channels, expected {len(channel_names)}", image_path)
                write_image(image, tmp / f"images{sub}" / channel_file_name(name, 0, ending))
                for folder, path in ((f"labels{sub}", label_path), (f"rois{sub}", roi_path)):
                    if path is None:
                        continue
                    mask = read_image(path)
                    # ROIs and two-class labels are binarised (0/255 -> 0/1); multi-class labels kept as stored.
                    if folder.startswith("rois") or len(layout.labels) == 2:
                        mask = _binary(mask, path)
                    elif mask.num_channels != 1:
                        raise DatasetError(f"a label map must have one channel; this has {mask.num_channels}", path)
                    diff = image.geometry_difference(mask)
                    if diff is not None:
                        raise DatasetError(f"does not match its image {image_path.name}: {diff}", path)
                    if folder.startswith("labels"):
                        label_values.update(np.unique(mask.array).tolist())
                    write_image(mask.with_array(mask.array, ("mask",)), tmp / folder / f"{name}{ending}")
        labels = dict(layout.labels) or {"background": 0, **{f"label{v}": int(v) for v in sorted(label_values) if v}}
        write_dataset_json(tmp, name=layout.name, channel_names=channel_names, labels=labels, file_ending=ending,
                           num_training=len(training), numTest=len(test), description=layout.description,
                           reference=layout.reference, converted_from=str(src.resolve()))
    return dst
