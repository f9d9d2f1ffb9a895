"""A DICOM series as a grid: the slices' headers read with pydicom, checked and sorted along the slice
normal, the voxel grid they span, and a writer of single-frame series (for tests and examples).

SimpleITK (:mod:`medseg.io.dicom`) reads the voxels; this module owns what a series must satisfy to be one
regular grid — one series per folder, one orientation, one in-plane size and spacing, evenly spaced
slices along the normal (no missing slice, no gantry tilt) — and the mapping from slices to array
indices that a DICOM Segmentation needs (:mod:`medseg.io.dicom_seg`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from medseg.constants import SPACING_RTOL
from medseg.errors import ImageReadError, ImageWriteError
from medseg.fileutil import atomic_dir
from medseg.image import Image

#: MR Image Storage: what :func:`write_dicom_series` writes.
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_DICOMDIR = "1.2.840.10008.1.3.10"
#: Millimetres under which two slice positions or steps are the same: scanners and exports round Image
#: Position (Patient) to as little as 2 decimals.
_POSITION_ATOL = 0.01
#: Relative deviation of a slice step from the median step that counts as uneven: far below the 100 % of
#: a missing slice, above the rounding of positions.
_STEP_RTOL = 0.01
_ORIENTATION_ATOL = 1e-4


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` carries the DICOM preamble magic ("DICM" at byte 128)."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


class NotASliceStackError(ImageReadError):
    """The files are no stack of single-frame slices with positions: a multi-frame object, or a slice
    without Image Position / Orientation (Patient) or Pixel Spacing (a projection image)."""


@dataclass
class SeriesGrid:
    """The slices of one series, sorted along the slice normal, and the grid they span.

    ``headers[k]`` is the slice at array index ``k`` of ``grid`` (an :class:`~medseg.image.Image` whose
    array is a zero-cost broadcast: only its shape and geometry are meant to be used).
    """

    folder: Path
    headers: list[Dataset]
    files: list[Path]
    grid: Image

    @property
    def series_uid(self) -> str:
        return str(self.headers[0].SeriesInstanceUID)

    @property
    def frame_of_reference_uid(self) -> str:
        return str(self.headers[0].get("FrameOfReferenceUID", ""))


def _dicom_headers(folder: Path) -> list[tuple[Path, Dataset]]:
    found = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue  # not DICOM (a README, a thumbnail): a series folder may hold other files
        sop_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
        if sop_class == _DICOMDIR or "SeriesInstanceUID" not in ds:
            continue
        found.append((path, ds))
    return found


def _vector(ds: Dataset, keyword: str, size: int, path: Path) -> np.ndarray:
    value = ds.get(keyword)
    if value is None or len(value) != size:
        raise NotASliceStackError(f"no valid {keyword} ({size} numbers): cannot place the slice in space", path)
    return np.asarray([float(v) for v in value], dtype=np.float64)


def series_folders(root: str | Path) -> list[Path]:
    """The sub-folders of ``root`` that hold DICOM files (one level down), sorted by name: one series each,
    as a PACS export or a study laid out per series gives them."""

    found = []
    for sub in sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")):
        if any(is_dicom_file(f) for f in sub.iterdir() if f.is_file()):
            found.append(sub)
    return found


def read_series_grid(folder: str | Path) -> SeriesGrid:
    """Read, check and sort the headers of the single DICOM series in ``folder``.

    Parameters
    ----------
    folder : path
        A folder holding the single-frame files of one series (other non-DICOM files are ignored).

    Returns
    -------
    SeriesGrid
        Headers sorted along the slice normal and the voxel grid (array-axis order, like every Image).

    Raises
    ------
    ImageReadError
        No series, several series (their UIDs are named), a slice without position / orientation, slices
        that differ in orientation, size or pixel spacing, two slices at one position, uneven slice steps
        (a missing slice) or slices off the normal (gantry tilt); the offending file is named.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "series"
    >>> _ = write_dicom_series(Image(np.zeros((1, 3, 4, 5), np.int16), spacing=(2.5, 0.8, 0.8)), folder)
    >>> read_series_grid(folder).grid.spacing
    (2.5, 0.8, 0.8)
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError("not a folder (a DICOM series is a folder of slices)", folder)
    found = _dicom_headers(folder)
    if not found:
        raise ImageReadError("folder holds no DICOM series", folder)
    series = sorted({str(ds.SeriesInstanceUID) for _, ds in found})
    if len(series) > 1:
        raise ImageReadError(f"folder mixes {len(series)} DICOM series ({', '.join(series)}); "
                             "put each series in its own folder", folder)
    if any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for _, ds in found):
        path = next(p for p, ds in found if int(ds.get("NumberOfFrames", 1) or 1) > 1)
        raise NotASliceStackError("multi-frame DICOM objects are not read as a series; give a folder of "
                                  "single-frame slices", path)
    first_path, first = found[0]
    orientation = _vector(first, "ImageOrientationPatient", 6, first_path)
    row, col = orientation[:3], orientation[3:]
    normal = np.cross(row, col)
    pixel_spacing = _vector(first, "PixelSpacing", 2, first_path)
    size = (int(first.Rows), int(first.Columns))
    positions = []
    for path, ds in found:
        if not np.allclose(_vector(ds, "ImageOrientationPatient", 6, path), orientation, atol=_ORIENTATION_ATOL):
            raise ImageReadError(f"slice orientation differs from {first_path.name}'s", path)
        if (int(ds.Rows), int(ds.Columns)) != size:
            raise ImageReadError(f"slice size {int(ds.Rows)}x{int(ds.Columns)} differs from "
                                 f"{first_path.name}'s {size[0]}x{size[1]}", path)
        if not np.allclose(_vector(ds, "PixelSpacing", 2, path), pixel_spacing, rtol=SPACING_RTOL):
            raise ImageReadError(f"pixel spacing differs from {first_path.name}'s", path)
        positions.append(_vector(ds, "ImagePositionPatient", 3, path))
    order = np.argsort([p @ normal for p in positions], kind="stable")
    found = [found[i] for i in order]
    positions = np.asarray([positions[i] for i in order])
    step = _slice_step(positions, normal, [p for p, _ in found]) if len(found) > 1 else _single_slice_step(first)
    # ITK's axes (column, row, slice) as physical vectors; medseg keeps them in array-axis order, reversed
    axes = np.stack([row, col, normal], axis=1)
    grid = Image(np.broadcast_to(np.zeros((), np.uint8), (1, len(found), *size)),
                 spacing=(step, pixel_spacing[0], pixel_spacing[1]), origin=positions[0][::-1],
                 direction=axes[::-1, ::-1])
    return SeriesGrid(folder, [ds for _, ds in found], [p for p, _ in found], grid)


