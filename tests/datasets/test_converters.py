"""Converters on tiny fake copies of the public layouts (the real data is not needed)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from medseg.datasets import check_dataset, convert_dataset, converters, load_dataset
from medseg.errors import DatasetError, ImageReadError


def _rgb(path, rng, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(rng.integers(0, 256, (*size, 3)).astype(np.uint8)).save(path)


def _mask(path, rng, size=(12, 10), high=255, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    array = (rng.random(size) > 0.7).astype(np.uint8) * high
    PILImage.fromarray(array).convert(mode).save(path)
    return array > 0


def _fake_drive(root, rng):
    for subset, ids, tag in (("training", range(21, 24), "training"), ("test", range(1, 3), "test")):
        for i in ids:
            _rgb(root / subset / "images" / f"{i:02d}_{tag}.tif", rng)
            _mask(root / subset / "1st_manual" / f"{i:02d}_manual1.gif", rng)
            _mask(root / subset / "mask" / f"{i:02d}_{tag}_mask.gif", rng)
            if subset == "test":
                _mask(root / subset / "2nd_manual" / f"{i:02d}_manual2.gif", rng, high=1, mode="P")
    return root


def test_drive(tmp_path, rng):
    src = _fake_drive(tmp_path / "DRIVE", rng)
    expected = np.asarray(PILImage.open(src / "training/1st_manual/22_manual1.gif")) > 0
    dst = convert_dataset("drive", src, tmp_path / "out")
    ds = load_dataset(dst)
    assert [c.name for c in ds.cases] == ["drive_21", "drive_22", "drive_23"]
    assert [c.name for c in ds.test_cases] == ["drive_01", "drive_02"]
    assert all(c.roi_path is not None and c.label_path is not None for c in ds.cases + ds.test_cases)
    assert ds.labels == {"background": 0, "vessel": 1} and ds.channel_names == ["R", "G", "B"]
    assert ds.file_ending == ".png"
    label = ds.case("drive_22").read_label()
    assert np.array_equal(label.array[0], expected.astype(np.uint8))  # 0/255 -> 0/1, lossless
    assert ds.case("drive_01").read_image().array.shape == (3, 12, 10)
    assert check_dataset(dst).ok


def test_drive_missing_label_leaves_nothing(tmp_path, rng):
    src = _fake_drive(tmp_path / "DRIVE", rng)
    (src / "test/1st_manual/02_manual1.gif").unlink()
    with pytest.raises(DatasetError, match="02_manual1.gif"):
        convert_dataset("drive", src, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DRIVE"]  # no output, no temporary folder


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_drive_corrupt_image_leaves_nothing(tmp_path, rng):
    src = _fake_drive(tmp_path / "DRIVE", rng)
    (src / "training/images/23_training.tif").write_bytes(b"II*\x00broken")
    with pytest.raises(ImageReadError, match="23_training.tif"):
        convert_dataset("drive", src, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DRIVE"]


def test_existing_destination(tmp_path, rng):
    src = _fake_drive(tmp_path / "DRIVE", rng)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DatasetError, match="exists"):
        convert_dataset("drive", src, tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").exists()
    convert_dataset("drive", src, tmp_path / "out", overwrite=True)
    assert not (tmp_path / "out" / "keep.txt").exists() and len(load_dataset(tmp_path / "out").cases) == 3


def test_chase_db1(tmp_path, rng):
    src = tmp_path / "CHASEDB1"
    for i in ("01L", "01R", "02L"):
        _rgb(src / f"Image_{i}.jpg", rng)
        _mask(src / f"Image_{i}_1stHO.png", rng, high=1)
        _mask(src / f"Image_{i}_2ndHO.png", rng, high=1)
    ds = load_dataset(convert_dataset("chase_db1", src, tmp_path / "out"))
    assert [c.name for c in ds.cases] == ["chase_01L", "chase_01R", "chase_02L"]
    assert ds.cases[0].roi_path is None and set(np.unique(ds.cases[0].read_label().array)) <= {0, 1}


def test_stare(tmp_path, rng):
    src = tmp_path / "STARE"
    for i in ("0001", "0002"):
        _rgb(src / "stare-images" / f"im{i}.ppm", rng)
        _mask(src / "labels-ah" / f"im{i}.ah.ppm", rng)
        _mask(src / "labels-vk" / f"im{i}.vk.ppm", rng)
    ds = load_dataset(convert_dataset("stare", src, tmp_path / "out"))
    assert [c.name for c in ds.cases] == ["stare_0001", "stare_0002"]
    assert ds.cases[1].read_label().array.max() == 1


def test_hrf(tmp_path, rng):
    src = tmp_path / "HRF"
    for i, ext in (("01_h", "jpg"), ("01_g", "jpg"), ("02_dr", "JPG")):
        _rgb(src / "images" / f"{i}.{ext}", rng)
        _mask(src / "manual1" / f"{i}.tif", rng)
        _mask(src / "mask" / f"{i}_mask.tif", rng, mode="RGB")
    ds = load_dataset(convert_dataset("hrf", src, tmp_path / "out"))
    assert sorted(c.name for c in ds.cases) == ["hrf_01_g", "hrf_01_h", "hrf_02_dr"]
    roi = ds.case("hrf_01_h").read_roi()
    assert roi.num_channels == 1 and set(np.unique(roi.array)) <= {0, 1}


def test_generic_folder(tmp_path, rng):
    from medseg.image import Image
    from medseg.io import write_image

    src = tmp_path / "src"
    for name in ("p1", "p2"):
        image = Image(rng.normal(size=(1, 3, 5, 6)).astype(np.float32), spacing=(2.0, 1.0, 1.0))
        write_image(image, src / "images" / f"{name}.nii.gz")
        write_image(image.with_array(rng.integers(0, 3, (1, 3, 5, 6)).astype(np.uint8)), src / "labels" / f"{name}.mha")
    ds = load_dataset(convert_dataset("folder", src, tmp_path / "out"))
    assert [c.name for c in ds.cases] == ["p1", "p2"] and ds.file_ending == ".nii.gz"
    assert ds.labels == {"background": 0, "label1": 1, "label2": 2}
    assert ds.cases[0].read_image().spacing == (2.0, 1.0, 1.0)
    assert check_dataset(ds).ok


def test_folder_geometry_mismatch(tmp_path, rng):
    from medseg.image import Image
    from medseg.io import write_image

    src = tmp_path / "src"
    write_image(Image(np.zeros((1, 3, 5, 6), np.float32)), src / "images" / "p1.nii.gz")
    write_image(Image(np.zeros((1, 3, 5, 7), np.uint8)), src / "labels" / "p1.nii.gz")
    with pytest.raises(DatasetError, match="shape") as info:
        convert_dataset("folder", src, tmp_path / "out")
    assert "labels/p1.nii.gz" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_registry_lists_converters():
    assert {"drive", "chase_db1", "stare", "hrf", "folder"} <= set(converters.names())
