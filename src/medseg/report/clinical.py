"""A per-case clinical report: one self-contained HTML file (images embedded as base64) that opens anywhere.

It shows three orthogonal overlay planes through the segmented structure, a legend, the volume table,
the lesion list (connected components, :mod:`medseg.measure`), what model produced it (name, medseg
version, training-data summary, date) and that it is not for clinical use. ``medseg predict --report``
writes one per case as ``<case>_report.html``, and the same content as ``<case>_report.pdf``
(:mod:`medseg.report.pdf`; both through :mod:`medseg.report.prediction`).

Examples
--------
>>> import numpy as np, tempfile
>>> from medseg.image import Image
>>> from medseg.measure import lesions
>>> img = Image(np.random.default_rng(0).random((1, 16, 24, 24)).astype(np.float32))
>>> lab = img.with_array((np.arange(16 * 24 * 24).reshape(1, 16, 24, 24) % 97 == 0).astype(np.uint8))
>>> info = CaseReport("c1", {1: "lesion"}, [], lesions(lab, None, {"lesion": 1}), {"network": "unet"})
>>> path = write_case_report(img, lab, info, tempfile.mkdtemp() + "/c1_report.html")
>>> "not for clinical use" in path.read_text(encoding="utf-8").lower()
True
"""

from __future__ import annotations

import base64
import datetime
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from medseg.image import Image

__all__ = ["NOT_FOR_CLINICAL_USE", "CaseReport", "value_names", "model_summary", "report_tables", "overlay_title",
           "write_case_report"]

NOT_FOR_CLINICAL_USE = ("Research software: not for clinical use. The segmentation and the measurements have "
                        "not been validated for diagnosis or treatment; a qualified reader must review them.")


@dataclass
class CaseReport:
    """What one case's report shows.

    Attributes
    ----------
    case : str
    names : dict of int to str
        Label value in the label map -> legend text.
    volumes : list of dict
        ``volumes.csv`` rows of this case (label, value, voxels, volume, unit).
    lesions : dict
        :func:`medseg.measure.lesions` of this case.
    model : dict
        :func:`model_summary` of the model folder.
    notes : list of str
        Extra lines (e.g. "spacing unknown: volumes in voxels", prediction time).
    channel : int
        Image channel under the overlay.
    channel_name : str, optional
        Its name (default: the image's channel name).
    """

    case: str
    names: dict[int, str]
    volumes: list[dict[str, Any]]
    lesions: dict[str, Any]
    model: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    channel: int = 0
    channel_name: str | None = None


def value_names(labels: Mapping[str, int], regions: Mapping[str, Sequence[int]] | None = None,
                region_values: Sequence[int] | None = None) -> dict[int, str]:
    """Legend text per label value. A region model paints value ``region_values[i]`` for region ``i``; that
    value means "region i outside the regions painted after it" (BraTS: 2 = whole tumour outside the core,
    i.e. oedema).

    Examples
    --------
    >>> value_names({"background": 0}, {"whole_tumor": [1, 2, 4], "tumor_core": [1, 4], "enhancing_tumor": [4]},
    ...             [2, 1, 4])
    {2: 'whole_tumor outside tumor_core', 1: 'tumor_core outside enhancing_tumor', 4: 'enhancing_tumor'}
    >>> value_names({"background": 0, "prostate": 1})
    {1: 'prostate'}
    """
    if regions and region_values:
        names = list(regions)
        out = {}
        for i, (name, value) in enumerate(zip(names, region_values)):
            inner = [n for n in names[i + 1:] if set(regions[n]) < set(regions[name])]
            out[int(value)] = f"{name} outside {inner[0]}" if inner else name
        return out
    return {int(v): str(n) for n, v in labels.items() if int(v) != 0}


def model_summary(folder: str | Path) -> dict[str, Any]:
    """Name, version, training data and date of a model folder, for the report's provenance box."""
    import medseg
    from medseg.model_folder import CONFIG_NAME, load_config

    folder = Path(folder)
    config = load_config(folder)
    path = folder / CONFIG_NAME
    trained = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc)
    training = config.training or {}
    return {
        "model": folder.name,
        "network": config.network,
        "medseg_version": medseg.__version__,
        "dataset": config.dataset or "unknown",
        "training_cases": len(config.train_cases),
        "validation_cases": len(config.val_cases),
        "channels": ", ".join(config.channel_names),
        "outputs": ", ".join(config.regions) if config.regions else ", ".join(
            n for n, v in config.labels.items() if v != 0),
        "preprocessing": ", ".join(s.get("name", "?") + (f" (inside {s['mask']})" if s.get("mask") else "")
                                   for s in config.preprocessing),
        "iterations": _trained_iterations(folder) or training.get("iterations") or "unknown",
        "time limit": f"{training['time_limit'] / 60:.0f} min" if training.get("time_limit") else "none",
        "loss": training.get("loss", ""),
        "trained": trained.strftime("%Y-%m-%d %H:%M UTC"),
    }


