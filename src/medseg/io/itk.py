"""NIfTI, MetaImage and NRRD through SimpleITK, and the exact SimpleITK <-> Image conversion.

NIfTI voxel values are read with nibabel (see :mod:`medseg.io.nifti` for why).

SimpleITK is used for NIfTI as well (not nibabel) so that every format shares ITK's LPS physical
convention: an image read from .nii.gz and the same image read from .mha or DICOM have identical
origin and direction.

Channels
--------
- NIfTI: several channels of a 3D image are written as a 4D NIfTI whose 4th axis is the channel, the
  Medical Segmentation Decathlon convention; 2D multi-channel images as a NIfTI vector image.
- MetaImage / NRRD: several channels are written as a vector image (``ElementNumberOfChannels``).
- Reading accepts all of these. Channel names are stored in MetaImage / NRRD metadata
  (key ``medseg_channel_names``); NIfTI has no place for them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import SimpleITK as sitk

from medseg.errors import ImageReadError, ImageWriteError
from medseg.image import Image
from medseg.io.formats import image_extension

CHANNEL_NAMES_KEY = "medseg_channel_names"

# ITK has no bool or float16 pixel type: store them as the nearest lossless type.
_WRITE_DTYPES = {np.dtype(bool): np.uint8, np.dtype(np.float16): np.float32}


def _geometry_from_itk(img: sitk.Image | sitk.ImageFileReader, dims: int) -> tuple[tuple, tuple, np.ndarray]:
    """Spacing, origin and direction of the first ``dims`` ITK axes, in array-axis order."""
    full = img.GetDimension()
    spacing = img.GetSpacing()[:dims][::-1]
    origin = img.GetOrigin()[:dims][::-1]
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(full, full)[:dims, :dims]
    return spacing, origin, direction[::-1, ::-1].copy()


def read_geometry(path: Path) -> tuple[tuple[int, ...], tuple[float, ...]] | None:
    """Spatial shape and spacing (array-axis order) from a 3D volume file's header alone, without its voxels;
    None where the header does not say (a folder, a 2D or unreadable file: read the image instead)."""
    path = Path(path)
    if not path.is_file():
        return None
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with native_stderr_captured(), native_memory_cap(path=path):
            reader.ReadImageInformation()
    except (RuntimeError, MemoryError):
        return None
    if reader.GetDimension() not in (3, 4):  # 4D: channels on the 4th axis (MSD)
        return None
    spacing, _, _ = _geometry_from_itk(reader, 3)
    return tuple(int(v) for v in reader.GetSize()[:3][::-1]), tuple(float(v) for v in spacing)


def from_sitk(img: sitk.Image, channel_names: tuple[str, ...] = ()) -> Image:
    """Convert a SimpleITK image (scalar, vector, or 4D with channels on the 4th axis) to an Image."""
    array = sitk.GetArrayFromImage(img)
    dims = img.GetDimension()
    if img.GetNumberOfComponentsPerPixel() > 1:
        array = np.moveaxis(array, -1, 0)  # (..., C) -> (C, ...)
    elif dims == 4:
        dims = 3  # 4D NIfTI (MSD): ITK's 4th axis is the first array axis -> channels
    elif dims in (2, 3):
        array = array[None]
    else:
        raise ImageReadError(f"{dims}D images are not supported (2D, 3D, or 3D with channels)")
    spacing, origin, direction = _geometry_from_itk(img, dims)
    if channel_names and len(channel_names) != array.shape[0]:
        channel_names = ()
    return Image(np.ascontiguousarray(array), spacing, origin, direction, channel_names)


def _set_geometry(img: sitk.Image, image: Image) -> None:
    img.SetSpacing(image.spacing[::-1])
    img.SetOrigin(image.origin[::-1])
    img.SetDirection(np.asarray(image.direction)[::-1, ::-1].ravel().tolist())


def to_sitk(image: Image, channels_as: str = "vector") -> sitk.Image:
    """Convert an Image to SimpleITK. Several channels become a vector image (``channels_as="vector"``)
    or, for 3D, a 4D image with channels on the 4th axis (``channels_as="axis"``)."""
    array = image.array
    if array.dtype in _WRITE_DTYPES:
        array = array.astype(_WRITE_DTYPES[array.dtype])
    if image.num_channels == 1:
        img = sitk.GetImageFromArray(array[0])
        _set_geometry(img, image)
    elif channels_as == "axis" and image.spatial_dims == 3:
        parts = []
        for channel in array:
            part = sitk.GetImageFromArray(channel)
            _set_geometry(part, image)
            parts.append(part)
        img = sitk.JoinSeries(parts)  # 4th axis: origin 0, spacing 1 (MSD convention)
    else:
        img = sitk.GetImageFromArray(np.moveaxis(array, 0, -1), isVector=True)
        _set_geometry(img, image)
    return img


#: Address space a native header pass may add beyond what the process has (plus twice the file size, as
#: GDCM reads the whole file): GDCM allocated 0.8–12 GB on a few fuzzed 2.5 KB DICOM files, so native
#: reads run under a cap. 512 MiB leaves room for allocator arenas of reader threads.
HEADER_PASS_BYTES = 512 << 20


def _vm_size() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@contextlib.contextmanager
def native_memory_cap(extra_bytes: int = HEADER_PASS_BYTES, path: Path | None = None) -> Iterator[None]:
    """Limit the address space the process may grow by inside the block (Linux, main thread), so a
    native reader fooled by a corrupt header fails with an error instead of taking the machine's memory.

    The previous limit is restored on exit. Elsewhere (other threads, other systems) nothing changes.
    """
    try:
        import resource
    except ImportError:  # not POSIX
        yield
        return
    current = _vm_size()
    if path is not None:
        try:
            extra_bytes += 2 * Path(path).stat().st_size
        except OSError:
            pass
    if current is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = current + int(extra_bytes)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    if soft != resource.RLIM_INFINITY:
        cap = min(cap, soft)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def reader_bytes(reader: sitk.ImageFileReader) -> int:
    """Bytes of the pixel data a reader's header (after ``ReadImageInformation``) declares."""
    import math

    components = max(int(reader.GetNumberOfComponents()), 1)
    try:
        probe = sitk.Image([1] * min(reader.GetDimension(), 3), reader.GetPixelID(), components)
        itemsize = sitk.GetArrayViewFromImage(probe).dtype.itemsize
    except (RuntimeError, TypeError, ValueError):
        itemsize = 8
    return math.prod(int(s) for s in reader.GetSize()) * itemsize * components


