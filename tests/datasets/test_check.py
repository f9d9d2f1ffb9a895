"""check_dataset collects problems (with the file) and summarises the data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medseg.datasets import check_dataset, make_organs3d, make_vessels2d
from medseg.image import Image
from medseg.io import read_image, write_image


@pytest.fixture
def organs(tmp_path):
    return make_organs3d(tmp_path / "o", cases=3, seed=1, shape=(8, 20, 20))


def test_clean_dataset_summary(organs):
    report = check_dataset(organs)
    assert report.ok, report.problems
    s = report.summary
    assert s["training_cases"] == 3 and s["shape"]["max"] == [8, 20, 20] and s["spacing"]["min"] == [3.0, 1.0, 1.0]
    assert set(s["labels"]) == {"background", "organ1", "organ2", "organ3"}
    assert abs(sum(v["fraction"] for v in s["labels"].values()) - 1) < 1e-9
    assert s["intensity"]["CT"]["min"] < s["intensity"]["CT"]["mean"] < s["intensity"]["CT"]["max"]


def _problems(report):
    return [(p.case, p.file.name if p.file else None, p.problem) for p in report.problems]


def test_geometry_mismatch(organs):
    label_path = organs / "labelsTr" / "case_001.nii.gz"
    label = read_image(label_path)
    write_image(Image(label.array, spacing=(1.0, 1.0, 1.0), origin=label.origin, direction=label.direction), label_path)
    report = check_dataset(organs)
    assert not report.ok
    (case, name, text), = _problems(report)
    assert case == "case_001" and name == "case_001.nii.gz" and "spacing" in text


def test_undeclared_label_nan_and_channels(organs):
    label_path = organs / "labelsTr" / "case_000.nii.gz"
    label = read_image(label_path)
    arr = label.array.copy()
    arr[0, 0, 0, 0] = 7
    write_image(label.with_array(arr), label_path)
    image_path = organs / "imagesTr" / "case_002_0000.nii.gz"
    image = read_image(image_path)
    arr = image.array.copy()
    arr[0, 1, 1, 1] = np.nan
    write_image(image.with_array(arr), image_path)
    write_image(image, organs / "imagesTr" / "case_002_0001.nii.gz")  # an extra channel
    problems = _problems(check_dataset(organs))
    texts = {(c, t.split(" ")[0]): t for c, _, t in problems}
    assert "[7]" in texts[("case_000", "label")]
    assert "NaN" in texts[("case_002", "1")] and "channel" in texts[("case_002", "2")]


def test_corrupt_and_missing_files(organs):
    (organs / "imagesTr" / "case_000_0000.nii.gz").write_bytes(b"garbage")
    (organs / "labelsTr" / "case_001.nii.gz").unlink()
    raw = json.loads((organs / "dataset.json").read_text(encoding="utf-8"))
    problems = _problems(check_dataset(organs))
    assert any(c == "case_000" and n == "case_000_0000.nii.gz" for c, n, _ in problems)
    assert any(c == "case_001" and "label file missing" in t for c, _, t in problems)
    assert raw["numTraining"] == 3


def test_roi_checked(tmp_path):
    root = make_vessels2d(tmp_path / "v", cases=2, seed=0, size=48)
    write_image(Image(np.full((1, 48, 48), 255, np.uint8)), root / "roisTr" / "case_001.png")
    report = check_dataset(root)
    assert _problems(report) == [("case_001", "case_001.png", "an ROI mask must hold 0/1; found values [255]")]
    assert report.summary["cases_with_roi"] == 2


def _empty_label(organs, case):
    path = organs / "labelsTr" / f"{case}.nii.gz"
    label = read_image(path)
    write_image(label.with_array(np.zeros_like(label.array)), path)


def test_empty_label_map_is_a_warning_then_a_problem_when_all_are_empty(organs, capsys):
    from medseg.cli import main

    _empty_label(organs, "case_001")
    report = check_dataset(organs)
    assert report.ok and report.summary["warnings"] == 1
    assert [(w.case, w.file.name, w.problem) for w in report.warnings] == [
        ("case_001", "case_001.nii.gz", "the label map is empty (background only)")]
    assert main(["check", str(organs)]) == 0
    assert "empty" in capsys.readouterr().out
    for case in ("case_000", "case_002"):
        _empty_label(organs, case)
    report = check_dataset(organs)
    assert not report.ok and "nothing to learn" in report.problems[0].problem