def _trained_iterations(folder: Path) -> int | None:
    """Iterations actually trained: the last row of ``training_log.csv`` (None without a log)."""
    log = folder / "training_log.csv"
    if not log.is_file():
        return None
    lines = [line for line in log.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    try:
        return int(lines[-1].split(",")[0]) if lines else None
    except ValueError:
        return None


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    if not isinstance(value, float):
        return str(value)
    return f"{value:.2f}" if value == 0 or abs(value) >= 0.1 else f"{value:.2g}"  # a 1-voxel lesion is not 0.00


#: Lesions listed per structure in the report (largest first); the rest are summed in one row.
MAX_LESIONS_LISTED = 10


def _lesion_rows(lesions: dict[str, Any]) -> list[list[Any]]:
    rows = []
    physical = lesions.get("spacing_known", True)
    for name, structure in lesions.get("structures", {}).items():
        rest = structure["instances"][MAX_LESIONS_LISTED:]
        if rest:
            rows_rest = [name, f"{len(rest)} smaller", _fmt(float(sum(float(i["volume"]) for i in rest))),
                         sum(i["voxels"] for i in rest), "", ""]
        for inst in structure["instances"][:MAX_LESIONS_LISTED]:
            centre = inst.get("centroid_mm") if physical else inst["centroid_voxel"]
            rows.append([name, inst["id"], _fmt(float(inst["volume"])), inst["voxels"],
                         ", ".join(f"{c:.1f}" for c in centre),
                         " × ".join(str(u - l) for l, u in zip(inst["bbox_lower"], inst["bbox_upper"]))])
        if rest:
            rows.append(rows_rest)
    return rows


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:1.4em;margin-bottom:0} .sub{color:#555;margin-top:4px}
.warn{background:#fff4e5;border-left:4px solid #D55E00;padding:8px 12px;margin:12px 0;font-weight:600}
table{border-collapse:collapse;margin:8px 0 16px} th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:.9em}
th{background:#f2f2f2} img{max-width:100%} .grid{display:flex;gap:32px;flex-wrap:wrap} .grid>div{flex:1;min-width:320px}
"""


def overlay_title(image: Image, report: CaseReport) -> str:
    """Title of the overlay figure: the case and the channel under the label map."""
    channel_name = report.channel_name or (image.channel_names[report.channel] if image.channel_names
                                           else str(report.channel))
    return f"{report.case}: prediction over {channel_name}"


def report_tables(report: CaseReport) -> list[tuple[list[str], list[list[Any]]]]:
    """(header, rows) of the report's tables, in order: volumes, lesion counts, lesion list, model — one
    source for the HTML and the PDF report."""
    unit = report.lesions.get("unit", "")
    volume_rows = [[r["label"], r["value"], r["voxels"], _fmt(float(r["volume"])), r["unit"]] for r in report.volumes]
    counts = [[name, s["count"], _fmt(float(s["volume"])), unit]
              for name, s in report.lesions.get("structures", {}).items()]
    centre = "centroid (mm, z y x)" if report.lesions.get("spacing_known", True) else "centroid (voxel, z y x)"
    return [
        (["structure", "label value(s)", "voxels", "volume", "unit"], volume_rows),
        (["structure", "count", "total volume", "unit"], counts),
        (["structure", "lesion", f"volume ({unit})", "voxels", centre, "bounding box (voxels)"],
         _lesion_rows(report.lesions)),
        (["", ""], [[k.replace("_", " "), v] for k, v in report.model.items()]),
    ]


def write_case_report(image: Image, label_map: Image, report: CaseReport, path: str | Path) -> Path:
    """Write one case's clinical HTML report atomically (figures embedded; the file stands alone).

    Parameters
    ----------
    image : Image
        The input the prediction was made on.
    label_map : Image
        The prediction on the same grid (the file ``medseg predict`` wrote).
    report : CaseReport
        Tables and provenance to show.
    path : path
        Output ``.html`` file.

    Returns
    -------
    Path
    """
    from medseg.fileutil import write_text_atomic
    from medseg.report.figures import label_colours, orthogonal_overlay

    path = Path(path)
    overlay = orthogonal_overlay(image, label_map, report.names, channel=report.channel,
                                 title=overlay_title(image, report))
    (volume_head, volume_rows), (count_head, counts), (lesion_head, lesion_rows), (_, model_rows) = \
        report_tables(report)
    colours = label_colours(list(report.names))
    legend = " ".join(f'<span style="display:inline-block;width:12px;height:12px;background:{colours[v]};'
                      f'vertical-align:middle"></span> {v}: {html.escape(n)}&nbsp;&nbsp;' for v, n in report.names.items())
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>medseg report: {html.escape(report.case)}</title>
<style>{_STYLE}</style></head><body>
<h1>Segmentation report: {html.escape(report.case)}</h1>
<p class="sub">Generated {created} by medseg {html.escape(str(report.model.get('medseg_version', '')))}</p>
<div class="warn">{html.escape(NOT_FOR_CLINICAL_USE)}</div>
<h2>Overlay</h2>
<p>Three orthogonal planes through the centroid of the segmented structure; colours from the Okabe–Ito
colour-blind-safe palette (legend under the planes).</p>
{_img(overlay, 'orthogonal overlay planes')}
<p>{legend}</p>
<div class="grid"><div>
<h2>Volumes</h2>
{_table(volume_head, volume_rows)}
<h2>Lesions (connected components)</h2>
{_table(count_head, counts)}
{_table(lesion_head, lesion_rows)}
</div><div>
<h2>Model</h2>
{_table(["", ""], model_rows)}
{f'<h2>Notes</h2><ul>{notes}</ul>' if notes else ''}
</div></div>
<div class="warn">{html.escape(NOT_FOR_CLINICAL_USE)}</div>
</body></html>
"""
    write_text_atomic(path, text)
    return path
