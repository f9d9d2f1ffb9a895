"""Reading NIfTI: voxel values through nibabel, geometry through SimpleITK.

Why two libraries: ITK's NIfTI reader (measured) silently turns NaN voxels into 0 and zero-fills a
truncated file without error, which would hide exactly the problems ``medseg check`` must find;
nibabel reads values faithfully and raises on truncation. Geometry, on the other hand, comes from
ITK's header parsing (qform/sform handling, RAS -> LPS) so that NIfTI agrees with MHA, NRRD and DICOM.
Writing goes through SimpleITK (see :mod:`medseg.io.itk`).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medseg.errors import ImageReadError
from medseg.image import Image


def read_nifti(path: Path) -> Image:
    """Read a .nii / .nii.gz file (3D, 2D, 4D with channels on the 4th axis, or vector)."""
    from medseg.io.itk import _geometry_from_itk, _itk_reason, native_memory_cap, native_stderr_captured

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with native_stderr_captured(), native_memory_cap(path=path):  # ITK's notes on odd headers go to fd 2
            reader.ReadImageInformation()
    except (RuntimeError, MemoryError) as exc:
        if _is_nifti2(path):  # ITK's NIfTI reader here reads NIfTI-1 only
            return _read_nifti2(path)
        raise ImageReadError(f"cannot read as NIfTI (corrupt or truncated header): {_itk_reason(exc)}", path) from None
    try:
        nii = nib.load(str(path))
        data = np.asanyarray(nii.dataobj)
        if data.dtype == np.float64 and nii.get_data_dtype() != np.float64:
            # scaled integers (scl_slope): nibabel gives float64; ITK and nnU-Net use float32 (half the memory)
            data = data.astype(np.float32)
    except Exception as exc:  # nibabel raises EOFError, OSError, ValueError, zlib.error...
        raise ImageReadError(f"cannot read NIfTI data (truncated or corrupt?): {exc}", path) from None
    size = tuple(reader.GetSize())
    dims = reader.GetDimension()
    components = reader.GetNumberOfComponents()
    if data.size != int(np.prod(size, dtype=np.int64)) * components:  # nibabel and ITK read the header differently
        raise ImageReadError(f"corrupt header: {data.size} voxel values for a {'×'.join(map(str, size))} image "
                             f"with {components} component(s)", path)
    if components > 1:
        data = data.reshape(size + (components,), order="F")
    else:
        data = data.reshape(size, order="F")
    array = data.T  # nibabel (and ITK) index order is (x, y, z[, t|c]); ours is reversed
    if components == 1 and dims in (2, 3):
        array = array[None]
    elif components == 1 and dims == 4:
        dims = 3  # the 4th axis holds channels (MSD)
    elif components == 1:
        raise ImageReadError(f"{dims}D images are not supported (2D, 3D, or 3D with channels)", path)
    spacing, origin, direction = _geometry_from_itk(reader, dims)
    return Image(np.ascontiguousarray(array), spacing, origin, direction)


def _is_nifti2(path: Path) -> bool:
    try:
        return isinstance(nib.load(str(path)), nib.Nifti2Image)
    except Exception:  # noqa: BLE001 - any failure means "not a readable NIfTI-2"
        return False


def _read_nifti2(path: Path) -> Image:
    """A NIfTI-2 file, re-expressed as NIfTI-1 (same voxels, qform and sform) and read as usual."""
    import tempfile

    nii = nib.load(str(path))
    if any(int(s) > 32767 for s in nii.shape):
        raise ImageReadError(f"NIfTI-2 image of shape {nii.shape} exceeds what medseg reads (32767 per axis)", path)
    try:
        data = np.asanyarray(nii.dataobj)
    except Exception as exc:  # noqa: BLE001 - nibabel raises EOFError, OSError, ValueError, zlib.error...
        raise ImageReadError(f"cannot read NIfTI data (truncated or corrupt?): {exc}", path) from None
    one = nib.Nifti1Image(data, None)
    one.set_qform(nii.get_qform(), code=int(nii.header["qform_code"]))
    one.set_sform(nii.get_sform(), code=int(nii.header["sform_code"]))
    one.header.set_xyzt_units(*nii.header.get_xyzt_units())
    with tempfile.TemporaryDirectory(prefix=".medseg-nifti2-") as folder:
        target = Path(folder) / "image.nii"
        nib.save(one, target)
        try:
            return read_nifti(target)
        except ImageReadError as exc:
            raise ImageReadError(exc.message, path) from None
