"""Builders of uploads for the service's tests: DICOM series written with SimpleITK, zips, polling."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import numpy as np


def write_dicom_series(array: np.ndarray, folder: Path, series_uid: str, spacing=(3.0, 1.0, 1.0)) -> Path:
    """Write a (Z, Y, X) int16 volume as one DICOM file per slice (one series)."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    volume = sitk.GetImageFromArray(array.astype(np.int16))
    volume.SetSpacing((float(spacing[2]), float(spacing[1]), float(spacing[0])))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(array.shape[0]):
        piece = volume[:, :, z]
        tags = {"0008|0060": "MR", "0020|000d": "1.2.826.0.1.3680043.2.1125.1", "0020|000e": series_uid,
                "0020|0037": "1\\0\\0\\0\\1\\0", "0020|0013": str(z + 1),
                "0020|0032": "\\".join(str(v) for v in volume.TransformIndexToPhysicalPoint((0, 0, z))),
                "0018|0050": str(spacing[0]), "0008|0018": f"{series_uid}.{z + 1}"}
        for key, value in tags.items():
            piece.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice{z:03d}.dcm"))
        writer.Execute(piece)
    return folder


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """A zip archive (in memory) of name → content, names written exactly as given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


def zip_folder(folder: Path, prefix: str = "") -> dict[str, bytes]:
    return {f"{prefix}{p.name}": p.read_bytes() for p in sorted(folder.iterdir())}


def wait(client, job_id: str, timeout: float = 120.0) -> dict:
    """Poll ``GET /jobs/{id}`` until the job is done or failed."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = client.get(f"/jobs/{job_id}").json()
        if status["status"] in ("done", "failed"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {status} after {timeout} s")
