"""Uploads without the HTTP layer: format sniffing, safe zip extraction, size checks, the lesion table."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from medseg import Image, write_image
from medseg.errors import MedsegError
from medseg.serve.errors import RequestError
from medseg.serve.results import lesion_table
from medseg.serve.limits import ServeLimits
from medseg.serve.uploads import extract_dicom_zip, read_upload, sniff_format, store_upload


def _head(path) -> bytes:
    return path.read_bytes()[:4096]


def test_sniff_format_reads_magic_numbers_not_names(tmp_path):
    image = Image(np.arange(24, dtype=np.int16).reshape(1, 2, 3, 4))
    for ext in (".nii.gz", ".nii", ".mha", ".nrrd"):
        write_image(image, tmp_path / f"x{ext}")
        assert sniff_format(_head(tmp_path / f"x{ext}")) == ext
    flat = Image(np.zeros((1, 4, 4), np.uint8))
    for ext, expected in ((".png", ".png"), (".tif", ".tif"), (".jpg", ".jpg"), (".bmp", ".bmp")):
        write_image(flat, tmp_path / f"y{ext}")
        assert sniff_format(_head(tmp_path / f"y{ext}")) == expected
    assert sniff_format(b"PK\x03\x04rest") == ".zip"
    assert sniff_format(bytes(128) + b"DICM" + bytes(10)) == ".dcm"
    assert sniff_format(b"%PDF-1.7 ...") is None
    import gzip

    assert sniff_format(gzip.compress(b"not a nifti header" * 40)) is None


def test_store_upload_names_and_size(tmp_path):
    limits = ServeLimits(max_upload_bytes=5000)
    stored = store_upload(io.BytesIO(b"NRRD0004\n" + bytes(100)), tmp_path, limits)
    assert stored == tmp_path / "upload.nrrd"
    with pytest.raises(RequestError) as err:
        store_upload(io.BytesIO(b"\x89PNG\r\n\x1a\n" + bytes(10_000)), tmp_path, limits)
    assert err.value.status == 413
    with pytest.raises(RequestError) as err:
        store_upload(io.BytesIO(b"MZ\x90\x00 an executable"), tmp_path, limits)
    assert err.value.status == 415


def _zip(tmp_path, members: dict[str, bytes], links: tuple[str, ...] = ()):
    path = tmp_path / "upload.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # a symbolic link
            archive.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize("name", ["../evil.dcm", "a/../../evil.dcm", "/abs/evil.dcm", "C:/evil.dcm",
                                  "a\\..\\evil.dcm"])
def test_zip_traversal_names_are_refused(tmp_path, name):
    out = tmp_path / "out"
    with pytest.raises(RequestError) as err:
        extract_dicom_zip(_zip(tmp_path, {"ok.dcm": b"x", name: b"y"}), out, ServeLimits())
    assert err.value.status == 400 and "refused" in str(err.value)
    assert not list(tmp_path.rglob("evil.dcm"))


def test_zip_links_bombs_and_member_names(tmp_path):
    with pytest.raises(RequestError, match="symbolic link"):
        extract_dicom_zip(_zip(tmp_path, {}, links=("link.dcm",)), tmp_path / "a", ServeLimits())
    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.dcm", bytes(5_000_000))  # compresses to a few KiB
    with pytest.raises(RequestError) as err:
        extract_dicom_zip(big, tmp_path / "b", ServeLimits(max_unzipped_bytes=1_000_000))
    assert err.value.status == 413
    with pytest.raises(RequestError) as err:
        extract_dicom_zip(_zip(tmp_path, {f"{i}.dcm": b"x" for i in range(5)}), tmp_path / "c",
                          ServeLimits(max_zip_members=4))
    assert err.value.status == 413
    out = extract_dicom_zip(_zip(tmp_path, {"deep/folder/IM1": b"a", "IM2": b"b"}), tmp_path / "d", ServeLimits())
    assert sorted(p.name for p in out.iterdir()) == ["00000.dcm", "00001.dcm"]  # server names only


def test_image_size_is_checked_from_the_header(tmp_path):
    path = tmp_path / "upload.nii.gz"
    write_image(Image(np.zeros((1, 10, 10, 10), np.float32)), path)
    with pytest.raises(RequestError) as err:
        read_upload(path, tmp_path, ServeLimits(max_voxels=999))
    assert err.value.status == 413
    image, source, kind = read_upload(path, tmp_path, ServeLimits(max_voxels=1000))
    assert image.spatial_shape == (10, 10, 10) and source == path and kind == ".nii.gz"


def test_limits_are_validated():
    with pytest.raises(MedsegError):
        ServeLimits(max_concurrent_jobs=0)
    with pytest.raises(MedsegError):
        ServeLimits(max_concurrent_jobs=4, max_queued_jobs=2)
    assert ServeLimits(max_concurrent_jobs=2, threads_per_job=3).threads == 3


def test_lesion_table_3d_geometry():
    array = np.zeros((1, 4, 6, 6), np.uint8)
    array[0, 1:3, 1:3, 1:3] = 2  # 8 voxels of label 2
    array[0, 0, 5, 5] = 1
    labels = Image(array, spacing=(2.0, 1.0, 0.5), origin=(10.0, 0.0, 0.0))
    table = lesion_table(labels, {"background": 0, "a": 1, "b": 2})
    assert table["unit"] == "mL" and table["counts"] == {"a": 1, "b": 1}
    big = table["lesions"][0]
    assert big["label"] == "b" and big["voxels"] == 8 and big["volume"] == pytest.approx(8 * 1.0 / 1000)
    assert big["bbox"] == [[1, 3], [1, 3], [1, 3]]
    assert big["centroid_voxel"] == [1.5, 1.5, 1.5]
    assert big["centroid_mm"] == pytest.approx([13.0, 1.5, 0.75])
    assert lesion_table(Image(np.zeros((1, 3, 3), np.uint8)), {"background": 0, "x": 1})["counts"] == {"x": 0}


def test_lesion_table_without_physical_size():
    raster = Image(np.array([[[1, 1, 0], [0, 0, 0]]], np.uint8), spacing_known=False)
    table = lesion_table(raster, {"background": 0, "x": 1})
    assert table["unit"] == "pixels" and table["lesions"][0]["volume"] == 2 and table["lesions"][0]["centroid_mm"] is None


def test_a_grey_model_accepts_a_grey_picture_stored_as_rgb_and_refuses_colour():
    from pathlib import Path

    from medseg.model_folder import ModelConfig
    from medseg.serve.models import ServedModel

    config = ModelConfig(network="unet", network_options={}, patch_size=[16, 16], in_channels=1, input_channels=1,
                         num_classes=2, spatial_dims=2, channel_names=["OCT"], labels={"background": 0, "fluid": 1},
                         label_values=[0, 1])
    served = ServedModel("oct", Path("unused"), config, "untrained")
    grey = np.arange(48 * 48, dtype=np.uint32).reshape(48, 48).astype(np.uint8)
    served.check_image(Image(np.stack([grey] * 3), channel_names=("R", "G", "B")))
    with pytest.raises(RequestError, match="expects 1 channel"):
        served.check_image(Image(np.stack([grey, grey // 3, 255 - grey]), channel_names=("R", "G", "B")))
