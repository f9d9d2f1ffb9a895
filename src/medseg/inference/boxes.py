"""Box prompts: checked, and made from a user, a CSV file, a reference label (with MedSAM's jitter) or a
coarse model's connected components.

A box is given in array-index coordinates, inclusive, in array-axis order (``lower = (y0, x0)`` for a 2D
image, ``(z0, y0, x0)`` for a volume); users write ``x0,y0,x1,y1`` (``x`` = last array axis, the image
column), which :func:`parse_box` turns around.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from medseg.errors import MedsegError
from medseg.preprocessing.prompt_frame import FRAME, MEDSAM_JITTER


CSV_COLUMNS = ("case", "label", "x0", "y0", "x1", "y1")  # optional: z0, z1 for volumes


@dataclass(frozen=True)
class BoxPrompt:
    """An axis-aligned box around one structure, its label value and optional points.

    Parameters
    ----------
    lower, upper : tuple of int
        Inclusive corners in array-axis order (2 values for a 2D image, 3 for a volume).
    label : int
        Value written for this structure in the output label map.
    points : tuple of ((y, x) or (z, y, x), point label), optional
        Extra clicks: point label 1 inside the structure, 0 outside.
    """

    lower: tuple[int, ...]
    upper: tuple[int, ...]
    label: int = 1
    points: tuple[tuple[tuple[int, ...], int], ...] = ()

    @property
    def ndim(self) -> int:
        return len(self.lower)


def parse_box(text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``"x0,y0,x1,y1"`` or ``"x0,y0,z0,x1,y1,z1"`` → ``(lower, upper)`` in array-axis order.

    Examples
    --------
    >>> parse_box("10,20,30,40")
    ((20, 10), (40, 30))
    >>> parse_box("1,2,3,4,5,6")
    ((3, 2, 1), (6, 5, 4))
    """
    try:
        values = [int(round(float(v))) for v in text.split(",")]
    except ValueError:
        raise MedsegError(f"box '{text}': expected integers x0,y0,x1,y1 (or x0,y0,z0,x1,y1,z1)") from None
    if len(values) not in (4, 6):
        raise MedsegError(f"box '{text}': expected 4 values x0,y0,x1,y1 or 6 values x0,y0,z0,x1,y1,z1")
    half = len(values) // 2
    return tuple(values[:half][::-1]), tuple(values[half:][::-1])


def parse_point(text: str, ndim: int) -> tuple[tuple[int, ...], int]:
    """``"x,y[,label]"`` (or ``"x,y,z[,label]"`` in 3D) → ``((y, x), label)``; label 1 (inside) by default.

    Examples
    --------
    >>> parse_point("5,7", 2)
    ((7, 5), 1)
    >>> parse_point("5,7,0", 2)
    ((7, 5), 0)
    """
    try:
        values = [int(round(float(v))) for v in text.split(",")]
    except ValueError:
        raise MedsegError(f"point '{text}': expected integers x,y[,label]") from None
    if len(values) not in (ndim, ndim + 1):
        raise MedsegError(f"point '{text}': expected {ndim} coordinates and an optional label (1 inside, 0 outside)")
    label = values[ndim] if len(values) > ndim else 1
    if label not in (0, 1):
        raise MedsegError(f"point '{text}': label must be 1 (inside) or 0 (outside)")
    return tuple(values[:ndim][::-1]), label


def check_box(box: BoxPrompt, spatial_shape: Sequence[int], name: str = "image") -> None:
    """Raise a one-line :class:`MedsegError` for a box that does not fit ``spatial_shape``.

    An inverted box (upper < lower), an empty one (no in-plane extent), a box with another dimensionality
    than the image (a 3D box on a 2D image) and a box reaching outside the image are refused.
    """
    shape = tuple(spatial_shape)
    if box.ndim != len(shape):
        raise MedsegError(f"{box.ndim}D box {_fmt(box)} on a {len(shape)}D image of shape {shape}", name)
    if any(u < lo for lo, u in zip(box.lower, box.upper)):
        raise MedsegError(f"inverted box {_fmt(box)}: each upper corner must be >= the lower one", name)
    if any(u == lo for lo, u in zip(box.lower[-2:], box.upper[-2:])):
        raise MedsegError(f"empty box {_fmt(box)}: it has no width or height", name)
    if any(lo < 0 or u >= s for lo, u, s in zip(box.lower, box.upper, shape)):
        raise MedsegError(f"box {_fmt(box)} reaches outside the image (shape {shape}, x-y-z order "
                          f"{tuple(shape[::-1])})", name)
    for point, _ in box.points:
        if len(point) != len(shape) or any(p < 0 or p >= s for p, s in zip(point, shape)):
            raise MedsegError(f"point {tuple(point[::-1])} (x, y[, z]) lies outside the image {tuple(shape[::-1])}",
                              name)


