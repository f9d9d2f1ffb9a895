"""Turning an uploaded file into an :class:`~medseg.Image`, safely.

No name sent by the client ever reaches the file system: the format is recognised from the file's first
bytes (its magic number), the file is stored under a name the server chooses, and the members of a zipped
DICOM series are extracted one by one under numbered names (after refusing absolute paths, ``..`` and
links, and while counting the bytes actually written, so a zip bomb stops at the limit).
The image size is checked from the header before the pixels are read.
"""

from __future__ import annotations

import shutil
import stat
import struct
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from medseg.errors import MedsegError
from medseg.image import Image
from medseg.serve.errors import RequestError
from medseg.serve.limits import ServeLimits

#: what the service accepts (for messages and the viewer)
ACCEPTED = "NIfTI (.nii, .nii.gz), MetaImage (.mha), NRRD (.nrrd), PNG / TIFF / JPEG / BMP / GIF, or a zipped DICOM series"
CHUNK = 1024 * 1024


def sniff_format(head: bytes) -> str | None:
    """The server's file extension for a file starting with ``head`` (its first 4 KiB), or None.

    Examples
    --------
    >>> sniff_format(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8)), sniff_format(b"NRRD0004\\n"), sniff_format(b"hello")
    ('.png', '.nrrd', None)
    """
    if head.startswith(b"\x1f\x8b"):
        # a gzip stream is accepted only when it holds a NIfTI header
        return ".nii.gz" if _is_nifti(_gunzip_head(head)) else None
    if _is_nifti(head):
        return ".nii"
    if head.startswith(b"NRRD000"):
        return ".nrrd"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return ".tif"
    if head.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return ".gif"
    if head.startswith(b"BM"):
        return ".bmp"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip (or an empty one)
        return ".zip"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return ".dcm"
    text = head.decode("latin-1")
    if "ElementDataFile" in text and ("NDims" in text or "ObjectType" in text):
        return ".mha"
    return None


def _gunzip_head(head: bytes, size: int = 352) -> bytes:
    """The first ``size`` decompressed bytes of a gzip stream's beginning ('' when they cannot be had)."""
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        return decoder.decompress(head, size)
    except zlib.error:
        return b""


def _is_nifti(head: bytes) -> bool:
    """A NIfTI-1 (348-byte header, magic at 344) or NIfTI-2 (540-byte header, magic at 4) header."""
    if len(head) < 348:
        return False
    sizes = {struct.unpack("<i", head[:4])[0], struct.unpack(">i", head[:4])[0]}
    if 348 in sizes and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return True
    return 540 in sizes and head[4:8] in (b"n+2\x00", b"ni2\x00")


def store_upload(stream: BinaryIO, folder: Path, limits: ServeLimits) -> Path:
    """Copy an upload into ``folder`` under a server-chosen name; returns the stored path.

    Raises
    ------
    RequestError
        413 when larger than ``limits.max_upload_bytes``; 415 when not a format the service reads.
    """
    head = stream.read(4096)
    if not head:
        raise RequestError(400, "the uploaded file is empty")
    ext = sniff_format(head)
    if ext is None:
        raise RequestError(415, f"the upload is not an image the service reads ({ACCEPTED})")
    path = folder / f"upload{ext}"
    size = len(head)
    with open(path, "wb") as out:
        out.write(head)
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > limits.max_upload_bytes:
                raise RequestError(413, f"the upload exceeds the limit of {limits.max_upload_bytes} bytes")
            out.write(chunk)
    return path


def _bad_member(name: str) -> str | None:
    """Why a zip member name is refused (None: acceptable)."""
    if "\\" in name or "\x00" in name:
        return "contains a backslash or NUL"
    path = PurePosixPath(name)
    if path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    if ".." in path.parts:
        return "leaves the archive's folder ('..')"
    return None


