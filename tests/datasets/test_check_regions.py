"""Dataset checks for region tasks: a missing modality, modalities on different grids, a label value no
region covers, a region value that never occurs — each one line naming the case, before any training."""

import json

import numpy as np
import pytest

from medseg.cli import main
from medseg.datasets import check_dataset
from medseg.datasets.synthetic import make_tumour3d
from medseg.image import Image
from medseg.io import read_image, write_image


@pytest.fixture
def tumour(tmp_path):
    return make_tumour3d(tmp_path / "t", cases=4, seed=0, shape=(8, 24, 24), brats_values=True)


def _problems(report):
    return [(p.case, p.file.name if p.file else None, p.problem) for p in report.problems]


def test_clean_region_dataset_passes(tumour):
    report = check_dataset(tumour)
    assert report.ok and not report.warnings


def test_missing_modality_named(tumour):
    (tumour / "imagesTr" / "case_000_0003.nii.gz").unlink()
    assert _problems(check_dataset(tumour)) == [
        ("case_000", "case_000_0003.nii.gz", "missing modality 3 (FLAIR): no case_000_0003.nii.gz")]


def test_modalities_on_different_grids(tumour):
    path = tumour / "imagesTr" / "case_001_0002.nii.gz"
    image = read_image(path)
    write_image(Image(np.ascontiguousarray(image.array[:, :, :20]), spacing=image.spacing), path)
    [(case, _, text)] = _problems(check_dataset(tumour))
    assert case == "case_001" and "do not share a voxel grid" in text


def test_label_value_outside_every_region(tumour):
    path = tumour / "labelsTr" / "case_002.nii.gz"
    label = read_image(path)
    array = label.array.copy()
    array[0, 0, 0, 0] = 3  # BraTS has no label 3
    write_image(label.with_array(array), path)
    [(case, name, text)] = _problems(check_dataset(tumour))
    assert (case, name) == ("case_002", "case_002.nii.gz")
    assert text.startswith("label values [3] are not covered by any region")


def test_region_value_that_never_occurs(tumour):
    data = json.loads((tumour / "dataset.json").read_text(encoding="utf-8"))
    data["labels"]["whole_tumour"] = [1, 2, 4, 5]
    data["labels"]["extra"] = [6]
    data["regions_class_order"] = [2, 1, 4, 6]
    (tumour / "dataset.json").write_text(json.dumps(data), encoding="utf-8")
    report = check_dataset(tumour)
    assert [w.problem for w in report.warnings] == ["region 'whole_tumour' declares value(s) [5] that no label map holds"]
    assert [p.problem for p in report.problems] == [
        "region 'extra' [6]: none of its values occurs in any label map, so it cannot be learned"]


def test_training_stops_before_it_starts(tumour, tmp_path, capsys):
    (tumour / "imagesTr" / "case_000_0003.nii.gz").unlink()
    assert main(["train", str(tumour), "--out", str(tmp_path / "m"), "--iterations", "1", "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "case_000" in err and "missing modality 3 (FLAIR)" in err
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_missing_middle_modality_named_when_loading(tumour, tmp_path, capsys):
    """A gap in the channel files (no _0001) is found by the scan itself: one line naming the case and the
    modality, before training, and `medseg check` lists the same line once."""
    (tumour / "imagesTr" / "case_002_0001.nii.gz").unlink()
    assert _problems(check_dataset(tumour)) == [
        ("case_002", "case_002_0001.nii.gz", "case case_002: missing modality 1 (T1ce): no case_002_0001.nii.gz")]
    assert main(["train", str(tumour), "--out", str(tmp_path / "m"), "--iterations", "1", "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "case case_002: missing modality 1 (T1ce)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists() or not (tmp_path / "m" / "model.safetensors").exists()
