"""The size of every predicted label: voxels and volume (mL in 3D, mm² in 2D), and ``volumes.csv``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medseg.image import Image
from medseg.model_folder import ModelConfig


VOLUME_COLUMNS = ("case", "label", "value", "voxels", "volume", "unit")


def label_volumes(labels: Image, config: ModelConfig, case: str = "") -> list[dict[str, Any]]:
    """Voxel count and physical size of every foreground label (and region) of a label map.

    3D: volume in mL (voxels × spacing product in mm³ / 1000) — V-Net's organ volume; 2D: area in mm².
    Every label of the model is listed, absent ones with 0. Region models (sigmoid heads) also list each
    region (the union of its label values, e.g. the whole tumour).

    Examples
    --------
    >>> from medseg.model_folder import ModelConfig
    >>> cfg = ModelConfig("unet", {}, 1, 2, 3, ["0"], {"background": 0, "prostate": 1}, [0, 1], [8, 8, 8])
    >>> lab = Image(np.ones((1, 10, 10, 10), np.uint8), spacing=(2.0, 1.0, 1.0))
    >>> label_volumes(lab, cfg, "c")[0]["volume"]
    2.0
    """
    array = np.asarray(labels.array[0])
    voxel = float(np.prod(labels.spacing))
    three_d = labels.spatial_dims == 3
    scale, unit = (voxel / 1000.0, "mL") if three_d else (voxel, "mm2")
    if not getattr(labels, "spacing_known", True):  # a raster input has no physical size
        scale, unit = 1.0, "pixels"
    values, counts = np.unique(array, return_counts=True)
    count = {int(v): int(c) for v, c in zip(values, counts)}
    by_value = {int(v): k for k, v in config.labels.items()}
    rows = []
    background = config.label_values[0] if config.label_values else 0
    for value in sorted(set(config.label_values) | set(count)):
        if value == background or value == config.ignore_label:
            continue
        n = count.get(value, 0)
        rows.append({"case": case, "label": str(by_value.get(value, value)), "value": str(value), "voxels": n,
                     "volume": round(n * scale, 6), "unit": unit})
    for name, members in (config.regions or {}).items():
        n = sum(count.get(int(v), 0) for v in members)
        rows.append({"case": case, "label": str(name), "value": "+".join(str(int(v)) for v in members),
                     "voxels": n, "volume": round(n * scale, 6), "unit": unit})
    return rows


def write_volumes(rows: Sequence[dict[str, Any]], path: str | Path, replace_cases: bool = True) -> Path:
    """Write ``volumes.csv`` atomically; rows of other cases already in the file are kept.

    ``replace_cases``: rows of a case in ``rows`` replace that case's old rows (a re-prediction).
    """
    import csv
    import io

    from medseg.fileutil import write_text_atomic

    path = Path(path)
    kept: list[dict[str, Any]] = []
    new_cases = {str(r["case"]) for r in rows}
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames and list(reader.fieldnames) == list(VOLUME_COLUMNS):
                kept = [r for r in reader if not (replace_cases and r["case"] in new_cases)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=VOLUME_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in [*kept, *rows]:
        writer.writerow({k: row.get(k, "") for k in VOLUME_COLUMNS})
    write_text_atomic(path, buffer.getvalue())
    return path
