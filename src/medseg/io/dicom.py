"""DICOM: a folder holding one series, or a single DICOM file, read through SimpleITK (GDCM).

SimpleITK sorts the slices along the slice normal and computes spacing and direction from the
Image Position / Orientation (Patient) tags, which is what we need for geometry; pydicom would make us
re-implement that sorting.
"""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from medseg.errors import ImageReadError
from medseg.image import Image
from medseg.io.itk import _itk_reason, execute_guarded, from_sitk, native_memory_cap, native_stderr_captured


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` carries the DICOM preamble magic ("DICM" at byte 128)."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def read_dicom_series(folder: Path) -> Image:
    """Read the single DICOM series in ``folder``.

    Raises
    ------
    ImageReadError
        When the folder holds no DICOM series, or several (their Series Instance UIDs are named).
    """
    try:
        series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError as exc:
        raise ImageReadError(f"cannot scan for DICOM series: {_itk_reason(exc)}", folder) from None
    if not series:
        raise ImageReadError("folder holds no DICOM series", folder)
    if len(series) > 1:
        raise ImageReadError(
            f"folder mixes {len(series)} DICOM series ({', '.join(series)}); "
            "put each series in its own folder",
            folder,
        )
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        with native_stderr_captured():
            img = execute_guarded(reader, folder, "DICOM")
    except (RuntimeError, MemoryError) as exc:
        raise ImageReadError(f"cannot read DICOM series {series[0]}: {_itk_reason(exc)}", folder) from None
    return from_sitk(img)


def read_dicom_file(path: Path) -> Image:
    """Read one DICOM file (a single slice, or a multi-frame object) as an Image."""
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        img = execute_guarded(reader, path, "DICOM")
    except (RuntimeError, MemoryError) as exc:
        raise ImageReadError(f"cannot read as DICOM: {_itk_reason(exc)}", path) from None
    if img.GetDimension() == 3 and img.GetSize()[2] == 1:
        img = img[:, :, 0]  # a single slice is a 2D image
    return from_sitk(img)
