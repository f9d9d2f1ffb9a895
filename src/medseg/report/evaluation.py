"""Per-case rows with thumbnails for an evaluation (``medseg evaluate --images DIR``): ``cases.html`` beside
the evaluator's report, one row per case with the prediction over the image (reference outline in white)
and that case's Dice / HD95 per label, worst cases first, so a person can look instead of read.

Examples
--------
>>> summary = evaluate_folders("pred", "labelsTs", "eval")                    # doctest: +SKIP
>>> write_case_gallery(summary, "imagesTs", "pred", "labelsTs").name          # doctest: +SKIP
'cases.html'
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CASES_NAME", "write_case_gallery"]

#: File written into the evaluation folder.
CASES_NAME = "cases.html"


def _find_image(images_dir: Path, case: str) -> list[Path]:
    """The case's image file(s): ``case.ext`` or the channel files ``case_0000.ext``..."""
    from medseg.io import strip_extension

    files = sorted(p for p in images_dir.iterdir() if p.is_file() and (strip_extension(p) == case or
                   strip_extension(p).rsplit("_", 1)[0] == case and strip_extension(p).rsplit("_", 1)[-1].isdigit()))
    return files


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else ("inf" if math.isinf(value) else f"{value:.3f}")
    return html.escape(str(value))


def write_case_gallery(summary: Any, images_dir: str | Path, pred_dir: str | Path, gt_dir: str | Path,
                       channel: int = 0) -> Path:
    """Write ``cases.html`` into ``summary.out_dir``.

    Parameters
    ----------
    summary : medseg.metrics.evaluator.Summary
        What :func:`~medseg.metrics.evaluator.evaluate_folders` returned.
    images_dir, pred_dir, gt_dir : path
        The input images (matched by case name, channel files stacked), predictions and references.
    channel : int
        Image channel under the overlay.

    Returns
    -------
    Path
    """
    from medseg.errors import MedsegError
    from medseg.fileutil import write_text_atomic
    from medseg.io import read_image
    from medseg.metrics.evaluator import _index
    from medseg.report.figures import thumbnail

    images_dir, out = Path(images_dir), Path(summary.out_dir)
    preds, gts = _index(Path(pred_dir), "prediction"), _index(Path(gt_dir), "ground truth")
    labels = list(summary.labels)
    by_case: dict[str, dict[str, dict]] = {}
    for row in summary.per_case:
        by_case.setdefault(row["case"], {})[row["label"]] = row
    values = sorted({v for members in summary.labels.values() for v in members})
    names = {v: next((n for n, m in summary.labels.items() if tuple(m) == (v,)), str(v)) for v in values}
    mean_dice = {c: float(np.nanmean([r["dice"] for r in rows.values()])) for c, rows in by_case.items()}
    body = []
    for case in sorted(by_case, key=lambda c: mean_dice[c]):  # worst first
        cells = "".join(f"<td>{_cell(by_case[case][l]['dice'])}</td><td>{_cell(by_case[case][l]['hd95'])}</td>"
                        for l in labels)
        picture = "no image"
        files = _find_image(images_dir, case) if images_dir.is_dir() else []
        if files and case in preds and case in gts:
            try:
                image = read_image(files if len(files) > 1 else files[0])
                pred, ref = read_image(preds[case]), read_image(gts[case])
                png = thumbnail(image, pred, names, channel=min(channel, image.num_channels - 1), reference=ref)
                picture = f'<img alt="{html.escape(case)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            except MedsegError as exc:
                picture = html.escape(exc.message)
        body.append(f"<tr><td>{html.escape(case)}</td><td>{picture}</td><td>{_cell(mean_dice[case])}</td>{cells}</tr>")
    head = "".join(f"<th>{html.escape(l)} Dice</th><th>{html.escape(l)} HD95 (mm)</th>" for l in labels)
    text = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>medseg evaluation: cases</title>
<style>body{{font-family:system-ui,Helvetica,Arial,sans-serif;margin:20px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;font-size:.85em;text-align:left;vertical-align:middle}}
th{{background:#f2f2f2}}</style></head><body>
<h1>Per-case results, worst mean Dice first</h1>
<p>Thumbnail: the plane through the reference's centroid; prediction filled (Okabe–Ito colours), reference outlined
in white. See report.html for the summary statistics.</p>
<table><thead><tr><th>case</th><th>prediction / reference</th><th>mean Dice</th>{head}</tr></thead>
<tbody>{''.join(body)}</tbody></table></body></html>
"""
    path = out / CASES_NAME
    write_text_atomic(path, text)
    return path
