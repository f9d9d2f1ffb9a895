"""Measurements of a predicted label map: lesion instances (connected components) per label and region.

A structure is a label (one value) or a region (the union of several values, e.g. the BraTS whole tumour
[1, 2, 4]). Each structure is split into its connected components (``cc3d``; 26-connectivity in 3D,
8 in 2D, so a lesion touching another only at a corner is still one lesion) and every instance is listed
with its size, bounding box and centroid — the "localisation" a clinical reading starts with. This is
what ``medseg predict`` writes as ``lesions.json`` beside ``volumes.csv``.

Sizes are mL in 3D (mm² in 2D) when the spacing is real. Some releases did not keep the spacing (PROMISE12
and ACDC are stored with 1 mm): pass ``spacing_known=False`` and sizes stay in voxels, distances in voxel
units, so no number pretends to be physical.

Examples
--------
>>> import numpy as np
>>> from medseg.image import Image
>>> a = np.zeros((1, 10, 10, 10), np.uint8); a[0, 1:3, 1:3, 1:3] = 1; a[0, 6:9, 6:9, 6:9] = 2
>>> out = lesions(Image(a, spacing=(2.0, 1.0, 1.0)), {"tumour": [1, 2]}, {})
>>> out["structures"]["tumour"]["count"], out["structures"]["tumour"]["instances"][0]["voxels"]
(2, 27)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from medseg.image import Image

__all__ = ["LESIONS_NAME", "lesions", "structures_of", "write_lesions", "volume_unit", "rows_in_voxels"]

#: File written beside ``volumes.csv`` by ``medseg predict``.
LESIONS_NAME = "lesions.json"


def volume_unit(spatial_dims: int, spacing_known: bool = True) -> tuple[float | None, str]:
    """(mm³ → unit factor, unit) of a volume: mL in 3D, mm² in 2D, voxels when the spacing is unknown.

    Examples
    --------
    >>> volume_unit(3), volume_unit(2), volume_unit(3, spacing_known=False)
    ((0.001, 'mL'), (1.0, 'mm2'), (None, 'voxels'))
    """
    if not spacing_known:
        return None, "voxels"
    return (1e-3, "mL") if spatial_dims == 3 else (1.0, "mm2")


def rows_in_voxels(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``volumes.csv`` rows with the volume given in voxels (spacing not known, e.g. PROMISE12 as released)."""
    return [{**row, "volume": row["voxels"], "unit": "voxels"} for row in rows]


def structures_of(labels: Mapping[str, int], regions: Mapping[str, Sequence[int]] | None,
                  background: int = 0, ignore: int | None = None) -> dict[str, list[int]]:
    """Every structure to measure: each foreground label, then each region.

    Examples
    --------
    >>> structures_of({"background": 0, "oedema": 2}, {"whole_tumor": [1, 2, 4]})
    {'oedema': [2], 'whole_tumor': [1, 2, 4]}
    """
    out = {str(n): [int(v)] for n, v in labels.items() if int(v) not in (background, ignore)}
    out.update({str(n): [int(v) for v in members] for n, members in (regions or {}).items()})
    return out


def _instances(mask: np.ndarray, image: Image, scale: float | None) -> list[dict[str, Any]]:
    import cc3d

    dims = mask.ndim
    components = cc3d.connected_components(mask.astype(np.uint8, copy=False), connectivity=26 if dims == 3 else 8)
    stats = cc3d.statistics(components)
    voxel = float(np.prod(image.spacing))
    out = []
    for index in range(1, len(stats["voxel_counts"])):
        n = int(stats["voxel_counts"][index])
        if n == 0:
            continue
        box = stats["bounding_boxes"][index]  # tuple of slices, array-axis order
        centroid = np.asarray(stats["centroids"][index], float)
        instance = {
            "voxels": n,
            "volume": round(n * voxel * scale, 6) if scale is not None else n,
            "bbox_lower": [int(s.start) for s in box],
            "bbox_upper": [int(s.stop) for s in box],  # exclusive, as a slice
            "centroid_voxel": [round(float(c), 3) for c in centroid],
        }
        if scale is not None:
            instance["centroid_mm"] = [round(float(c), 3) for c in image.index_to_physical(centroid)]
            instance["extent_mm"] = [round((s.stop - s.start) * float(sp), 3) for s, sp in zip(box, image.spacing)]
        out.append(instance)
    out.sort(key=lambda r: -r["voxels"])  # largest first: lesion 1 is the main one
    for i, instance in enumerate(out, start=1):
        instance["id"] = i
    return [{"id": r.pop("id"), **r} for r in out]


def lesions(label_map: Image, regions: Mapping[str, Sequence[int]] | None,
            labels: Mapping[str, int] | None = None, *, spacing_known: bool = True,
            case: str = "") -> dict[str, Any]:
    """Connected components (lesion instances) of every label and region of a label map.

    Parameters
    ----------
    label_map : Image
        One-channel label map with the dataset's values (BraTS: 0/1/2/4).
    regions : mapping of str to sequence of int, or None
        Region name -> label values (measured as their union).
    labels : mapping of str to int, optional
        Label name -> value; background (0) is skipped.
    spacing_known : bool
        False: sizes in voxels and no physical coordinates (the spacing is a placeholder).
    case : str
        Case name recorded in the result.

    Returns
    -------
    dict
        ``{"case", "unit", "spacing", "spacing_known", "connectivity", "structures": {name: {"values",
        "count", "volume", "instances": [{"id", "voxels", "volume", "bbox_lower", "bbox_upper",
        "centroid_voxel", "centroid_mm", "extent_mm"}]}}}``; instances largest first, bounding boxes in
        voxel indices (upper exclusive), centroids also in physical coordinates (mm, array-axis order).
    """
    array = np.asarray(label_map.array[0])
    scale, unit = volume_unit(label_map.spatial_dims, spacing_known)
    structures = {}
    for name, values in structures_of(labels or {}, regions).items():
        mask = np.isin(array, values) if len(values) > 1 else array == values[0]
        instances = _instances(mask, label_map, scale)
        structures[name] = {
            "values": values,
            "count": len(instances),
            "volume": round(sum(float(i["volume"]) for i in instances), 6),
            "instances": instances,
        }
    return {
        "case": case,
        "unit": unit,
        "spacing": [float(s) for s in label_map.spacing],
        "spacing_known": bool(spacing_known),
        "connectivity": 26 if label_map.spatial_dims == 3 else 8,
        "structures": structures,
    }


def write_lesions(results: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write ``lesions.json`` atomically: ``{"cases": {case: result}}``; other cases already there are kept."""
    from medseg.fileutil import write_text_atomic

    path = Path(path)
    cases: dict[str, Any] = {}
    if path.is_file():
        try:
            cases = dict(json.loads(path.read_text(encoding="utf-8")).get("cases", {}))
        except (ValueError, AttributeError):
            cases = {}  # an unreadable old file is replaced, never half-merged
    for result in results:
        cases[str(result["case"])] = result
    write_text_atomic(path, json.dumps({"cases": cases}, indent=1) + "\n")
    return path
