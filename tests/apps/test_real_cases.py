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


def test_brats_case_pdf_report(shared_data, tmp_path):
    """The PDF report on a real case: a PDF with the overlay page and the table pages."""
    from medseg.report.clinical import CaseReport
    from medseg.report.pdf import write_case_report_pdf

    dataset = load_dataset(shared_data / "BraTS")
    case = dataset.case("Brats18_CBICA_ABM_1")
    image, label = case.read_image(), case.read_label()
    found = lesions(label, dataset.regions, dataset.labels, case=case.name)
    report = CaseReport(case.name, {2: "oedema", 1: "core", 4: "enhancing"}, [], found, {"model": "reference"})
    data = write_case_report_pdf(image, label, report, tmp_path / "r.pdf").read_bytes()
    assert data.startswith(b"%PDF-") and len(__import__("re").findall(rb"/Type\s*/Page(?![a-zA-Z])", data)) >= 2


def test_brats_missing_modality_stops_training_naming_the_case(shared_data, tmp_path, capsys):
    """Bad input on real files: two BraTS cases linked into a dataset, one modality of one case absent."""
    import json

    from medseg.cli import main

    source = shared_data / "BraTS"
    root = tmp_path / "brats2"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    meta = json.loads((source / "dataset.json").read_text(encoding="utf-8"))
    meta["numTraining"] = 2
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    names = sorted(p.name[:-len(".nii.gz")] for p in (source / "labelsTr").glob("*.nii.gz"))[:2]
    for name in names:
        (root / "labelsTr" / f"{name}.nii.gz").symlink_to(source / "labelsTr" / f"{name}.nii.gz")
        for c in range(4):
            if (name, c) != (names[1], 2):
                file = f"{name}_{c:04d}.nii.gz"
                (root / "imagesTr" / file).symlink_to(source / "imagesTr" / file)
    assert main(["train", str(root), "--out", str(tmp_path / "m"), "--iterations", "1", "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert names[1] in err and "missing modality 2 (T1ce)" in err
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_promise12_paper_augmentation_on_real_cases(shared_data):
    """V-Net's augmentation on two real prostate cases: histogram matching moves one case's quantiles onto
    the other's, the B-spline deformation keeps the gland label 0/1 and moves it with the image."""
    import torch

    from medseg.augmentation import BatchCases, RandomBSplineDeformation, RandomHistogramMatching
    from medseg.augmentation.histogram import intensity_quantiles

    dataset = load_dataset(shared_data / "PROMISE12")
    a, b = (dataset.cases[i].read_image().array.astype(np.float32) for i in (0, 1))
    qa, qb = intensity_quantiles(a), intensity_quantiles(b)
    assert not np.allclose(qa, qb, rtol=0.05)
    image = torch.from_numpy(a[None, :, :, 32:96, 32:96].copy())
    out, _ = RandomHistogramMatching(p=1.0)(image, None, torch.Generator().manual_seed(0),
                                            cases=BatchCases(np.array([0]), np.stack([qa, qb])))
    # the patch's values now follow case b's distribution: its range lies within b's
    assert float(qb[0, 0]) - 1e-3 <= float(out.min()) and float(out.max()) <= float(qb[0, -1]) + 1e-3
    label = torch.from_numpy(dataset.cases[0].read_label().array[None].astype(np.int64))
    img = torch.from_numpy(a[None].copy())
    warped, warped_label = RandomBSplineDeformation(max_displacement=[1.0, 6.0, 6.0], p=1.0)(
        img, label, torch.Generator().manual_seed(1))
    assert set(warped_label.unique().tolist()) == {0, 1}
    assert abs(int(warped_label.sum()) - int(label.sum())) < 0.2 * int(label.sum())
    assert not torch.equal(warped_label, label)


def test_brats_localise_rule_declines_the_planned_grid_and_takes_one_mm(shared_data):
    """The localise rule on two real BraTS cases: at the planned 2.65 mm after the crop to the brain the
    whole-volume pass is a few tiles (declined, as measured); at 1 mm with 64³ tiles the tumour's box pays."""
    from types import SimpleNamespace

    from medseg.inference.localise import dataset_localise_rule

    dataset = load_dataset(shared_data / "BraTS")
    cases = ["Brats18_CBICA_ABM_1", "Brats18_TCIA01_201_1"]
    planned = SimpleNamespace(crop_to_nonzero=True, target_spacing=[2.65] * 3, data_patch_size=(48, 48, 56))
    pays, why = dataset_localise_rule(dataset, planned, cases)
    assert not pays and "tile(s)" in why
    fine = SimpleNamespace(crop_to_nonzero=True, target_spacing=[1.0] * 3, data_patch_size=(64, 64, 64))
    pays, why = dataset_localise_rule(dataset, fine, cases)
    assert pays and "% of the image" in why
