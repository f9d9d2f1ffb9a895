"""DICOM: a folder holding one series, or a single DICOM file, read through SimpleITK (GDCM).

The slices of a series are checked and sorted from their headers by :mod:`medseg.io.dicom_series`;
SimpleITK reads their voxels (with the rescale and every transfer syntax GDCM decodes) and computes the
same spacing and direction from the Image Position / Orientation (Patient) tags.
"""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from medseg.errors import ImageReadError
from medseg.image import Image
from medseg.io.dicom_series import is_dicom_file  # noqa: F401 - re-exported: medseg.io reads it here
from medseg.io.itk import _itk_reason, execute_guarded, from_sitk, native_stderr_captured


def read_dicom_series(folder: Path) -> Image:
    """Read the single DICOM series in ``folder``.

    The slices are checked and sorted by :func:`medseg.io.dicom_series.read_series_grid` (one series,
    one orientation and size, evenly spaced slices: a missing slice is an error, not a silently stretched
    volume); SimpleITK then reads their voxels in that order.

    Raises
    ------
    ImageReadError
        When the folder holds no DICOM series, several (their Series Instance UIDs are named), or slices
        that do not form one regular grid (the offending file is named).
    """
    from medseg.io.dicom_series import NotASliceStackError, read_series_grid

    try:
        series = read_series_grid(folder)
    except NotASliceStackError:
        files = [p for p in Path(folder).iterdir() if p.is_file() and is_dicom_file(p)]
        if len(files) == 1:  # one multi-frame object, or one projection image (X-ray) without position
            return read_dicom_file(files[0])
        raise
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in series.files])
    try:
        with native_stderr_captured():
            img = execute_guarded(reader, folder, "DICOM")
    except (RuntimeError, MemoryError) as exc:
        raise ImageReadError(f"cannot read DICOM series {series.series_uid}: {_itk_reason(exc)}", folder) from None
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
