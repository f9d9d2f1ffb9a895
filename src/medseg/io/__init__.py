"""Reading and writing images with their geometry: one entry point per direction, dispatching on the
file extension (or, for folders, on DICOM).

Supported: NIfTI (.nii, .nii.gz), MetaImage (.mha, .mhd), NRRD (.nrrd, .nhdr) and DICOM through
SimpleITK; PNG, TIFF, GIF, JPEG, PPM/PGM/PBM and BMP through Pillow (see :mod:`medseg.io.raster` for
the raster conventions). DICOM images are read-only here; DICOM Segmentation objects are written and read by
:mod:`medseg.io.dicom_seg`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from medseg.errors import GeometryError, ImageReadError, ImageWriteError, MedsegError
from medseg.fileutil import atomic_path
from medseg.image import Image
from medseg.io.dicom import is_dicom_file, read_dicom_file, read_dicom_series
from medseg.io.formats import SUPPORTED_EXTENSIONS, backend_for, image_extension, strip_extension
from medseg.io.itk import read_itk, write_itk
from medseg.io.nifti import read_nifti
from medseg.io.limits import check_header
from medseg.io.raster import read_raster, write_raster

__all__ = ["read_image", "write_image", "image_extension", "strip_extension", "SUPPORTED_EXTENSIONS"]


def _read_one(path: Path) -> Image:
    import logging

    quiet = logging.getLogger("nibabel.global")  # nibabel logs its header fixes; a bad file is our error
    was_disabled, quiet.disabled = quiet.disabled, True
    try:
        return _read_one_unchecked(path)
    except MedsegError as exc:  # e.g. an impossible spacing in a header: name the file
        if exc.path is None:
            raise ImageReadError(f"invalid image: {exc.message}", path) from None
        raise
    except (ValueError, TypeError, IndexError, OverflowError, EOFError, OSError, MemoryError) as exc:
        # a safety net: a reader library failing on a corrupt file is still a bad-input error naming the file
        raise ImageReadError(f"unexpected reader failure ({type(exc).__name__}: {exc})", path) from None
    finally:
        quiet.disabled = was_disabled


def _read_one_unchecked(path: Path) -> Image:
    if path.is_dir():
        return read_dicom_series(path)
    if not path.exists():
        raise ImageReadError("no such file", path)
    if path.stat().st_size == 0:
        raise ImageReadError("file is empty (0 bytes)", path)
    backend = backend_for(path)
    if backend is None and is_dicom_file(path):  # DICOM files often have no extension
        backend = "dicom"
    if backend is not None:
        check_header(path, backend)  # declared size vs file size and memory, before any pixel is read
    if backend is None:
        raise ImageReadError(
            f"unknown image extension '{image_extension(path)}'; supported: {', '.join(SUPPORTED_EXTENSIONS)}",
            path,
        )
    if backend == "itk":
        # NIfTI: voxel values with nibabel, geometry with SimpleITK (NOTES.md, "Data model and I/O")
        return read_nifti(path) if image_extension(path) in (".nii", ".nii.gz") else read_itk(path)
    if backend == "dicom":
        return read_dicom_file(path)
    return read_raster(path)


def read_image(path_or_paths: str | os.PathLike | Sequence[str | os.PathLike]) -> Image:
    """Read an image file, a DICOM series folder, or several files stacked as channels.

    Parameters
    ----------
    path_or_paths : path or sequence of paths
        One file or folder, or one file per channel (e.g. one per MRI modality). Several files must
        lie on the same voxel grid; their channels are concatenated in the given order.

    Returns
    -------
    Image
        Channels first, with spacing, origin and direction in array-axis order.

    Raises
    ------
    ImageReadError
        Missing, empty, truncated or corrupt file, unknown extension, or mixed DICOM series.
    GeometryError
        Files given together do not share a voxel grid (both files are named).

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.nii.gz"
    >>> write_image(Image(np.zeros((1, 2, 3, 4), np.int16), spacing=(3.0, 1.0, 1.0)), path)
    >>> read_image(path).spacing
    (3.0, 1.0, 1.0)
    """
    if isinstance(path_or_paths, (str, os.PathLike)):
        return _read_one(Path(path_or_paths))
    paths = [Path(p) for p in path_or_paths]
    if not paths:
        raise ImageReadError("no image files given")
    images = [_read_one(p) for p in paths]
    if len(images) == 1:
        return images[0]
    first = images[0]
    for path, image in zip(paths[1:], images[1:]):
        diff = first.geometry_difference(image)
        if diff is not None:
            raise GeometryError(f"channel files {paths[0]} and {path} do not share a voxel grid: {diff}")
    names = [n for image in images for n in image.channel_names]
    if len(set(names)) != len(names) or all(n.isdigit() for n in names):
        names = [str(i) for i in range(len(names))]
    array = np.concatenate([image.array for image in images], axis=0)
    return first.with_array(array, names)


def write_image(image: Image, path: str | os.PathLike) -> None:
    """Write ``image`` to ``path`` in the format its extension names, atomically.

    Parameters
    ----------
    image : Image
        Several channels are kept (4D NIfTI, vector MHA/NRRD, RGB raster).
    path : path
        Destination; the file appears only once completely written.

    Raises
    ------
    ImageWriteError
        Unknown extension, or the format cannot hold this image without loss (e.g. floats in PNG,
        non-default geometry in a raster format, DICOM output).

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "label.png"
    >>> write_image(Image(np.array([[[0, 1], [2, 0]]])), path)
    >>> read_image(path).array.tolist()
    [[[0, 1], [2, 0]]]
    """
    path = Path(path)
    backend = backend_for(path)
    if backend is None:
        raise ImageWriteError(
            f"unknown image extension '{image_extension(path)}'; supported: {', '.join(SUPPORTED_EXTENSIONS)}",
            path,
        )
    if backend == "dicom":
        raise ImageWriteError("writing DICOM is not supported; write .nii.gz, .mha or .nrrd", path)
    ext = image_extension(path)
    if ext in (".mhd", ".nhdr"):
        _write_detached(image, path)
        return
    with atomic_path(path) as tmp:
        if backend == "itk":
            write_itk(image, tmp)
        else:
            write_raster(image, tmp, ext)


def _write_detached(image: Image, path: Path) -> None:
    # A header plus a data file: write both under their final names in a temporary folder, then
    # move the data file first and the header last, so a visible header always has its data.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        write_itk(image, tmpdir / path.name)
        for part in sorted(tmpdir.iterdir(), key=lambda p: p.name == path.name):
            os.replace(part, path.parent / part.name)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
