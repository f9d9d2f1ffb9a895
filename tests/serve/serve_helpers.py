"""Builders of uploads for the service's tests: DICOM series written with SimpleITK, zips, polling."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import numpy as np


def write_dicom_series(array: np.ndarray, folder: Path, series_uid: str, spacing=(3.0, 1.0, 1.0)) -> Path:
    """Write a (Z, Y, X) volume as one DICOM file per slice (one series, with a frame of reference)."""
    from medseg import Image
    from medseg.io.dicom_series import write_dicom_series as write_series

    write_series(Image(array[None].astype(np.int16), spacing=spacing), folder, series_uid=series_uid,
                 study_uid="1.2.826.0.1.3680043.2.1125.1", frame_of_reference_uid="1.2.826.0.1.3680043.2.1125.2")
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