def execute_guarded(reader, path: Path, what: str):
    """``reader.Execute()`` with native stderr captured and memory capped at twice the declared size."""
    extra = HEADER_PASS_BYTES
    if isinstance(reader, sitk.ImageFileReader):
        with native_stderr_captured(), native_memory_cap(path=path):
            reader.ReadImageInformation()
        extra += 2 * reader_bytes(reader)
    elif isinstance(reader, sitk.ImageSeriesReader) and reader.GetFileNames():
        # a series: every file is read whole, and the volume is (slices × the first slice's declared size)
        names = reader.GetFileNames()
        first = sitk.ImageFileReader()
        first.SetFileName(names[0])
        with native_stderr_captured(), native_memory_cap(path=Path(names[0])):
            first.ReadImageInformation()
        extra += 2 * len(names) * reader_bytes(first) + 2 * sum(Path(n).stat().st_size for n in names)
    with native_stderr_captured() as noise, native_memory_cap(extra, path if path.is_file() else None):
        image = reader.Execute()
    if any("not read completely" in line for line in noise):
        raise ImageReadError(f"cannot read as {what}: truncated or corrupt pixel data", path)
    return image


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[list[str]]:
    """Capture what native libraries (ITK's MetaIO, GDCM) print on file descriptor 2 inside the block.

    Yields a list that receives the captured lines, so a reader can fold them into its own one-line
    error instead of letting them surround medseg's message. Only in the main thread (the descriptor is
    process-wide); elsewhere nothing is captured.
    """
    lines: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield lines
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield lines
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(ln.strip() for ln in sink.read().decode("utf-8", "replace").splitlines() if ln.strip())


def read_itk(path: Path) -> Image:
    """Read MetaImage / NRRD (and NIfTI geometry) with SimpleITK; NIfTI voxels go through
    :func:`medseg.io.nifti.read_nifti` (chosen by :func:`medseg.io.read_image`)."""
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        img = execute_guarded(reader, path, image_extension(path))
    except (RuntimeError, MemoryError) as exc:
        raise ImageReadError(f"cannot read as {image_extension(path)}: {_itk_reason(exc)}", path) from None
    names: tuple[str, ...] = ()
    if img.HasMetaDataKey(CHANNEL_NAMES_KEY):
        names = tuple(n for n in img.GetMetaData(CHANNEL_NAMES_KEY).split("|"))
    try:
        return from_sitk(img, names)
    except ImageReadError as exc:
        raise ImageReadError(exc.message, path) from None


def write_itk(image: Image, path: Path) -> None:
    """Write NIfTI / MetaImage / NRRD with SimpleITK to exactly ``path`` (the caller makes it atomic)."""
    ext = image_extension(path)
    img = to_sitk(image, channels_as="axis" if ext in (".nii", ".nii.gz") else "vector")
    default_names = tuple(str(i) for i in range(image.num_channels))
    if ext not in (".nii", ".nii.gz") and image.channel_names != default_names:
        img.SetMetaData(CHANNEL_NAMES_KEY, "|".join(image.channel_names))
    try:
        sitk.WriteImage(img, str(path), useCompression=ext in (".mha", ".nrrd", ".mhd"))
    except RuntimeError as exc:
        raise ImageWriteError(f"cannot write {ext}: {_itk_reason(exc)}", path) from None


def _itk_reason(exc: Exception) -> str:
    # ITK messages are multi-line with file/line noise; keep the last informative line.
    text = str(exc)
    if isinstance(exc, MemoryError) or "bad_alloc" in text or "memory" in text.lower():
        return "the reader ran out of its memory allowance (corrupt header?)"
    if "No such file or directory" in text or "data not read completely" in text:
        # MetaIO reports a short read of an existing file as errno's last value
        return "truncated or corrupt pixel data"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines):
        if not line.startswith(("itk::", "Exception", "sitk::")) and len(line) > 3:
            return line
    return lines[-1] if lines else "unreadable"
