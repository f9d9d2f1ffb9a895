"""The reports ``medseg predict --report`` writes for one case: the clinical HTML report
(:mod:`medseg.report.clinical`) and the same content as a PDF beside it (:mod:`medseg.report.pdf`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from medseg.image import Image
from medseg.report.clinical import CaseReport, model_summary, value_names, write_case_report
from medseg.report.pdf import write_case_report_pdf

__all__ = ["pdf_path", "write_prediction_report"]


def write_prediction_report(image: Image, label_map: Image, config: Any, model_folders: Sequence[str | Path],
                            case: str, volumes: list[dict[str, Any]], lesions: dict[str, Any], path: str | Path,
                            notes: Sequence[str] = ()) -> Path:
    """The report ``medseg predict --report`` writes for one case (``config``: the predictor's ModelConfig):
    the HTML file at ``path`` and the same content as a PDF beside it (:func:`pdf_path`).

    Several model folders (an ensemble) are listed by name; the provenance box shows the first one's.
    """
    from medseg.inference.localise import fine_folder, is_localise_folder
    from medseg.model_folder import region_label_values

    names = value_names(config.labels, config.regions, region_label_values(config) if config.regions else None)
    model = model_summary(fine_folder(model_folders[0]))
    if is_localise_folder(model_folders[0]):
        model["model"] = f"{Path(model_folders[0]).name} (localise with a coarse model, segment with {model['model']})"
    if len(model_folders) > 1:
        model["model"] = f"ensemble of {len(model_folders)}: " + ", ".join(Path(f).name for f in model_folders)
    # underneath: FLAIR-like first channel unless a T2/FLAIR channel is named elsewhere
    channel = next((i for i, n in enumerate(config.channel_names) if n.lower() in ("flair", "t2")), 0)
    # volume rows of painted values named like the legend ("2" -> "whole_tumor outside tumor_core")
    volumes = [{**r, "label": names.get(int(r["value"]), r["label"])} if str(r.get("value", "")).isdigit()
               and r["label"] == str(r["value"]) else r for r in volumes]
    report = CaseReport(case, names, list(volumes), lesions, model, list(notes), channel,
                        config.channel_names[channel] if channel < len(config.channel_names) else None)
    path = write_case_report(image, label_map, report, path)
    write_case_report_pdf(image, label_map, report, pdf_path(path))
    return path


def pdf_path(html_path: str | Path) -> Path:
    """The PDF written beside a report's HTML file (``<case>_report.pdf``)."""
    return Path(html_path).with_suffix(".pdf")
