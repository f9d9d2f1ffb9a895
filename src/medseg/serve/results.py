"""What a finished job leaves in its folder, and the viewer's preview of it.

One job folder (named by the server) holds:

- ``labels.nii.gz``: the label map on the input's exact grid (lossless geometry);
- ``labels.png``: the same label map for a 2D input (PNG keeps no geometry: pixel values are label values);
- ``labels.dcm``: a DICOM Segmentation for a DICOM input, when :mod:`medseg.io.dicom_seg` is installed;
- ``volumes.json`` (:func:`medseg.inference.volumes.label_volumes`) and ``lesions.json``
  (:func:`lesion_table`: :func:`medseg.measure.lesions` in the shape of ``GET /jobs/{id}/lesions``);
- ``preview_image.npy`` / ``preview_labels.npy`` / ``preview.json``: 8-bit slices for the viewer (grey or
  RGB image; labels as indices into the model's foreground labels).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegError
from medseg.fileutil import atomic_path, write_text_atomic
from medseg.image import Image

#: Most connected components listed in a job's lesions.json (the largest first; ``counts`` counts them all).
MAX_LESION_ROWS = 500


def lesion_table(label_map: Image, names: dict[str, int], max_rows: int = MAX_LESION_ROWS) -> dict[str, Any]:
    """The components of every foreground label (:func:`medseg.measure.lesions`) as ``GET /jobs/{id}/lesions``
    serves them: one list over all labels, the largest first.

    Returns ``{"unit", "counts": {label: n}, "lesions": [{"label", "value", "voxels", "volume", "bbox"
    ([lower, upper) per array axis), "centroid_voxel", "centroid_mm" (None without a physical size)}],
    "truncated"}``; volumes in mL (3D), mm² (2D) or pixels when the image has no physical size (raster).

    Examples
    --------
    >>> lab = Image(np.array([[[1, 1, 0, 0], [0, 0, 0, 1]]], np.uint8))
    >>> t = lesion_table(lab, {"background": 0, "lesion": 1})
    >>> t["counts"], [r["voxels"] for r in t["lesions"]]
    ({'lesion': 2}, [2, 1])
    """
    from medseg.measure import lesions

    known = bool(getattr(label_map, "spacing_known", True))
    measured = lesions(label_map, None, names, spacing_known=known)
    rows = []
    for name, structure in measured["structures"].items():
        for instance in structure["instances"]:
            rows.append({
                "label": name, "value": int(structure["values"][0]), "voxels": instance["voxels"],
                "volume": float(instance["volume"]),
                "bbox": [[lo, hi] for lo, hi in zip(instance["bbox_lower"], instance["bbox_upper"])],
                "centroid_voxel": instance["centroid_voxel"], "centroid_mm": instance.get("centroid_mm"),
            })
    rows.sort(key=lambda r: -r["voxels"])  # stable: labels in the model's order among equal sizes
    unit = measured["unit"] if known else "pixels"
    return {"unit": unit, "counts": {n: s["count"] for n, s in measured["structures"].items()},
            "lesions": rows[:max_rows], "truncated": len(rows) > max_rows}


#: result formats and their file in the job folder
RESULT_FILES = {"nifti": "labels.nii.gz", "png": "labels.png", "dicom-seg": "labels.dcm"}
MEDIA_TYPES = {"nifti": "application/gzip", "png": "image/png", "dicom-seg": "application/dicom"}


def dicom_seg_available() -> bool:
    """True when medseg's DICOM SEG writer (``medseg.io.dicom_seg``) is installed."""
    try:
        return importlib.util.find_spec("medseg.io.dicom_seg") is not None
    except (ImportError, ValueError):
        return False


