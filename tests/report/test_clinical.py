"""The clinical HTML report: one self-contained file with the overlay planes (Okabe–Ito colours actually
drawn), legend, volume table, lesion list, the model's provenance and the "not for clinical use" line."""

import base64
import io
import re

import numpy as np

from medseg.datasets.synthetic import tumour3d_case
from medseg.image import Image
from medseg.measure import lesions
from medseg.report import OKABE_ITO, orthogonal_overlay, thumbnail, value_names
from medseg.report.prediction import write_prediction_report


def _regions_model(tmp_path):
    from tests.inference.test_predictor import make_model_folder
    from medseg.model_folder import load_config

    regions = {"whole_tumor": [1, 2, 4], "tumor_core": [1, 4], "enhancing_tumor": [4]}
    folder = make_model_folder(tmp_path / "brats_model", in_channels=4, num_classes=3, spatial_dims=3,
                               label_values=(0, 1, 2, 4), regions=regions)
    config = load_config(folder)
    config.region_class_order = [2, 1, 4]
    return folder, config


def _pixels(png):
    from PIL import Image as PILImage

    return np.asarray(PILImage.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)


def _has_colour(pixels, hex_colour, tolerance=40):
    target = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return bool((np.abs(pixels.astype(int) - target).sum(1) < tolerance).any())


def test_report_is_one_self_contained_file(tmp_path):
    image, label = tumour3d_case((16, 48, 48), seed=3, brats_values=True)
    folder, config = _regions_model(tmp_path)
    rows = [{"label": "whole_tumor", "value": "1+2+4", "voxels": int((label.array > 0).sum()), "volume": 1.5,
             "unit": "mL"}]
    found = lesions(label, config.regions, config.labels, case="c7")
    path = write_prediction_report(image, label, config, [folder], "c7", rows, found, tmp_path / "c7_report.html",
                                   ["prediction time 1.0 s"])
    text = path.read_text(encoding="utf-8")
    assert "not for clinical use" in text.lower() and text.lower().count("not for clinical use") == 2
    for expected in ("brats_model", "unet", "whole_tumor outside tumor_core", "enhancing_tumor", "1+2+4",
                     "prediction time 1.0 s", "Lesions", "centroid (mm, z y x)"):
        assert expected in text, expected
    assert "src=\"http" not in text and "<script" not in text  # nothing fetched: opens offline anywhere
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(pngs) == 1
    pixels = _pixels(base64.b64decode(pngs[0]))
    # the three painted values in their palette colours (oedema, core, enhancing all visible through the centroid)
    for colour in OKABE_ITO[:3]:
        assert _has_colour(pixels, colour), colour


def test_value_names_and_overlay_2d():
    assert value_names({"background": 0, "vessel": 1}) == {1: "vessel"}
    img = Image(np.random.default_rng(0).random((1, 40, 50)).astype(np.float32))
    lab = np.zeros((1, 40, 50), np.uint8)
    lab[0, 10:20, 10:30] = 1
    png = orthogonal_overlay(img, img.with_array(lab), {1: "vessel"})
    assert _has_colour(_pixels(png), OKABE_ITO[0])
    small = thumbnail(img, img.with_array(lab), {1: "vessel"}, reference=img.with_array(lab))
    assert small[:4] == b"\x89PNG" and len(small) < len(png)


def _pdf_pages(data: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", data))


def test_report_pdf_has_the_same_content(tmp_path):
    """`write_prediction_report` writes the PDF beside the HTML: a valid PDF (header, trailer), the overlay
    page plus the table pages, the warning in its metadata; many lesions spill onto more pages."""
    from medseg.report.clinical import CaseReport
    from medseg.report.prediction import pdf_path
    from medseg.report.pdf import _sections, _text_pages, write_case_report_pdf

    image, label = tumour3d_case((16, 48, 48), seed=3, brats_values=True)
    folder, config = _regions_model(tmp_path)
    found = lesions(label, config.regions, config.labels, case="c7")
    html_path = write_prediction_report(image, label, config, [folder], "c7", [], found, tmp_path / "c7_report.html")
    data = pdf_path(html_path).read_bytes()
    assert pdf_path(html_path).name == "c7_report.pdf"
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert _pdf_pages(data) == 2
    assert b"not for clinical use" in data and b"medseg report: c7" in data  # document information
    assert not list(tmp_path.glob("*.tmp*"))  # written under a temporary name, then renamed
    # a long lesion list: more pages, every line on one of them, a heading never alone at a page's end
    many = {"unit": "mL", "spacing_known": True, "structures": {f"s{k}": {"count": 10, "volume": 1.0, "instances": [
        {"id": i, "volume": 0.1, "voxels": 10, "centroid_mm": [1.0, 2.0, 3.0], "bbox_lower": [0, 0, 0],
         "bbox_upper": [2, 2, 2]} for i in range(10)]} for k in range(8)}}
    report = CaseReport("c8", {1: "lesion"}, [], many, {"network": "unet"})
    pages = _text_pages(_sections(report))
    assert len(pages) >= 2 and all(p[-1][0] != "heading" for p in pages)
    assert sum(len(p) for p in pages) == sum(len(lines) + (2 if title else 1) for title, lines in _sections(report))
    path = write_case_report_pdf(image, label, report, tmp_path / "c8.pdf")
    assert _pdf_pages(path.read_bytes()) == 1 + len(pages)
