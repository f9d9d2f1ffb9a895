"""`medseg predict` writes lesions.json beside volumes.csv for every prediction, --report one HTML file per
case, --spacing-unknown sizes in voxels; a refused run (existing report) writes nothing."""

import csv
import json

import numpy as np
import pytest

from medseg.cli import main
from medseg.image import Image
from medseg.io import write_image


def _setup(tmp_path):
    from tests.inference.test_predictor import make_model_folder

    model = make_model_folder(tmp_path / "m", spatial_dims=3, preprocessing=[{"name": "zscore"}], patch=[8, 16, 16])
    rng = np.random.default_rng(0)
    image = Image(rng.normal(size=(1, 10, 20, 20)).astype(np.float32), spacing=(3.0, 1.0, 1.0))
    write_image(image, tmp_path / "in" / "c1_0000.nii.gz")
    return model


def test_predict_writes_lesions_and_report(tmp_path):
    model = _setup(tmp_path)
    out = tmp_path / "out"
    assert main(["predict", str(model), "-i", str(tmp_path / "in"), "-o", str(out), "--report"]) == 0
    lesions = json.loads((out / "lesions.json").read_text(encoding="utf-8"))["cases"]["c1"]
    assert lesions["unit"] == "mL" and set(lesions["structures"]) == {"l1"}
    with open(out / "volumes.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["unit"] == "mL"
    assert lesions["structures"]["l1"]["volume"] == pytest.approx(float(rows[0]["volume"]), abs=1e-5)
    assert "not for clinical use" in (out / "c1_report.html").read_text(encoding="utf-8").lower()
    assert (out / "c1_report.pdf").read_bytes().startswith(b"%PDF-")
    # the report exists: a second run without --overwrite is refused before any work
    assert main(["predict", str(model), "-i", str(tmp_path / "in"), "-o", str(out), "--report"]) != 0


def test_spacing_unknown_gives_voxels(tmp_path):
    model = _setup(tmp_path)
    out = tmp_path / "out"
    assert main(["predict", str(model), "-i", str(tmp_path / "in"), "-o", str(out), "--spacing-unknown"]) == 0
    with open(out / "volumes.csv", encoding="utf-8", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert row["unit"] == "voxels" and row["volume"] == row["voxels"]
    assert json.loads((out / "lesions.json").read_text(encoding="utf-8"))["cases"]["c1"]["unit"] == "voxels"
    assert not (out / "c1_report.html").exists()
