"""The clinical report as a PDF (matplotlib's PdfPages: no system dependency), with the HTML report's content.

Page 1: the case, the "not for clinical use" line, the three orthogonal overlay planes with their legend (vector
graphics over the image planes). Following pages: the volume table, the lesion counts and list, the model's
provenance and the notes, as fixed-width tables (:func:`medseg.report.clinical.report_tables` is the one source
of both reports), the warning repeated at the end. The file is written under a temporary name and renamed.

Examples
--------
>>> import numpy as np, tempfile
>>> from medseg.image import Image
>>> from medseg.measure import lesions
>>> from medseg.report.clinical import CaseReport
>>> img = Image(np.random.default_rng(0).random((1, 16, 24, 24)).astype(np.float32))
>>> lab = img.with_array((np.arange(16 * 24 * 24).reshape(1, 16, 24, 24) % 97 == 0).astype(np.uint8))
>>> info = CaseReport("c1", {1: "lesion"}, [], lesions(lab, None, {"lesion": 1}), {"network": "unet"})
>>> path = write_case_report_pdf(img, lab, info, tempfile.mkdtemp() + "/c1_report.pdf")
>>> path.read_bytes()[:5]
b'%PDF-'
"""

from __future__ import annotations

import datetime
import textwrap
from pathlib import Path
from typing import Any, Sequence

from medseg.image import Image

__all__ = ["write_case_report_pdf"]

A4 = (8.27, 11.69)  # inches, portrait
LINES_PER_PAGE = 62  # 8-point monospaced lines between the margins of an A4 page
WIDTH = 110  # characters per line at that size


def _fixed_width(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A table as monospaced lines, columns as wide as their widest cell (cut at 40 characters)."""
    cells = [[str(c)[:40] for c in header]] + [[str(c)[:40] for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    if any(h for h in header):
        lines.insert(1, "  ".join("-" * w for w in widths))
    else:
        lines = lines[1:]
    return lines or ["(none)"]


def _sections(report: Any) -> list[tuple[str, list[str]]]:
    from medseg.report.clinical import NOT_FOR_CLINICAL_USE, report_tables

    (vh, vr), (ch, cr), (lh, lr), (mh, mr) = report_tables(report)
    sections = [("Volumes", _fixed_width(vh, vr) if vr else ["(none)"]),
                ("Lesions (connected components)", (_fixed_width(ch, cr) if cr else ["(none)"]) + [""]
                 + (_fixed_width(lh, lr) if lr else [])),
                ("Model", _fixed_width(mh, mr))]
    if report.notes:
        sections.append(("Notes", [f"- {n}" for n in report.notes]))
    sections.append(("", textwrap.wrap(NOT_FOR_CLINICAL_USE, WIDTH)))
    return sections


def _text_pages(sections: Sequence[tuple[str, list[str]]]) -> list[list[tuple[str, str]]]:
    """(kind, text) lines per page; a section heading never ends a page."""
    pages: list[list[tuple[str, str]]] = [[]]
    for title, lines in sections:
        block = ([("heading", title)] if title else []) + [("line", ln) for ln in lines] + [("line", "")]
        for i, item in enumerate(block):
            if len(pages[-1]) >= LINES_PER_PAGE or (item[0] == "heading" and len(pages[-1]) >= LINES_PER_PAGE - 3):
                pages.append([])
            pages[-1].append(item)
    return pages


def _header(fig: Any, report: Any, page: int, pages: int) -> None:
    from medseg.report.clinical import NOT_FOR_CLINICAL_USE

    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    fig.text(0.06, 0.965, f"Segmentation report: {report.case}", fontsize=13, weight="bold", va="top")
    fig.text(0.06, 0.94, f"Generated {created} by medseg {report.model.get('medseg_version', '')}"
             f"  ·  page {page} of {pages}", fontsize=8, color="#555555", va="top")
    fig.text(0.06, 0.915, "\n".join(textwrap.wrap(NOT_FOR_CLINICAL_USE, 100)), fontsize=8, weight="bold",
             color="#D55E00", va="top")


def write_case_report_pdf(image: Image, label_map: Image, report: Any, path: str | Path) -> Path:
    """Write one case's report as a PDF (the content of :func:`medseg.report.clinical.write_case_report`).

    Parameters
    ----------
    image, label_map : Image
        The input and its prediction on the same grid.
    report : medseg.report.clinical.CaseReport
    path : path
        Output ``.pdf`` file (written atomically).

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    from medseg.fileutil import atomic_path
    from medseg.report.clinical import overlay_title
    from medseg.report.figures import overlay_figure

    path = Path(path)
    text_pages = _text_pages(_sections(report))
    total = 1 + len(text_pages)
    with atomic_path(path) as tmp:
        with PdfPages(tmp, metadata={"Title": f"medseg report: {report.case}", "Creator": "medseg",
                                     "Subject": "Research software: not for clinical use"}) as pdf:
            fig = plt.figure(figsize=A4)
            _header(fig, report, 1, total)
            fig.text(0.06, 0.86, "Overlay: three orthogonal planes through the centroid of the segmented structure; "
                     "Okabe–Ito colour-blind-safe colours.", fontsize=8, va="top")
            overlay_figure(image, label_map, report.names, channel=report.channel, title=overlay_title(image, report),
                           figure=fig, rect=(0.04, 0.56, 0.96, 0.84))
            pdf.savefig(fig)
            plt.close(fig)
            for number, lines in enumerate(text_pages, start=2):
                fig = plt.figure(figsize=A4)
                _header(fig, report, number, total)
                y = 0.86
                for kind, text in lines:
                    if kind == "heading":
                        fig.text(0.06, y, text, fontsize=11, weight="bold", va="top")
                    else:
                        fig.text(0.06, y, text, fontsize=8, family="monospace", va="top")
                    y -= 0.8 / LINES_PER_PAGE
                pdf.savefig(fig)
                plt.close(fig)
    return path