def _single_slice_step(ds: Dataset) -> float:
    """A single slice's step as GDCM reads an MR slice: Spacing Between Slices, else 1 mm (the step of one
    slice is not defined; :func:`medseg.io.dicom_seg.align_to_series` does not compare it)."""
    value = ds.get("SpacingBetweenSlices")
    return float(value) if value not in (None, "") and float(value) > 0 else 1.0


def _slice_step(positions: np.ndarray, normal: np.ndarray, files: Sequence[Path]) -> float:
    """The one distance between neighbouring slices; uneven steps and sheared stacks are errors."""
    offsets = positions - positions[0]
    along = offsets @ normal
    off_normal = np.linalg.norm(offsets - along[:, None] * normal, axis=1)
    if off_normal.max() > max(_POSITION_ATOL, _STEP_RTOL * abs(along[-1]) / max(len(along) - 1, 1)):
        k = int(np.argmax(off_normal))
        raise ImageReadError(f"slice lies {off_normal[k]:.3g} mm off the slice normal through {files[0].name} "
                             "(gantry tilt or a sheared stack): not a regular grid", files[k])
    steps = np.diff(along)
    if steps.min() <= _POSITION_ATOL:
        k = int(np.argmin(steps))
        raise ImageReadError(f"two slices at the same position ({files[k].name} and {files[k + 1].name})",
                             files[k + 1])
    step = float(np.median(steps))
    bad = np.flatnonzero(np.abs(steps - step) > max(_POSITION_ATOL, _STEP_RTOL * step))
    if bad.size:
        k = int(bad[0])
        hint = f" ({round(steps[k] / step) - 1} missing slice(s)?)" if steps[k] > step else ""
        raise ImageReadError(f"uneven slice spacing: {steps[k]:.4g} mm from {files[k].name} to this slice, "
                             f"{step:.4g} mm elsewhere{hint}", files[k + 1])
    return step


def _ds(value: float) -> str:
    return format_number_as_ds(float(value))


