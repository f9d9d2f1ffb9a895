"""The demo: a tiny run checks every output; the full run (slow) must beat the Otsu baseline clearly."""

import json

import pytest

from medseg.demo import otsu_baseline, run_demo


def test_demo_writes_every_output(tmp_path):
    facts = run_demo(tmp_path / "demo", cases=3, test_cases=1, size=48, time_limit=60, iterations=2,
                     patch_size=32, batch_size=2, features=4, threads=1, progress=False)
    out = tmp_path / "demo"
    for rel in ("model/config.json", "model/model.safetensors", "model/training_log.csv",
                "model/training_curve.png", "predictions/case_003.png", "predictions/probabilities/case_003.tif",
                "overlays/case_003.png", "overlays/case_003_otsu.png", "evaluation/report.html",
                "evaluation/summary.json", "evaluation_otsu/summary.json", "demo_summary.json"):
        assert (out / rel).is_file(), rel
    assert facts["training_iterations"] == 2
    saved = json.loads((out / "demo_summary.json").read_text(encoding="utf-8"))
    assert set(saved["metrics"]) == {"medseg U-Net", "Otsu threshold (green)"}
    assert 0.0 <= saved["metrics"]["Otsu threshold (green)"]["dice"] <= 1.0


def test_otsu_baseline_finds_dark_vessels():
    import numpy as np

    image = np.full((3, 20, 20), 200, np.uint8)
    image[1, :, 9:11] = 60
    roi = np.ones((20, 20), bool)
    assert otsu_baseline(image, roi)[:, 9:11].all() and otsu_baseline(image, roi).sum() == 40


@pytest.mark.slow
def test_full_demo_beats_the_threshold_baseline(tmp_path):
    facts = run_demo(tmp_path / "demo", progress=False)
    model = facts["metrics"]["medseg U-Net"]["dice"]
    baseline = facts["metrics"]["Otsu threshold (green)"]["dice"]
    assert model > baseline + 0.2 and model > 0.7