def _fmt(box: BoxPrompt) -> str:
    return ",".join(str(v) for v in (*box.lower[::-1], *box.upper[::-1]))


def jitter_box(lower: Sequence[int], upper: Sequence[int], spatial_shape: Sequence[int], jitter: int,
               rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Push each in-plane side of a box outwards by 0..``jitter`` pixels of the 256-pixel frame (MedSAM).

    The shift is scaled to the image (``jitter · max(Y, X) / 256`` pixels) and clipped to the image.
    """
    scale = max(spatial_shape[-2:]) / FRAME
    lower, upper = list(lower), list(upper)
    for axis in (-2, -1):
        lower[axis] = max(0, lower[axis] - int(round(rng.integers(0, jitter + 1) * scale)))
        upper[axis] = min(spatial_shape[axis] - 1, upper[axis] + int(round(rng.integers(0, jitter + 1) * scale)))
    return tuple(lower), tuple(upper)


def boxes_from_label_map(label_map: np.ndarray, values: Sequence[int] | None = None, jitter: int = 0,
                         seed: int | None = None, per_component: bool = False, per_slice: bool = False,
                         min_voxels: int = 1) -> list[BoxPrompt]:
    """Boxes around the structures of a label map: a reference (for benchmarks) or a coarse model's output.

    Parameters
    ----------
    label_map : ndarray of int
        ``(Y, X)`` or ``(Z, Y, X)``.
    values : sequence of int, optional
        Label values to box (default: every non-zero value present).
    jitter : int
        MedSAM's perturbation, in pixels of the 256-pixel frame (0 = tight boxes; 5 = LiteMedSAM training).
    seed : int, optional
        Seed of the jitter.
    per_component : bool
        One box per connected component (a coarse model's candidates; 26/8-connectivity) instead of one
        box per label value.
    per_slice : bool
        For a volume: one 2D-extent box per slice (a ``(z, y, x)`` box one slice thick) — the per-slice
        2D protocol — instead of one 3D box.
    min_voxels : int
        Ignore components or slices with fewer voxels (a coarse model's specks).

    Returns
    -------
    list of BoxPrompt

    Examples
    --------
    >>> lab = np.zeros((8, 8), int); lab[2:5, 3:7] = 2
    >>> boxes_from_label_map(lab)
    [BoxPrompt(lower=(2, 3), upper=(4, 6), label=2, points=())]
    """
    label_map = np.asarray(label_map)
    if label_map.ndim not in (2, 3):
        raise MedsegError(f"a label map for boxes must be 2D or 3D, got shape {label_map.shape}")
    present = [int(v) for v in np.unique(label_map) if v != 0]
    values = present if values is None else [int(v) for v in values]
    rng = np.random.default_rng(seed)
    boxes: list[BoxPrompt] = []
    for value in values:
        roi = label_map == value
        if per_component:
            import cc3d

            components = cc3d.connected_components(roi.astype(np.uint8), connectivity=26 if roi.ndim == 3 else 8)
            regions = [components == i for i in range(1, int(components.max()) + 1)]
        else:
            regions = [roi]
        for region in regions:
            if per_slice and region.ndim == 3:
                parts = [(z, region[z]) for z in range(region.shape[0])]
            else:
                parts = [(None, region)]
            for z, part in parts:
                if int(part.sum()) < min_voxels:
                    continue
                idx = np.nonzero(part)
                lower = tuple(int(i.min()) for i in idx)
                upper = tuple(int(i.max()) for i in idx)
                if jitter:
                    lower, upper = jitter_box(lower, upper, part.shape, jitter, rng)
                if z is not None:
                    lower, upper = (z, *lower), (z, *upper)
                boxes.append(BoxPrompt(lower, upper, value))
    return boxes


def read_boxes_csv(path: str | Path) -> dict[str, list[BoxPrompt]]:
    """Boxes per case from a CSV with columns ``case,label,x0,y0,x1,y1`` and optionally ``z0,z1``.

    Returns
    -------
    dict
        case name → list of :class:`BoxPrompt` (in file order).
    """
    path = Path(path)
    if not path.is_file():
        raise MedsegError("boxes file not found", path)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [c for c in CSV_COLUMNS if c not in columns]
        if missing:
            raise MedsegError(f"boxes CSV lacks column(s) {', '.join(missing)}; expected "
                              f"{','.join(CSV_COLUMNS)}[,z0,z1]", path)
        has_z = "z0" in columns and "z1" in columns
        boxes: dict[str, list[BoxPrompt]] = {}
        for line, row in enumerate(reader, start=2):
            try:
                x0, y0, x1, y1 = (int(round(float(row[c]))) for c in ("x0", "y0", "x1", "y1"))
                label = int(row["label"])
                if has_z and row["z0"] not in ("", None):
                    lower, upper = (int(row["z0"]), y0, x0), (int(row["z1"]), y1, x1)
                else:
                    lower, upper = (y0, x0), (y1, x1)
            except (TypeError, ValueError):
                raise MedsegError(f"line {line}: expected integer label and coordinates", path) from None
            if label <= 0:
                raise MedsegError(f"line {line}: label must be a positive integer, got {label}", path)
            boxes.setdefault(row["case"].strip(), []).append(BoxPrompt(lower, upper, label))
    if not boxes:
        raise MedsegError("boxes CSV has no rows", path)
    return boxes


def write_boxes_csv(boxes: dict[str, Sequence[BoxPrompt]], path: str | Path) -> Path:
    """Write boxes per case as the CSV :func:`read_boxes_csv` reads (``z0,z1`` empty for 2D boxes), atomically.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "boxes.csv"
    >>> _ = write_boxes_csv({"c1": [BoxPrompt((2, 3, 4), (2, 9, 8), label=3)]}, out)
    >>> read_boxes_csv(out)["c1"][0]
    BoxPrompt(lower=(2, 3, 4), upper=(2, 9, 8), label=3, points=())
    """
    import io

    from medseg.fileutil import write_text_atomic

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS + ("z0", "z1"))
    for case, case_boxes in boxes.items():
        for b in case_boxes:
            z = (b.lower[0], b.upper[0]) if b.ndim == 3 else ("", "")
            writer.writerow([case, b.label, b.lower[-1], b.lower[-2], b.upper[-1], b.upper[-2], *z])
    write_text_atomic(Path(path), text.getvalue())
    return Path(path)


def boxes_from_label_folder(folder: str | Path, jitter: int = 0, seed: int = 0, per_slice: bool = False,
                            per_component: bool = False, min_voxels: int = 1, values: Sequence[int] | None = None,
                            cases: Sequence[str] | None = None) -> dict[str, list[BoxPrompt]]:
    """Boxes around the structures of every label file in ``folder`` (file name = case name).

    For benchmarks (a reference with MedSAM's jitter, ``jitter=5``) or from a coarse model's saved output
    (``per_component=True``). Each case's jitter is seeded by :func:`case_seed`, so a case gets the same
    boxes whichever other cases are boxed with it.

    Parameters
    ----------
    folder : path
        Label maps (``case.nii.gz``, ``case.png``...).
    jitter, per_slice, per_component, min_voxels, values
        As in :func:`boxes_from_label_map`.
    seed : int
    cases : sequence of str, optional
        Only these cases (all must exist).

    Returns
    -------
    dict
        case → boxes (cases without any labelled voxel are left out).
    """
    from medseg.io import SUPPORTED_EXTENSIONS, image_extension, read_image, strip_extension

    folder = Path(folder)
    if not folder.is_dir():
        raise MedsegError("label folder not found", folder)
    files = {strip_extension(p): p for p in sorted(folder.iterdir())
             if p.is_file() and not p.name.startswith(".") and image_extension(p) in SUPPORTED_EXTENSIONS}
    if cases is not None:
        missing = [c for c in cases if c not in files]
        if missing:
            raise MedsegError(f"no label file for case(s) {', '.join(missing[:5])}", folder)
        files = {c: files[c] for c in cases}
    if not files:
        raise MedsegError("no label files in the folder", folder)
    out: dict[str, list[BoxPrompt]] = {}
    for case, path in files.items():
        label = read_image(path)
        if label.num_channels != 1:
            raise MedsegError(f"a label map has one channel, this file has {label.num_channels}", path)
        found = boxes_from_label_map(np.rint(label.array[0]).astype(np.int64), values=values, jitter=jitter,
                                     seed=case_seed(seed, case), per_component=per_component, per_slice=per_slice,
                                     min_voxels=min_voxels)
        if found:
            out[case] = found
    return out


def case_seed(seed: int, case: str) -> int:
    """A jitter seed per case that does not depend on which other cases are boxed (CRC-32 of the name)."""
    import zlib

    return (int(seed) * 1_000_003 + zlib.crc32(case.encode("utf-8"))) % (2 ** 32)


__all__ = ["BoxPrompt", "CSV_COLUMNS", "MEDSAM_JITTER", "boxes_from_label_map", "case_seed", "check_box", "jitter_box",
           "boxes_from_label_folder", "write_boxes_csv",
           "parse_box", "parse_point", "read_boxes_csv"]