def _stored_values(array: np.ndarray) -> tuple[np.ndarray, float, float]:
    """int16 pixel values with the rescale slope / intercept that give back ``array`` (exactly for
    integers within int16; quantised to 65,536 levels otherwise)."""
    finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    lower, upper = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    integral = array.dtype.kind in "iub" or bool(np.all(np.mod(finite, 1) == 0))
    if integral and lower >= -32768 and upper <= 32767:
        return array.astype(np.int16), 1.0, 0.0
    slope = (upper - lower) / 65535 or 1.0
    stored = np.round((np.nan_to_num(array, nan=lower) - lower) / slope - 32768)
    return np.clip(stored, -32768, 32767).astype(np.int16), slope, lower + 32768 * slope


def write_dicom_series(image: Image, folder: str | Path, *, series_uid: str | None = None,
                       study_uid: str | None = None, frame_of_reference_uid: str | None = None,
                       patient_id: str = "MEDSEG-SYNTHETIC", patient_name: str = "Synthetic^Medseg",
                       series_description: str = "medseg series",
                       seed: int | None = None) -> SeriesGrid:
    """Write a single-channel 3D image as an MR series of single-frame files (one per array slice).

    Made for tests, examples and benchmarks: the files carry the image's exact geometry (any
    orientation, any spacing) and the few attributes that viewers and highdicom need.

    Parameters
    ----------
    image : Image
        ``(1, Z, Y, X)``; array slice ``k`` becomes instance ``k + 1``. Integer values within int16 are
        stored exactly; other values are quantised to int16 with Rescale Slope / Intercept.
    folder : path
        Created; must not exist (the series appears complete or not at all).
    series_uid, study_uid, frame_of_reference_uid : str, optional
        New UIDs by default (derived from ``seed`` when given, so a test can rebuild the same series).
    patient_id, patient_name, series_description : str
        Written as is.

    Returns
    -------
    SeriesGrid
        The series as :func:`read_series_grid` reads it back.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "series"
    >>> write_dicom_series(Image(np.ones((1, 2, 3, 4), np.int16)), folder).series_uid != ""
    True
    """
    folder = Path(folder)
    if image.spatial_dims != 3 or image.num_channels != 1:
        raise ImageWriteError(f"a DICOM series is written from a single-channel 3D image; got shape "
                              f"{image.array.shape}", folder)
    if folder.exists():
        raise ImageWriteError("output folder exists", folder)

    def uid(name: str, given: str | None) -> str:
        if given:
            return given
        return generate_uid(entropy_srcs=[str(seed), name]) if seed is not None else generate_uid()

    series_uid, study_uid = uid("series", series_uid), uid("study", study_uid)
    frame_uid = uid("frame", frame_of_reference_uid)
    stored, slope, intercept = _stored_values(np.asarray(image.array[0]))
    axes = np.asarray(image.direction)[::-1, ::-1]  # physical (x, y, z) rows; columns = ITK axes (x, y, z)
    origin = np.asarray(image.origin[::-1])
    step = image.spacing[0] * axes[:, 2]
    orientation = [_ds(v) for v in (*axes[:, 0], *axes[:, 1])]
    with atomic_dir(folder) as tmp:
        for k, plane in enumerate(stored):
            sop_uid = uid(f"instance{k}", None)
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
            meta.MediaStorageSOPInstanceUID = sop_uid
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID, ds.SOPInstanceUID = MR_IMAGE_STORAGE, sop_uid
            ds.Modality, ds.Manufacturer = "MR", "medseg"
            ds.PatientName, ds.PatientID = patient_name, patient_id
            ds.PatientBirthDate, ds.PatientSex = "", "O"
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
            ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, k + 1
            ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName = "", "", "", ""
            ds.SeriesDescription = series_description
            ds.PositionReferenceIndicator = ""
            ds.ImagePositionPatient = [_ds(v) for v in origin + k * step]
            ds.ImageOrientationPatient = orientation
            ds.PixelSpacing = [_ds(image.spacing[1]), _ds(image.spacing[2])]
            ds.SliceThickness = _ds(image.spacing[0])
            ds.SpacingBetweenSlices = _ds(image.spacing[0])
            ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
            ds.Laterality, ds.PatientPosition = "", "HFS"
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "RM", "NONE", "", "3D"
            ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = "", "", ""
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.Rows, ds.Columns = plane.shape
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            if (slope, intercept) != (1.0, 0.0):  # not in the MR IOD: only when values need it
                ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = _ds(slope), _ds(intercept), "US"
            ds.PixelData = np.ascontiguousarray(plane).tobytes()
            ds.save_as(tmp / f"slice_{k:04d}.dcm", enforce_file_format=True)
    return read_series_grid(folder)