def extract_dicom_zip(path: Path, folder: Path, limits: ServeLimits) -> Path:
    """Extract the files of a zipped DICOM series into ``folder`` as ``00000.dcm``, ``00001.dcm``…

    Folders inside the zip are flattened (their names are never used); members whose name would leave
    the archive, links, too many members or too many bytes are refused with a 400.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise RequestError(400, f"the zip archive cannot be read ({exc})") from None
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > limits.max_zip_members:
            raise RequestError(413, f"the zip holds {len(members)} files; the limit is {limits.max_zip_members}")
        for index, member in enumerate(archive.infolist()):
            reason = _bad_member(member.filename)
            if reason:
                raise RequestError(400, f"zip member '{member.filename[:200]}' {reason}; refused")
            if stat.S_ISLNK(member.external_attr >> 16):
                raise RequestError(400, f"zip member '{member.filename[:200]}' is a symbolic link; refused")
            if member.is_dir():
                continue
            target = folder / f"{index:05d}.dcm"
            try:
                with archive.open(member) as src, open(target, "wb") as dst:
                    while chunk := src.read(CHUNK):
                        total += len(chunk)
                        if total > limits.max_unzipped_bytes:
                            raise RequestError(413, "the zip expands beyond the limit of "
                                               f"{limits.max_unzipped_bytes} bytes")
                        dst.write(chunk)
            except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
                raise RequestError(400, f"zip member '{member.filename[:200]}' cannot be extracted ({exc})") from None
    if not any(folder.iterdir()):
        raise RequestError(400, "the zip archive holds no files")
    return folder


def header_voxels(path: Path) -> int:
    """Voxels × channels of the image at ``path`` (a file or a DICOM folder), from headers only."""
    if path.is_dir():
        import pydicom

        files = sorted(path.iterdir())
        try:
            first = pydicom.dcmread(files[0], stop_before_pixels=True)
            per_file = int(first.Rows) * int(first.Columns) * int(getattr(first, "NumberOfFrames", 1) or 1) * int(
                getattr(first, "SamplesPerPixel", 1) or 1)
        except Exception as exc:  # noqa: BLE001 — any unreadable header is a bad upload
            raise RequestError(400, f"the zip does not hold a readable DICOM series ({type(exc).__name__})") from None
        return per_file * len(files)
    if path.suffix in (".png", ".tif", ".jpg", ".gif", ".bmp"):
        from PIL import Image as PILImage

        try:
            with PILImage.open(path) as im:
                return int(im.width) * int(im.height) * len(im.getbands()) * int(getattr(im, "n_frames", 1))
        except Exception as exc:  # noqa: BLE001
            raise RequestError(400, f"the uploaded image cannot be read ({type(exc).__name__}: {exc})") from None
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise RequestError(400, "the uploaded image's header cannot be read (truncated or corrupt file)") from None
    voxels = 1
    for n in reader.GetSize():
        voxels *= int(n)
    return voxels * int(reader.GetNumberOfComponents())


def read_upload(path: Path, work: Path, limits: ServeLimits) -> tuple[Image, Path, str]:
    """Read a stored upload, checking its size first.

    Returns
    -------
    (Image, Path, str)
        The image, the path the worker reads it from again (the file, or the extracted DICOM folder) and
        the source kind (``"dicom"`` or the format's extension).
    """
    from medseg.io import read_image

    source, kind = path, path.suffix if path.suffixes[-2:] != [".nii", ".gz"] else ".nii.gz"
    if path.suffix == ".zip":
        source, kind = extract_dicom_zip(path, work / "dicom", limits), "dicom"
        path.unlink()
    elif path.suffix == ".dcm":
        kind = "dicom"
    voxels = header_voxels(source)
    if voxels > limits.max_voxels:
        raise RequestError(413, f"the image has {voxels} voxels × channels; the limit is {limits.max_voxels}")
    try:
        image = read_image(source)
    except MedsegError as exc:
        raise RequestError(400, f"the upload cannot be read as an image: {exc.message}") from None
    except (OSError, ValueError, RuntimeError, EOFError) as exc:  # a reader library's own complaint
        raise RequestError(400, f"the upload cannot be read as an image: {type(exc).__name__}: {exc}") from None
    if int(image.array.size) > limits.max_voxels:
        raise RequestError(413, f"the image has {image.array.size} voxels × channels; the limit is "
                           f"{limits.max_voxels}")
    return image, source, kind


def remove_tree(path: Path) -> None:
    """Remove a job's folder (no error when it is already gone)."""
    shutil.rmtree(path, ignore_errors=True)
