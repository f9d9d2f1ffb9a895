"""Sparse-annotation datasets from dense ones, for experiments with a few labelled slices per volume.

:func:`sparsify_dataset` copies a dataset and keeps, in every training label map, only
``slices_per_volume`` slices along ``axis``; every other voxel gets the *ignore* label, which training
excludes from the loss (nnU-Net v2 convention: dataset.json ``labels`` gains ``"ignore"`` with the
highest value). Test cases are copied unchanged (evaluation stays dense).

Which slices: for each case, ``slices_per_volume`` slices drawn without replacement from the slices
that contain foreground (an annotator labels slices that show the structure); when a case has fewer
such slices, the rest are drawn from the other slices. The draw is seeded by ``seed`` and the case
name, so it is deterministic and independent of case order. The chosen indices are recorded in
``sparse_slices.json`` in the new dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import DatasetError, MedsegError
from medseg.fileutil import atomic_dir
from medseg.io.jsonfile import read_json
from medseg.image import Image

IGNORE_NAME = "ignore"


def choose_slices(label: np.ndarray, slices_per_volume: int, axis: int, rng: np.random.Generator,
                  ignore_value: int | None = None) -> list[int]:
    """Indices of the slices to keep along ``axis`` of a spatial label array (see module docstring)."""
    n = label.shape[axis]
    k = min(int(slices_per_volume), n)
    other = tuple(a for a in range(label.ndim) if a != axis)
    fg = label > 0
    if ignore_value is not None:
        fg &= label != ignore_value
    has_fg = fg.any(axis=other)
    with_fg = np.flatnonzero(has_fg)
    chosen = list(rng.choice(with_fg, size=min(k, with_fg.size), replace=False)) if with_fg.size else []
    if len(chosen) < k:
        rest = np.flatnonzero(~has_fg)
        chosen += list(rng.choice(rest, size=k - len(chosen), replace=False))
    return sorted(int(i) for i in chosen)


def sparsify_label(label: Image, slices: list[int], axis: int, ignore_value: int) -> Image:
    """``label`` with every voxel outside ``slices`` (along spatial ``axis``) set to ``ignore_value``."""
    array = label.array
    dtype = array.dtype
    if np.issubdtype(dtype, np.integer) and ignore_value > np.iinfo(dtype).max:
        dtype = np.int32
    out = np.full(array.shape, ignore_value, dtype=dtype)
    index = [slice(None)] * array.ndim
    index[axis + 1] = slices
    out[tuple(index)] = array[tuple(index)]
    return label.with_array(out, label.channel_names)


def _copy(src: Path, root: Path, dst_root: Path) -> None:
    try:
        rel = src.resolve().relative_to(root.resolve())
    except ValueError:
        raise DatasetError("file lies outside the dataset folder; cannot copy it into the new dataset", src) from None
    target = dst_root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, target)


def sparsify_dataset(dataset: Any, dst: str | os.PathLike, slices_per_volume: int = 3, axis: int = 0, seed: int = 0,
                     ignore_value: int | None = None, overwrite: bool = False) -> Path:
    """Write a copy of ``dataset`` whose training labels keep only a few slices per volume.

    Parameters
    ----------
    dataset : Dataset
        From :func:`medseg.datasets.load_dataset`.
    dst : path
        New dataset folder; appears only when complete.
    slices_per_volume : int
        Annotated slices kept per training volume.
    axis : int
        Spatial array axis across which slices are taken (0 = the first spatial axis, the slice axis
        of most NIfTI volumes).
    seed : int
        Same seed, same slices.
    ignore_value : int, optional
        Value of the ignore label; default one above the largest label value (or the dataset's
        existing ignore label).
    overwrite : bool
        Replace an existing ``dst``.

    Returns
    -------
    Path
        ``dst``.

    Examples
    --------
    >>> import tempfile
    >>> from medseg.datasets import load_dataset, make_organs3d
    >>> tmp = tempfile.mkdtemp()
    >>> ds = load_dataset(make_organs3d(tmp + "/dense", cases=2, shape=(8, 16, 16)))
    >>> sparse = load_dataset(sparsify_dataset(ds, tmp + "/sparse", slices_per_volume=2))
    >>> sparse.ignore_label
    4
    """
    from medseg.io import write_image

    dst = Path(dst)
    root = Path(dataset.root)
    if slices_per_volume < 1:
        raise MedsegError(f"slices_per_volume must be at least 1; got {slices_per_volume}")
    if dst.exists() and not overwrite:
        raise MedsegError("destination exists (choose another folder or pass overwrite)", dst)
    if dst.resolve() == root.resolve():
        raise MedsegError("destination is the source dataset; sparsify writes a new dataset", dst)
    values = set(dataset.labels.values()) | {v for m in (dataset.regions or {}).values() for v in m}
    existing = dataset.ignore_label
    if ignore_value is None:
        ignore_value = existing if existing is not None else max(values) + 1
    if ignore_value in values or ignore_value <= max(values):
        raise MedsegError(f"ignore_value {ignore_value} must be above every label value (max {max(values)})")
    if existing is not None and ignore_value != existing:
        raise MedsegError(f"the dataset already has ignore label {existing}; ignore_value {ignore_value} differs")

    record: dict[str, list[int]] = {}
    with atomic_dir(dst) as tmp:
        for case in dataset.cases:
            for path in case.image_paths + ([case.roi_path] if case.roi_path else []):
                _copy(Path(path), root, tmp)
            if case.label_path is None:
                continue
            label = case.read_label()
            if not 0 <= axis < label.spatial_dims:
                raise MedsegError(f"axis {axis} does not exist in {label.spatial_dims}D label maps")
            rng = np.random.default_rng([seed, zlib.crc32(case.name.encode())])
            slices = choose_slices(label.array[0], slices_per_volume, axis, rng, existing)
            record[case.name] = slices
            target = tmp / Path(case.label_path).resolve().relative_to(root.resolve())
            target.parent.mkdir(parents=True, exist_ok=True)
            write_image(sparsify_label(label, slices, axis, ignore_value), target)
        for case in getattr(dataset, "test_cases", []):
            for path in case.image_paths + [p for p in (case.label_path, case.roi_path) if p]:
                _copy(Path(path), root, tmp)
        raw = read_json(root / "dataset.json", "dataset description", dict, DatasetError) \
            if (root / "dataset.json").is_file() else dict(dataset.raw)
        labels = dict(raw.get("labels", {}))
        msd = isinstance(raw.get("training"), list)
        if msd:  # MSD: value -> name
            labels = {k: v for k, v in labels.items() if v != IGNORE_NAME}
            labels[str(ignore_value)] = IGNORE_NAME
        else:
            labels.pop(IGNORE_NAME, None)
            labels[IGNORE_NAME] = int(ignore_value)
        raw["labels"] = labels
        raw["sparse_annotation"] = {"source": str(root), "slices_per_volume": int(slices_per_volume),
                                    "axis": int(axis), "seed": int(seed), "ignore_label": int(ignore_value)}
        (tmp / "dataset.json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
        (tmp / "sparse_slices.json").write_text(json.dumps({"axis": int(axis), "slices": record}, indent=1) + "\n", encoding="utf-8")
        if dataset.splits_path is not None and Path(dataset.splits_path).is_file():
            shutil.copy2(dataset.splits_path, tmp / Path(dataset.splits_path).name)
    return dst
