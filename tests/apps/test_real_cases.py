"""One real BraTS case and one real PROMISE12 case (../shared/data; skipped where absent): painting the
regions back gives the distributed 0/1/2/4 exactly, the BraTS metrics, lesions and a report on real data."""

import numpy as np
import pytest

from medseg.datasets import load_dataset
from medseg.inference.predictor import labels_from_probabilities
from medseg.measure import lesions
from medseg.metrics.brats import brats_region_metrics
from medseg.model_folder import ModelConfig

pytestmark = pytest.mark.data


def _config(dataset, network="segresnet_vae"):
    return ModelConfig(network, {}, len(dataset.channel_names), len(dataset.regions or dataset.labels), 3,
                       list(dataset.channel_names), dict(dataset.labels), list(dataset.label_values), [64, 64, 64],
                       regions=dataset.regions, region_class_order=(dataset.raw or {}).get("regions_class_order"))


def test_brats_case_regions_round_trip_and_report(shared_data, tmp_path):
    from medseg.report.clinical import CaseReport, value_names, write_case_report

    dataset = load_dataset(shared_data / "BraTS")
    case = dataset.case("Brats18_CBICA_ABM_1")
    image, label = case.read_image(), case.read_label()
    assert image.num_channels == 4 and image.spatial_shape == (155, 240, 240)
    values = label.array[0]
    assert set(np.unique(values).tolist()) == {0, 1, 2, 4}
    config = _config(dataset)
    # region targets (what the sigmoid heads learn) painted back with regions_class_order: the file's values
    targets = np.stack([np.isin(values, v) for v in dataset.regions.values()]).astype(np.float32)
    np.testing.assert_array_equal(labels_from_probabilities(targets, config), values)
    metrics = brats_region_metrics(values, values, dataset.regions, image.spacing)
    assert all(m == {"dice": 1.0, "hd95": 0.0} for m in metrics.values())
    found = lesions(label, dataset.regions, dataset.labels, case=case.name)
    whole = found["structures"]["whole_tumor"]
    assert whole["count"] >= 1 and whole["instances"][0]["volume"] > 10  # mL: a real tumour
    assert whole["volume"] == pytest.approx(np.isin(values, [1, 2, 4]).sum() / 1000)
    from medseg.inference.predictor import region_label_values

    report = CaseReport(case.name, value_names(config.labels, config.regions, region_label_values(config)), [],
                        found, {"model": "reference labels"}, channel=0)
    text = write_case_report(image, label, report, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "whole_tumor outside tumor_core" in text and "data:image/png;base64," in text


def test_promise12_case_measured_in_voxels(shared_data):
    dataset = load_dataset(shared_data / "PROMISE12")
    case = dataset.cases[0]
    image, label = case.read_image(), case.read_label()
    assert image.num_channels == 1 and set(np.unique(label.array).tolist()) == {0, 1}
    found = lesions(label, None, dataset.labels, spacing_known=False, case=case.name)
    prostate = found["structures"]["prostate"]
    assert found["unit"] == "voxels" and prostate["count"] >= 1
    assert prostate["instances"][0]["voxels"] > 0.9 * int(label.array.sum())  # one gland, not fragments
