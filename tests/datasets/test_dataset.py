"""Reading both dataset layouts (nnU-Net v2 with medseg's ROI/test extension, and MSD)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medseg.datasets import load_dataset, write_dataset_json
from medseg.datasets.dataset import read_labels
from medseg.errors import DatasetError, GeometryError
from medseg.image import Image
from medseg.io import write_image


def _volume(rng, channels=1, shape=(4, 6, 5)):
    return Image(rng.normal(size=(channels, *shape)).astype(np.float32), spacing=(3.0, 1.0, 1.0))


def _nnunet(root, rng, cases=("a", "b"), channels=2):
    for name in cases:
        image = _volume(rng, channels)
        for c in range(channels):
            write_image(image.channel(c), root / "imagesTr" / f"{name}_{c:04d}.nii.gz")
        write_image(image.with_array((image.array[:1] > 0).astype(np.uint8)), root / "labelsTr" / f"{name}.nii.gz")
    write_dataset_json(root, name="toy", channel_names=["T1", "T2"][:channels],
                       labels={"background": 0, "tumour": 1}, file_ending=".nii.gz", num_training=len(cases))
    return root


def test_nnunet_layout(tmp_path, rng):
    root = _nnunet(tmp_path / "ds", rng)
    (root / "splits.json").write_text("[]", encoding="utf-8")
    ds = load_dataset(root)
    assert ds.name == "toy" and ds.channel_names == ["T1", "T2"] and ds.file_ending == ".nii.gz"
    assert ds.labels == {"background": 0, "tumour": 1} and ds.regions is None and ds.ignore_label is None
    assert [c.name for c in ds.cases] == ["a", "b"] and ds.test_cases == []
    assert ds.splits_path == root / "splits.json"
    case = ds.cases[0]
    image, label = case.read_image(), case.read_label()
    assert image.num_channels == 2 and image.channel_names == ("T1", "T2")
    assert label.array.dtype.kind == "u" and label.same_geometry(image)
    assert case.roi_path is None and case.read_roi() is None


def test_roi_and_test_folders(tmp_path, rng):
    root = _nnunet(tmp_path / "ds", rng, channels=1)
    write_image(_volume(rng).with_array(np.ones((1, 4, 6, 5), np.uint8)), root / "roisTr" / "a.nii.gz")
    write_image(_volume(rng), root / "imagesTs" / "t_0000.nii.gz")
    write_image(_volume(rng).with_array(np.zeros((1, 4, 6, 5), np.uint8)), root / "labelsTs" / "t.nii.gz")
    ds = load_dataset(root)
    assert ds.cases[0].roi_path == root / "roisTr" / "a.nii.gz" and ds.cases[1].roi_path is None
    assert [c.name for c in ds.test_cases] == ["t"] and ds.test_cases[0].label_path is not None
    assert ds.cases[0].read_roi().array.sum() == 4 * 6 * 5


def test_regions_and_ignore_label(tmp_path, rng):
    root = _nnunet(tmp_path / "ds", rng, channels=1)
    write_dataset_json(root, name="brats", channel_names=["FLAIR"], labels={"background": 0, "ignore": 4},
                       regions={"whole": [1, 2, 3], "core": [2, 3], "enhancing": [3]}, file_ending=".nii.gz",
                       num_training=2)
    raw = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    assert raw["regions_class_order"] == [1, 2, 3]
    ds = load_dataset(root)
    assert ds.regions == {"whole": [1, 2, 3], "core": [2, 3], "enhancing": [3]}
    assert ds.ignore_label == 4 and "ignore" not in ds.labels and ds.label_values == [0, 1, 2, 3, 4]
    assert ds.num_classes == 3


def test_msd_layout(tmp_path, rng):
    root = tmp_path / "Task01"
    for name in ("BRATS_001", "BRATS_002"):
        image = _volume(rng, channels=4)
        write_image(image, root / "imagesTr" / f"{name}.nii.gz")  # 4D NIfTI, modality last in ITK order
        write_image(image.with_array(np.zeros((1, 4, 6, 5), np.uint8)), root / "labelsTr" / f"{name}.nii.gz")
    write_image(_volume(rng, channels=4), root / "imagesTs" / "BRATS_900.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "name": "BRATS", "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
        "numTraining": 2, "numTest": 1,
        "training": [{"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"} for n in ("BRATS_001", "BRATS_002")],
        "test": ["./imagesTs/BRATS_900.nii.gz"],
    }), encoding="utf-8")
    ds = load_dataset(root)
    assert ds.channel_names == ["FLAIR", "T1w", "t1gd", "T2w"]
    assert ds.labels == {"background": 0, "edema": 1, "non-enhancing tumor": 2, "enhancing tumour": 3}
    assert [c.name for c in ds.cases] == ["BRATS_001", "BRATS_002"] and [c.name for c in ds.test_cases] == ["BRATS_900"]
    image = ds.cases[0].read_image()
    assert image.num_channels == 4 and image.spatial_shape == (4, 6, 5) and image.channel_names[0] == "FLAIR"


def test_missing_dataset_json(tmp_path):
    with pytest.raises(DatasetError, match="dataset.json not found"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("drop", ["labels", "file_ending", "channel_names"])
def test_missing_fields(tmp_path, rng, drop):
    root = _nnunet(tmp_path / "ds", rng)
    raw = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    del raw[drop]
    (root / "dataset.json").write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(DatasetError, match=drop) as info:
        load_dataset(root)
    assert "dataset.json" in str(info.value)


def test_invalid_json(tmp_path):
    (tmp_path / "dataset.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_dataset(tmp_path)


def test_msd_names_missing_file(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({
        "modality": {"0": "CT"}, "labels": {"0": "background", "1": "liver"},
        "training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}]}), encoding="utf-8")
    with pytest.raises(DatasetError, match="missing") as info:
        load_dataset(tmp_path)
    assert "x.nii.gz" in str(info.value)


def test_nnunet_missing_label_and_count(tmp_path, rng):
    root = _nnunet(tmp_path / "ds", rng)
    (root / "labelsTr" / "b.nii.gz").unlink()
    with pytest.raises(DatasetError, match="label file missing") as info:
        load_dataset(root)
    assert "b.nii.gz" in str(info.value)


def test_case_channel_geometry_mismatch(tmp_path, rng):
    root = _nnunet(tmp_path / "ds", rng)
    write_image(Image(np.zeros((1, 4, 6, 5), np.float32), spacing=(1.0, 1.0, 1.0)), root / "imagesTr" / "a_0001.nii.gz")
    with pytest.raises(GeometryError, match="a_0001.nii.gz"):
        load_dataset(root).cases[0].read_image()


@pytest.mark.parametrize("labels, expected", [
    ({"0": "background", "1": "edema"}, ({"background": 0, "edema": 1}, None, None)),  # MSD
    ({"background": 0, "organ": 1, "ignore": 9}, ({"background": 0, "organ": 1}, None, 9)),  # nnU-Net
    ({"background": 0, "whole": [1, 2], "core": 2}, ({"background": 0}, {"whole": [1, 2], "core": [2]}, None)),
])
def test_read_labels_without_cases(tmp_path, labels, expected):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"labels": labels}), encoding="utf-8")
    assert read_labels(path) == expected


def test_read_labels_errors_name_the_file(tmp_path):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"name": "x"}), encoding="utf-8")
    with pytest.raises(DatasetError, match=r"dataset\.json: missing field 'labels'"):
        read_labels(path)
    path.write_text(json.dumps({"labels": {"organ": "one"}}), encoding="utf-8")
    with pytest.raises(DatasetError, match="non-integer"):
        read_labels(path)
