"""The lesion list of a label map: connected components of each label with their size and place (cc3d)."""

from __future__ import annotations

from typing import Any

import numpy as np

from medseg.image import Image


def lesion_table(labels: Image, names: dict[str, int], max_rows: int = 500) -> dict[str, Any]:
    """Connected components per foreground label: count, and per component voxels, volume, box, centroid.

    Components are face-and-edge connected (8 in 2D, 26 in 3D); a component never spans two labels.
    Volumes are in mL (3D) or mm² (2D), pixels when the spacing is unknown (raster inputs); ``bbox`` is
    ``[lower, upper)`` voxel indices per array axis; ``centroid_mm`` is the physical position (the image's
    origin, spacing and direction; None when the spacing is unknown).

    Parameters
    ----------
    labels : Image
        A one-channel label map.
    names : dict
        Label name → value (the model's labels); other values are listed under their number.
    max_rows : int
        Most components listed (the largest first); ``counts`` always counts all of them.

    Returns
    -------
    dict
        ``{"unit", "counts": {label: n}, "lesions": [...], "truncated": bool}``.

    Examples
    --------
    >>> lab = Image(np.array([[[1, 1, 0, 0], [0, 0, 0, 1]]], np.uint8))
    >>> t = lesion_table(lab, {"background": 0, "lesion": 1})
    >>> t["counts"], [r["voxels"] for r in t["lesions"]]
    ({'lesion': 2}, [2, 1])
    """
    import cc3d

    array = np.ascontiguousarray(labels.array[0])
    three_d = array.ndim == 3
    voxel = float(np.prod(labels.spacing))
    scale, unit = (voxel / 1000.0, "mL") if three_d else (voxel, "mm2")
    known = getattr(labels, "spacing_known", True)
    if not known:  # a raster input has no physical size (as in label_volumes)
        scale, unit = 1.0, "pixels"
    by_value = {int(v): str(k) for k, v in names.items()}
    background = min(names.values()) if names else 0
    work = np.where(array == background, 0, array) if background != 0 else array
    components, n = cc3d.connected_components(work, connectivity=26 if three_d else 8, return_N=True)
    counts: dict[str, int] = {name: 0 for value, name in by_value.items() if value != background}
    if n == 0:
        return {"unit": unit, "counts": counts, "lesions": [], "truncated": False}
    stats = cc3d.statistics(components)
    value_of = np.zeros(n + 1, dtype=np.int64)
    value_of[components.ravel()] = array.ravel()
    order = np.argsort(-stats["voxel_counts"][1:], kind="stable") + 1
    rows = []
    for cid in range(1, n + 1):
        name = by_value.get(int(value_of[cid]), str(int(value_of[cid])))
        counts[name] = counts.get(name, 0) + 1
    for cid in order[:max_rows]:
        box = stats["bounding_boxes"][cid]
        centroid = np.asarray(stats["centroids"][cid], dtype=float)
        rows.append({
            "label": by_value.get(int(value_of[cid]), str(int(value_of[cid]))), "value": int(value_of[cid]),
            "voxels": int(stats["voxel_counts"][cid]), "volume": round(float(stats["voxel_counts"][cid]) * scale, 6),
            "bbox": [[int(s.start), int(s.stop)] for s in box],
            "centroid_voxel": [round(float(c), 3) for c in centroid],
            "centroid_mm": [round(float(c), 3) for c in labels.index_to_physical(centroid)] if known else None,
        })
    return {"unit": unit, "counts": counts, "lesions": rows, "truncated": n > max_rows}