def preview_image(image: Image) -> np.ndarray:
    """8-bit display slices ``(Z, Y, X)`` or ``(Z, Y, X, 3)`` (RGB inputs): 0.5–99.5 percentile window."""
    array = np.asarray(image.array)
    rgb = image.num_channels == 3 and image.spatial_dims == 2
    data = np.moveaxis(array, 0, -1).astype(np.float32) if rgb else array[0].astype(np.float32)
    finite = data[np.isfinite(data)]
    sample = finite[:: max(1, finite.size // 1_000_000)]
    lower, upper = (np.percentile(sample, [0.5, 99.5]) if sample.size else (0.0, 1.0))
    if upper <= lower:
        upper = lower + 1.0
    out = np.clip((np.nan_to_num(data, nan=lower) - lower) * (255.0 / (upper - lower)), 0, 255).astype(np.uint8)
    return out[None] if image.spatial_dims == 2 else out


def foreground_labels(labels: dict[str, int]) -> list[tuple[str, int]]:
    """(name, value) of the foreground labels in value order: preview index ``i + 1`` is entry ``i``."""
    items = sorted(((str(k), int(v)) for k, v in labels.items()), key=lambda kv: kv[1])
    return items[1:] if items else []


def preview_labels(label_map: Image, labels: dict[str, int]) -> np.ndarray:
    """``(Z, Y, X)`` uint8 indices into :func:`foreground_labels` (0 = background or an unknown value)."""
    array = np.asarray(label_map.array[0])
    out = np.zeros(array.shape, np.uint8)
    for index, (_, value) in enumerate(foreground_labels(labels)[:255], start=1):
        out[array == value] = index
    return out[None] if label_map.spatial_dims == 2 else out


def write_results(folder: Path, image: Image, label_map: Image, labels: dict[str, int],
                  volumes: list[dict[str, Any]], lesions: dict[str, Any], dicom_source: Path | None,
                  ) -> tuple[list[str], dict[str, str]]:
    """Write every result file of a job into ``folder``; returns the formats written and, per format that
    could not be written, why."""
    from medseg.io import write_image

    write_image(label_map, folder / RESULT_FILES["nifti"])
    formats = ["nifti"]
    if label_map.spatial_dims == 2:
        values = np.asarray(label_map.array)
        dtype = np.uint8 if values.max(initial=0) < 256 else np.uint16
        write_image(Image(values.astype(dtype)), folder / RESULT_FILES["png"])  # PNG: pixels, no geometry
        formats.append("png")
    notes = {}
    if dicom_source is not None and dicom_seg_available():
        from medseg.io.dicom_seg import write_dicom_seg

        try:
            write_dicom_seg(label_map, dicom_source, folder / RESULT_FILES["dicom-seg"], labels=labels)
            formats.append("dicom-seg")
        except (MedsegError, ValueError, AttributeError, KeyError) as exc:
            # a series highdicom cannot reference (e.g. no Frame of Reference UID): the other results stand
            notes["dicom-seg"] = f"the DICOM SEG could not be written: {getattr(exc, 'message', exc)}"
    write_text_atomic(folder / "volumes.json", json.dumps(volumes, indent=1) + "\n")
    write_text_atomic(folder / "lesions.json", json.dumps(lesions) + "\n")
    for name, array in (("preview_image.npy", preview_image(image)),
                        ("preview_labels.npy", preview_labels(label_map, labels))):
        with atomic_path(folder / name) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, array)
    shape = list(label_map.spatial_shape)
    meta = {
        "spatial_dims": label_map.spatial_dims, "shape": shape, "slices": shape[0] if len(shape) == 3 else 1,
        "spacing": list(label_map.spacing), "rgb": bool(image.num_channels == 3 and image.spatial_dims == 2),
        "labels": [{"index": i, "name": n, "value": v} for i, (n, v) in enumerate(foreground_labels(labels), 1)],
        "formats": formats,
    }
    write_text_atomic(folder / "preview.json", json.dumps(meta) + "\n")
    return formats, notes


def slice_png(folder: Path, kind: str, index: int) -> bytes:
    """One preview slice as PNG bytes (``kind``: ``"image"`` or ``"labels"``)."""
    import io

    from PIL import Image as PILImage

    array = np.load(folder / f"preview_{kind}.npy", mmap_mode="r")
    buffer = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(array[index])).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
