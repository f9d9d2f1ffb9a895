"""Region-based task end to end on synthetic BraTS-like data (values 0/1/2/4): plan (crop to non-zero,
z-score inside the non-zero mask), train, predict with lesions and a report, evaluate with the BraTS rules."""

import json

import numpy as np
import pytest

from medseg.cli import main
from medseg.datasets import load_dataset
from medseg.datasets.synthetic import make_tumour3d
from medseg.io import read_image
from medseg.training.config import TrainingConfig
from medseg.training.loop import _choose_network


@pytest.fixture(scope="module")
def tumour(tmp_path_factory):
    return make_tumour3d(tmp_path_factory.mktemp("t") / "tumour", cases=2, test_cases=1, seed=0, shape=(12, 32, 32),
                         brats_values=True, background_zero=True)


@pytest.mark.slow
def test_train_predict_report_evaluate(tumour, tmp_path, one_thread):
    model, pred, ev = tmp_path / "m", tmp_path / "pred", tmp_path / "eval"
    plan = tmp_path / "plan.json"
    assert main(["plan", str(tumour), "--out", str(plan)]) == 0
    steps = json.loads(plan.read_text(encoding="utf-8"))
    assert '"crop_to_nonzero": true' in json.dumps(steps) and '"mask": "nonzero"' in json.dumps(steps)
    assert main(["train", str(tumour), "--out", str(model), "--plan", str(plan), "--net", "segresnet_vae",
                 "--iterations", "2", "--patch-size", "8,16,16", "--batch-size", "1", "--features", "4",
                 "--threads", "1", "--no-progress"]) == 0
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    assert config["regions"] and config["region_class_order"] == [2, 1, 4] and config["crop_to_nonzero"]
    assert main(["predict", str(model), "-i", str(tumour / "imagesTs"), "-o", str(pred), "--report"]) == 0
    out = read_image(pred / "case_002.nii.gz")
    src = read_image(tumour / "imagesTs" / "case_002_0000.nii.gz")
    assert out.same_geometry(src)
    assert set(np.unique(out.array).tolist()) <= {0, 1, 2, 4}
    lesions = json.loads((pred / "lesions.json").read_text(encoding="utf-8"))["cases"]["case_002"]
    assert set(lesions["structures"]) == {"whole_tumour", "tumour_core", "enhancing"}
    assert lesions["unit"] == "mL"
    html = (pred / "case_002_report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and "not for clinical use" in html.lower()
    assert "segresnet_vae" in html and "whole_tumour" in html
    assert main(["evaluate", str(pred), str(tumour / "labelsTs"), "--out", str(ev), "--workers", "1",
                 "--images", str(tumour / "imagesTs")]) == 0
    gallery = (ev / "cases.html").read_text(encoding="utf-8")
    assert gallery.count("data:image/png;base64,") == 1 and "case_002" in gallery
    summary = json.loads((ev / "summary.json").read_text(encoding="utf-8"))
    assert summary["settings"]["convention"] == "brats"
    assert set(summary["labels"]) == {"whole_tumour", "tumour_core", "enhancing"}
    for label in summary["labels"]:  # every case scores finitely under the BraTS rules
        assert summary["metrics"][label]["hd95"]["n_inf"] == 0


def test_a_region_model_chooses_its_network_and_its_postprocessing_per_region(tumour, tmp_path, one_thread):
    model = tmp_path / "m"
    assert main(["train", str(tumour), "--out", str(model), "--features", "4", "--iterations", "2",
                 "--patch-size", "8,16,16", "--batch-size", "1", "--threads", "1", "--no-progress"]) == 0
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    rules = {r["name"]: r for r in json.loads((model / "rules.json").read_text(encoding="utf-8"))}
    # no --net: the network rule picks SegResNet-VAE for 3D regions, and the model is built as recorded
    assert rules["network"]["value"] == config["network"] == "segresnet_vae"
    assert not rules["network"]["overridden_by_user"] and "regions" in rules["network"]["reason"]
    finetuning = TrainingConfig(init_from="m")  # keeps its source's network
    assert _choose_network(load_dataset(tumour), finetuning, "3d") == (finetuning, None)
    trials = rules["postprocessing"]["inputs"]["trials"]
    assert {t["region"] for t in trials} == {"whole_tumour", "tumour_core", "enhancing"}
    assert all(isinstance(t["label"], list) for t in trials)
    kept = [{k: v for k, v in t.items() if k not in ("dice_before", "dice_after", "kept")} for t in trials if t["kept"]]
    assert config["postprocessing"] == kept
    # one validation case cannot show a loss: mirroring, the default, on every axis of the volume
    assert rules["tta"]["inputs"]["cases"] == 1 and config["tta_axes"] == [0, 1, 2]


def test_regions_trained_as_slices_keep_the_unet(tumour, tmp_path, one_thread):
    model = tmp_path / "m"
    assert main(["train", str(tumour), "--out", str(model), "--features", "4", "--iterations", "1",
                 "--configuration", "2d", "--batch-size", "1", "--threads", "1", "--no-progress"]) == 0
    rules = {r["name"]: r for r in json.loads((model / "rules.json").read_text(encoding="utf-8"))}
    assert rules["plan"]["value"]["configuration"] == "2d"
    assert rules["network"]["value"] == "unet" and rules["network"]["inputs"]["configuration"] == "2d"
