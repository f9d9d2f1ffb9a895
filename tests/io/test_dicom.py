"""DICOM series: geometry from the slice tags, and mixed series are refused, naming their UIDs."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.errors import ImageReadError
from medseg.io import read_image


def _write_series(folder, volume: np.ndarray, uid: str, spacing=(0.8, 0.8, 2.5), origin=(-10.0, 20.0, 5.0),
                  prefix="s"):
    """Write a (Z, Y, X) int16 volume as single-slice CT DICOM files with axial orientation."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z, plane in enumerate(volume):
        sl = sitk.GetImageFromArray(plane[None])  # a 1-slice 3D image keeps position tags
        sl.SetSpacing(spacing)
        sl.SetOrigin((origin[0], origin[1], origin[2] + z * spacing[2]))
        tags = {
            "0008|0060": "CT", "0020|000e": uid, "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|0013": str(z + 1), "0020|0037": "1\\0\\0\\0\\1\\0",
            "0020|0032": "\\".join(f"{v:g}" for v in (origin[0], origin[1], origin[2] + z * spacing[2])),
            "0028|0030": f"{spacing[1]:g}\\{spacing[0]:g}", "0018|0050": f"{spacing[2]:g}",
            "0008|0018": f"{uid}.{z + 1}",
        }
        for key, value in tags.items():
            sl.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"{prefix}{z:03d}.dcm"))
        writer.Execute(sl)


def test_dicom_series_geometry(tmp_path, rng):
    volume = rng.integers(-100, 1000, (4, 8, 10)).astype(np.int16)
    _write_series(tmp_path / "ct", volume, "1.2.826.0.1.3680043.2.1125.100")
    image = read_image(tmp_path / "ct")
    assert image.spatial_shape == (4, 8, 10)
    assert np.allclose(image.spacing, (2.5, 0.8, 0.8))
    assert np.allclose(image.origin, (5.0, 20.0, -10.0))
    assert np.array_equal(image.array[0].astype(np.int64), volume.astype(np.int64))


def test_single_dicom_file_is_2d(tmp_path, rng):
    volume = rng.integers(0, 500, (1, 6, 7)).astype(np.int16)
    _write_series(tmp_path / "one", volume, "1.2.826.0.1.3680043.2.1125.200")
    path = next((tmp_path / "one").iterdir())
    image = read_image(path)
    assert image.spatial_dims == 2 and np.array_equal(image.array[0], volume[0])
    renamed = path.with_name("slice_without_extension")
    path.rename(renamed)
    assert read_image(renamed).spatial_shape == (6, 7)  # found by the DICM magic


def test_mixed_series_folder_names_uids(tmp_path, rng):
    folder = tmp_path / "mixed"
    _write_series(folder, rng.integers(0, 9, (2, 4, 4)).astype(np.int16), "1.2.826.0.1.3680043.2.1125.301", prefix="a")
    _write_series(folder, rng.integers(0, 9, (2, 4, 4)).astype(np.int16), "1.2.826.0.1.3680043.2.1125.302", prefix="b")
    with pytest.raises(ImageReadError) as info:
        read_image(folder)
    text = str(info.value)
    assert "1.2.826.0.1.3680043.2.1125.301" in text and "1.2.826.0.1.3680043.2.1125.302" in text
    assert str(folder) in text


def test_folder_without_dicom(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageReadError, match="no DICOM series"):
        read_image(tmp_path / "empty")
