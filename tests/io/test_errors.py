"""Bad input: each gives an ImageReadError / ImageWriteError / GeometryError naming the file."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.errors import GeometryError, ImageReadError, ImageWriteError
from medseg.image import Image
from medseg.io import read_image, write_image


@pytest.fixture
def volume(rng):
    return Image(rng.normal(size=(1, 6, 16, 16)).astype(np.float32), spacing=(2.0, 1.0, 1.0))


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".mha", ".nrrd", ".png", ".tif", ".gif", ".jpg", ".dcm"])
def test_zero_byte_file(tmp_path, ext):
    path = tmp_path / f"empty{ext}"
    path.touch()
    with pytest.raises(ImageReadError, match="0 bytes") as info:
        read_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_truncated_itk_file(tmp_path, volume, ext):
    path = tmp_path / f"v{ext}"
    write_image(volume, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_truncated_raster_file(tmp_path, rng, ext):
    path = tmp_path / f"r{ext}"
    write_image(Image(rng.integers(0, 255, (3, 64, 64)).astype(np.uint8)), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("ext", [".nii.gz", ".mha", ".nrrd", ".png", ".tif", ".jpg", ".gif"])
def test_corrupt_file(tmp_path, ext):
    path = tmp_path / f"junk{ext}"
    path.write_bytes(b"this is not an image at all" * 20)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_unknown_extension(tmp_path):
    path = tmp_path / "data.xyz"
    path.write_bytes(b"abc")
    with pytest.raises(ImageReadError, match="unknown image extension '.xyz'"):
        read_image(path)
    with pytest.raises(ImageWriteError, match="unknown image extension"):
        write_image(Image(np.zeros((1, 2, 2))), tmp_path / "out.xyz")
    assert not (tmp_path / "out.xyz").exists()


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.nii.gz")


def test_stack_with_different_geometry_names_both_files(tmp_path, volume):
    write_image(volume, tmp_path / "a.nii.gz")
    shifted = Image(volume.array, spacing=volume.spacing, origin=(0.0, 5.0, 0.0))
    write_image(shifted, tmp_path / "b.nii.gz")
    with pytest.raises(GeometryError) as info:
        read_image([tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"])
    assert "a.nii.gz" in str(info.value) and "b.nii.gz" in str(info.value) and "origin" in str(info.value)


def test_raster_refuses_lossy_writes(tmp_path, volume):
    with pytest.raises(ImageWriteError, match="2D"):
        write_image(volume, tmp_path / "v.png")
    with pytest.raises(ImageWriteError, match="spacing"):
        write_image(Image(np.zeros((1, 4, 4), np.uint8), spacing=(0.5, 0.5)), tmp_path / "s.png")
    with pytest.raises(ImageWriteError, match="float"):
        write_image(Image(np.full((1, 4, 4), 0.5)), tmp_path / "f.png")
    with pytest.raises(ImageWriteError, match="uint8, uint16"):
        write_image(Image(np.full((1, 4, 4), -3)), tmp_path / "n.png")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_failed_write_leaves_previous_file(tmp_path):
    path = tmp_path / "l.png"
    write_image(Image(np.ones((1, 3, 3), np.uint8)), path)
    with pytest.raises(ImageWriteError):
        write_image(Image(np.full((1, 3, 3), 0.5)), path)
    assert read_image(path).array.sum() == 9
    assert [p.name for p in tmp_path.iterdir()] == ["l.png"]
