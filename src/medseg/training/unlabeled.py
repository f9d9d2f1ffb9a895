"""Unlabelled training data: which cases are unlabelled, their checks, their preparation and batches.

Unlabelled cases are the dataset's cases without a label file (``"allow_unlabeled": true`` in
dataset.json), the labelled training cases left out of ``--labeled``, and the images of an
``--unlabeled FOLDER``. They go through exactly the preprocessing of labelled cases
(:func:`medseg.preprocessing.grid.to_network_grid`), so both reach the network on the same grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from medseg.errors import MedsegError
from medseg.image import Image
from medseg.losses import IGNORE_INDEX
from medseg.preprocessing.grid import GridLayout, to_network_grid
from medseg.training.data import PreparedCase, make_batch
from medseg.training.sampling import build_sampling_index

# Rule: without a target spacing nothing is resampled, so an unlabelled image whose spacing lies outside
# the labelled cases' range by more than this factor would show the network structures at another scale.
SPACING_FACTOR = 1.5


class UnlabeledSource:
    """One unlabelled case: a name and how to read its image (a dataset case or a folder's files)."""

    def __init__(self, name: str, read: Callable[[], Image], path: Path,
                 read_roi: Callable[[], Image | None] = lambda: None):
        self.name, self.read, self.path, self.read_roi = name, read, path, read_roi


def folder_sources(folder: str | Path) -> list[UnlabeledSource]:
    """The images of a folder as unlabelled cases (``case_0000``, ``case_0001``... stacked as channels)."""
    from medseg.io import SUPPORTED_EXTENSIONS, image_extension, read_image, strip_extension

    folder = Path(folder)
    if not folder.is_dir():
        raise MedsegError("the --unlabeled folder does not exist", folder)
    groups: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or image_extension(path) not in SUPPORTED_EXTENSIONS:
            continue
        stem = strip_extension(path)
        # nnU-Net naming: case_0000, case_0001... are the channels of one case
        case = stem[:-5] if len(stem) > 5 and stem[-5] == "_" and stem[-4:].isdigit() else stem
        groups.setdefault(case, []).append(path)
    if not groups:
        raise MedsegError("the --unlabeled folder holds no images", folder)
    return [UnlabeledSource(name, (lambda files=files: read_image(files)), files[0])
            for name, files in sorted(groups.items())]


def dataset_sources(dataset: Any, names: Sequence[str]) -> list[UnlabeledSource]:
    """Dataset cases used without their labels."""
    out = []
    for name in names:
        case = dataset.case(name)
        out.append(UnlabeledSource(name, case.read_image, case.image_paths[0], case.read_roi))
    return out


def check_unlabeled_image(image: Image, path: Path, channels: int, spatial_dims: int,
                          spacing_range: tuple[np.ndarray, np.ndarray] | None) -> None:
    """One-line error when an unlabelled image does not fit the labelled ones (channels, dims, grid)."""
    if image.num_channels != channels:
        raise MedsegError(f"unlabelled image has {image.num_channels} channel(s); the labelled cases have {channels}",
                          path)
    if image.spatial_dims != spatial_dims:
        raise MedsegError(f"unlabelled image is {image.spatial_dims}D; the labelled cases are {spatial_dims}D", path)
    if spacing_range is not None:
        lower, upper = spacing_range
        spacing = np.asarray(image.spacing, float)
        if np.any(spacing < lower / SPACING_FACTOR) or np.any(spacing > upper * SPACING_FACTOR):
            raise MedsegError(
                f"unlabelled image is on another grid: spacing {tuple(np.round(spacing, 3))} mm, the labelled "
                f"cases {tuple(np.round(lower, 3))}..{tuple(np.round(upper, 3))} mm; give a plan with a "
                "target_spacing (medseg plan) or resample the images", path)


def prepare_unlabeled(source: UnlabeledSource, layout: GridLayout, *, channels: int, spatial_dims: int,
                      spacing_range: tuple[np.ndarray, np.ndarray] | None, dtype: str = "float32") -> PreparedCase:
    """Read, check and bring one unlabelled case onto the network grid with the labelled cases' ``layout``; its
    label is ignore everywhere (a view, no memory)."""
    image = source.read()
    check_unlabeled_image(image, source.path, channels, spatial_dims, spacing_range)
    roi = source.read_roi()
    if roi is None and any(step.get("mask") == "roi" for step in layout.preprocessing):
        raise MedsegError("the preprocessing normalises inside an ROI, and this unlabelled image has none (put it "
                          "into the dataset with its ROI in roisTr/)", source.path)
    if roi is not None:
        image.check_same_geometry(roi, f"unlabelled case '{source.name}': image and ROI")
    pre = to_network_grid(image, layout, roi=roi).image  # the same transform as labelled cases and prediction
    array = np.ascontiguousarray(pre.array, dtype=np.float16 if dtype == "float16" else np.float32)
    label = np.broadcast_to(np.int16(IGNORE_INDEX), (1, *array.shape[1:]))
    index = build_sampling_index(label, ignore_index=IGNORE_INDEX)
    return PreparedCase(source.name, array, label, None, tuple(pre.spacing), index)


def make_unlabeled_batch(cases: Sequence[PreparedCase], iteration: int, *, seed: int, patch_size: Sequence[int],
                         batch_size: int, augment: Callable | None = None, slice_axis: int | None = None,
                         ) -> torch.Tensor:
    """Unlabelled batch ``iteration`` ``(N, C, *P)``: uniform patch centres, the same augmentation as the
    labelled batches, and its own stream of random numbers (``seed`` offset from the labelled one)."""
    image, _ = make_batch(cases, iteration, seed=seed + 7919, patch_size=patch_size, batch_size=batch_size,
                          foreground_share=0.0, augment=augment, label_pad_value=IGNORE_INDEX, slice_axis=slice_axis)
    return image


def split_labeled(dataset: Any, train_names: Sequence[str], val_names: Sequence[str], options: dict[str, Any],
                  seed: int) -> tuple[list[str], Any, list[UnlabeledSource]]:
    """Labelled training cases, the recorded settings, and the unlabelled sources of a semi-supervised run.

    ``options`` holds the :class:`~medseg.training.semi_supervised.SemiSupervisedSettings` fields, with
    ``labeled`` as given on the command line (``N``, names, or empty = every labelled training case).
    Raises a one-line :class:`MedsegError` for zero labelled cases, a case both labelled and unlabelled,
    a validation case without label, or no unlabelled case at all.
    """
    from medseg.training.semi_supervised import SemiSupervisedSettings, select_labeled

    from dataclasses import fields

    options = dict(options)
    unknown = sorted(set(options) - {f.name for f in fields(SemiSupervisedSettings)})
    if unknown:
        raise MedsegError(f"unknown semi-supervised setting(s): {', '.join(unknown)}")
    without_label = {c.name for c in dataset.unlabeled_cases}
    bad_val = sorted(set(val_names) & without_label)
    if bad_val:
        raise MedsegError(f"validation case(s) without a label: {', '.join(bad_val[:5])}", dataset.root)
    candidates = [n for n in train_names if n not in without_label]
    if not candidates:
        raise MedsegError("no labelled training case: semi-supervised training needs at least one", dataset.root)
    requested = options.pop("labeled", None)
    if isinstance(requested, str) and not requested.strip().isdigit():
        requested = [n.strip() for n in requested.split(",") if n.strip()]
    if isinstance(requested, (list, tuple)):
        named_unlabeled = sorted(set(requested) & without_label)
        if named_unlabeled:
            raise MedsegError(f"--labeled names case(s) without a label file: {', '.join(named_unlabeled[:5])}",
                              dataset.root)
    labeled = select_labeled(candidates, requested if requested not in (None, "", []) else candidates, seed)
    unlabeled_names = [n for n in train_names if n not in set(labeled)]
    sources = dataset_sources(dataset, unlabeled_names)
    folder = options.get("unlabeled_folder")
    if folder:
        extra = folder_sources(folder)
        both = sorted({s.name for s in extra} & (set(labeled) | set(val_names)))
        if both:
            raise MedsegError(f"case(s) both labelled (or validation) and in the --unlabeled folder: "
                              f"{', '.join(both[:5])}", Path(folder))
        taken = {s.name for s in sources}
        sources += [s for s in extra if s.name not in taken]
    if not sources and options.get("method") != "none":
        raise MedsegError("no unlabelled case: every training case is labelled and selected; choose fewer with "
                          "--labeled N or add --unlabeled FOLDER", dataset.root)
    options.pop("unlabeled", None)
    settings = SemiSupervisedSettings(labeled=list(labeled), unlabeled=[s.name for s in sources], **options)
    return list(labeled), settings, sources


def set_apart_unlabeled(dataset: Any, semi_supervised: dict[str, Any] | None, seed: int, train_names: Sequence[str],
                        val_names: Sequence[str], named_val: Sequence[str] | None, spatial_dims: int,
                        ) -> tuple[list[str], list[str], dict[str, Any] | None, list[Any]]:
    """Training and validation cases once unlabelled cases are set apart, the recorded settings, and the
    rules that decided the settings the user did not give
    (:func:`medseg.planning.semi_supervised_rules.semi_supervised_rules`).

    Supervised (``semi_supervised`` None): the training cases that have labels. Semi-supervised: the
    ``--labeled`` ones (:func:`split_labeled`), the settings completed with the unlabelled cases.
    Unlabelled cases that a fold put into validation join the training side; a named ``--val-cases``
    case without a label is an error. ``spatial_dims``: the network's (the method rule depends on it).
    """
    without = {c.name for c in dataset.unlabeled_cases}
    if named_val and without & set(named_val):
        raise MedsegError(f"validation case(s) without a label: {', '.join(sorted(without & set(named_val))[:5])}",
                          dataset.root)
    train_names = list(train_names) + [n for n in val_names if n in without]
    val_names = [n for n in val_names if n not in without]
    if semi_supervised is None:
        labeled = [n for n in train_names if n not in without]
        if not labeled:
            raise MedsegError("no training case has a label (use --labeled for semi-supervised training)", dataset.root)
        return labeled, val_names, None, []
    from medseg.planning.semi_supervised_rules import semi_supervised_rules

    semi_supervised, fired = semi_supervised_rules(semi_supervised, spatial_dims)
    if dataset.regions and semi_supervised.get("method") != "none":
        # the consistency and pseudo-label terms are written for one softmax class per voxel
        raise MedsegError("semi-supervised training supports label tasks, not region (sigmoid) tasks", dataset.root)
    labeled, settings, _ = split_labeled(dataset, train_names, val_names, semi_supervised, seed)
    return labeled, val_names, settings.to_dict(), fired


def prepare_unlabeled_cases(dataset: Any, settings: dict[str, Any] | None, train_cases: Sequence[PreparedCase],
                            channels: int, data_dims: int, layout: Any, dtype: str = "float32") -> list[PreparedCase]:
    """The unlabelled cases of a semi-supervised run on the training grid (checked before training).

    ``layout``: the run's :class:`~medseg.training.layout.DataLayout`.
    """
    if settings is None or settings["method"] == "none":
        return []
    folder = folder_sources(settings["unlabeled_folder"]) if settings.get("unlabeled_folder") else []
    in_dataset = {c.name for c in dataset.cases}
    by_name = {s.name: s for s in folder}
    sources = [by_name.get(n) or dataset_sources(dataset, [n])[0] for n in settings["unlabeled"]
               if n in by_name or n in in_dataset]
    spacing_range = None
    if layout.target_spacing is None:
        spacings = np.asarray([c.spacing for c in train_cases], float)
        spacing_range = (spacings.min(0), spacings.max(0))
    return [prepare_unlabeled(s, layout.grid, channels=channels, spatial_dims=data_dims, spacing_range=spacing_range,
                              dtype=dtype) for s in sources]
