"""Sizes a file's header declares, checked before any pixel is read.

A 1 KB ``.nii.gz`` whose header claims 1100³ float32 voxels would make a reader allocate 5.4 GB before
failing; a header near the machine's memory would take the machine down. So every reader's header is
read first (NIfTI, MHA/MHD, NRRD, DICOM through SimpleITK's header pass; raster formats through Pillow's
lazy open), and the declared number of bytes is compared with

- the file's size: uncompressed data must fit in the file (else it is truncated), and compressed
  (zlib / gzip / PNG's deflate) data cannot expand more than :data:`MAX_DEFLATE_RATIO` times;
- the memory available now (:func:`medseg.resources.available_ram`), with room for one working copy.
"""

from __future__ import annotations

import math
from pathlib import Path


from medseg.errors import ImageReadError
from medseg.io.formats import RASTER_EXTENSIONS, image_extension

#: Deflate's largest possible expansion is 1032:1 (RFC 1951, 258-byte matches in ~2 bits); a larger
#: declared/file-size ratio for zlib, gzip or PNG data cannot be a valid file.
MAX_DEFLATE_RATIO = 1100
#: Largest expansion of any other codec medseg's readers meet (LZW in TIFF/GIF reaches ~1365:1 with
#: 12-bit codes, PackBits 64:1, RLE 128:1, JPEG and JPEG 2000 far less on real images): bound for
#: raster files and compressed DICOM, so a few kilobytes can never claim gigabytes.
MAX_CODEC_RATIO = 4096
#: Readers hold the decoded array plus at most one converted copy.
READ_COPIES = 2

_UNCOMPRESSED_DICOM = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")


def declared_bytes(shape, itemsize: int) -> int:
    """Bytes of an array of ``shape`` with ``itemsize``-byte elements (Python ints: no overflow)."""
    return math.prod(int(s) for s in shape) * int(itemsize)


def check_declared(path: Path, nbytes: int, *, stored_bytes: int | None, compression: str | None,
                   description: str) -> None:
    """Refuse ``path`` when ``nbytes`` (declared by its header) cannot be in the file or in memory.

    Parameters
    ----------
    nbytes : int
        Bytes the header declares for the pixel data.
    stored_bytes : int or None
        Bytes available in the file for the pixel data (None: unknown).
    compression : {"none", "deflate", "codec", None}
        How the data is stored: uncompressed, zlib/gzip/PNG deflate, another bounded codec
        (:data:`MAX_CODEC_RATIO`), or unknown (only memory is checked).
    description : str
        The declared size in words, e.g. "1100×1100×1100 float32".
    """
    from medseg.resources import available_ram

    if stored_bytes is not None and compression == "none" and nbytes > stored_bytes:
        raise ImageReadError(
            f"truncated: the header declares {description} ({_size(nbytes)}) but the file holds {_size(stored_bytes)} "
            "of pixel data", path)
    if stored_bytes is not None and compression == "deflate" and nbytes > MAX_DEFLATE_RATIO * max(stored_bytes, 1):
        raise ImageReadError(
            f"corrupt header: it declares {description} ({_size(nbytes)}), more than {_size(stored_bytes)} of "
            f"compressed data can hold (at most {MAX_DEFLATE_RATIO}:1)", path)
    if stored_bytes is not None and compression == "codec" and nbytes > MAX_CODEC_RATIO * max(stored_bytes, 1):
        raise ImageReadError(
            f"corrupt header: it declares {description} ({_size(nbytes)}), more than {_size(stored_bytes)} of "
            f"compressed data can hold (at most {MAX_CODEC_RATIO}:1)", path)
    available = available_ram()
    if READ_COPIES * nbytes > available:
        raise ImageReadError(
            f"the header declares {description} ({_size(nbytes)}); reading it needs about "
            f"{_size(READ_COPIES * nbytes)} of memory but {_size(available)} is available", path)


def _size(nbytes: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} bytes"


def _describe(shape, dtype: str) -> str:
    return f"{'×'.join(str(int(s)) for s in shape)} {dtype}"


# --- per format ------------------------------------------------------------------------------------
def _check_nifti(path: Path) -> None:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        header = image.header
        shape = header.get_data_shape()
        dtype = header.get_data_dtype()
        # where nibabel will read the data (vox_offset 0 in a single file means "right after the header")
        offset = int(getattr(image.dataobj, "offset", 0) or 0)
    except Exception as exc:  # nibabel raises many types for a bad header
        raise ImageReadError(f"cannot read as NIfTI (corrupt or truncated header): {exc}", path) from None
    if any(int(s) < 0 for s in shape):
        raise ImageReadError(f"corrupt header: negative dimension in {shape}", path)
    nbytes = declared_bytes(shape, dtype.itemsize)
    gz = path.name.lower().endswith(".gz")
    size = path.stat().st_size
    check_declared(path, nbytes, stored_bytes=size if gz else max(size - offset, 0),
                   compression="deflate" if gz else "none", description=_describe(shape, str(dtype)))


def _meta_header(path: Path) -> dict[str, str]:
    """Key = value lines of a MetaImage header (up to ElementDataFile), lower-cased keys."""
    fields: dict[str, str] = {}
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    for raw in head.split(b"\n"):
        key, sep, value = raw.decode("latin-1").partition("=")
        if not sep:
            continue
        fields[key.strip().lower()] = value.strip()
        if key.strip().lower() == "elementdatafile":
            fields["_header_bytes"] = str(head.index(raw) + len(raw) + 1)
            break
    return fields


def _nrrd_header(path: Path) -> dict[str, str]:
    fields: dict[str, str] = {}
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    end = head.find(b"\n\n")
    for raw in head[: end if end >= 0 else len(head)].split(b"\n"):
        key, sep, value = raw.decode("latin-1").partition(":")
        if sep and not key.startswith("#"):
            fields[key.strip().lower()] = value.strip().lstrip("=").strip()
    if end >= 0:
        fields["_header_bytes"] = str(end + 2)
    return fields


_META_TYPES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
               "MET_LONG": 8, "MET_ULONG": 8, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
               "MET_DOUBLE": 8}
_NRRD_ENCODINGS = {"raw": "none", "gzip": "deflate", "gz": "deflate", "bzip2": None, "bz2": None,
                   "ascii": "text", "text": "text", "txt": "text", "hex": "text"}
#: Axes an image header may declare (ITK reads up to 5; medseg uses 2-4).
MAX_AXES = 5
#: Channels per voxel a header may declare.
MAX_COMPONENTS = 1024


def _ints(text: str, path: Path, field: str, count: int | None = None) -> list[int]:
    try:
        values = [int(v) for v in text.split()]
    except ValueError:
        raise ImageReadError(f"corrupt header: {field} '{text[:40]}' is not a list of integers", path) from None
    if count is not None and len(values) != count:
        raise ImageReadError(f"corrupt header: {field} has {len(values)} values for {count} axes", path)
    if not values or any(v < 1 for v in values):
        raise ImageReadError(f"corrupt header: {field} '{text[:40]}' must hold positive sizes", path)
    return values


def _nrrd_itemsize(kind: str) -> int | None:
    kind = kind.lower()
    for keys, size in ((("64", "long long", "longlong", "double"), 8), (("float",), 4), (("32",), 4),
                       (("16", "short"), 2), (("int8", "char", "uint8"), 1), (("int",), 4)):
        if any(k in kind for k in keys):
            return size
    return None


def _declared_meta(path: Path) -> tuple[int, int | None, str | None, str]:
    """MetaImage header, validated in Python before ITK parses it (MetaIO crashed with a segmentation
    fault on ``NDims = 32768`` and on huge ``DimSize`` values: found by fuzzing)."""
    fields = _meta_header(path)
    ndims = _ints(fields.get("ndims", ""), path, "NDims")[0] if "ndims" in fields else 0
    if not 1 <= ndims <= MAX_AXES:
        raise ImageReadError(f"corrupt header: NDims must be 1..{MAX_AXES}; got {fields.get('ndims')!r}", path)
    sizes = _ints(fields.get("dimsize", ""), path, "DimSize", ndims)
    element = fields.get("elementtype", "")
    if element not in _META_TYPES:
        raise ImageReadError(f"corrupt header: unknown ElementType '{element[:40]}'", path)
    channels = _ints(fields.get("elementnumberofchannels", "1"), path, "ElementNumberOfChannels", 1)[0]
    if channels > MAX_COMPONENTS:
        raise ImageReadError(f"corrupt header: {channels} channels per voxel", path)
    compressed = fields.get("compresseddata", "false").lower() == "true"
    data_file = fields.get("elementdatafile", "")
    size = path.stat().st_size
    if data_file.upper() == "LOCAL":
        if "_header_bytes" not in fields:
            raise ImageReadError("corrupt header: no data after ElementDataFile", path)
        stored = size - int(fields["_header_bytes"])
    else:
        target = path.parent / data_file
        if not data_file or "/" in data_file or not target.is_file():
            raise ImageReadError(f"ElementDataFile {data_file[:60]!r} is not a file beside the header", path)
        stored = target.stat().st_size
    nbytes = declared_bytes(sizes, _META_TYPES[element] * channels)
    return nbytes, stored, "deflate" if compressed else "none", _describe(sizes[::-1], element)


def _declared_nrrd(path: Path) -> tuple[int, int | None, str | None, str]:
    """NRRD header, validated in Python before ITK parses it."""
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if not magic.startswith(b"NRRD000"):
        raise ImageReadError("not a NRRD file (no NRRD000x magic)", path)
    fields = _nrrd_header(path)
    try:
        ndims = int(fields.get("dimension", "0"))
    except ValueError:
        ndims = 0
    if not 1 <= ndims <= MAX_AXES + 1:  # + a vector axis
        raise ImageReadError(f"corrupt header: dimension must be 1..{MAX_AXES + 1}; got {fields.get('dimension')!r}",
                             path)
    sizes = _ints(fields.get("sizes", ""), path, "sizes", ndims)
    itemsize = _nrrd_itemsize(fields.get("type", ""))
    if itemsize is None:
        raise ImageReadError(f"corrupt header: unknown type '{fields.get('type', '')[:40]}'", path)
    encoding = fields.get("encoding", "raw").lower()
    if encoding not in _NRRD_ENCODINGS:
        raise ImageReadError(f"corrupt header: unknown encoding '{encoding[:40]}'", path)
    compression = _NRRD_ENCODINGS[encoding]
    data_file = fields.get("data file", fields.get("datafile"))
    if data_file:
        target = path.parent / data_file
        if "/" in data_file or not target.is_file():
            raise ImageReadError(f"data file {data_file[:60]!r} is not a file beside the header", path)
        stored = target.stat().st_size
    elif "_header_bytes" in fields:
        stored = path.stat().st_size - int(fields["_header_bytes"])
    else:
        raise ImageReadError("corrupt header: no blank line before the data", path)
    nbytes = declared_bytes(sizes, itemsize)
    if compression == "text":  # at least one character per value: the text is longer than the data it holds
        compression, nbytes_stored = "none", stored * itemsize
        return nbytes, nbytes_stored, compression, _describe(sizes[::-1], fields.get("type", ""))
    return nbytes, stored, compression, _describe(sizes[::-1], fields.get("type", ""))


def _check_itk(path: Path, ext: str) -> None:
    import SimpleITK as sitk

    from medseg.io.itk import _itk_reason, native_memory_cap, native_stderr_captured

    if ext in (".mha", ".mhd", ".nrrd", ".nhdr"):  # our own header pass first: ITK's parsers crash on some
        try:
            nbytes, stored, compression, description = (_declared_meta if ext in (".mha", ".mhd")
                                                         else _declared_nrrd)(path)
        except OSError as exc:
            raise ImageReadError(f"cannot read: {exc.strerror}", path) from None
        check_declared(path, nbytes, stored_bytes=stored, compression=compression, description=description)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with native_stderr_captured(), native_memory_cap(path=path):
            reader.ReadImageInformation()
    except (RuntimeError, MemoryError) as exc:
        what = "DICOM" if ext in (".dcm", ".dicom", "") else ext
        raise ImageReadError(f"cannot read as {what} (corrupt or truncated header): {_itk_reason(exc)}", path) from None
    shape = tuple(reader.GetSize())
    components = reader.GetNumberOfComponents()
    components = max(int(components), 1)
    try:  # bytes per component: the dtype of a one-voxel image of the declared pixel type
        probe = sitk.Image([1] * min(len(shape), 3), reader.GetPixelID(), components)
        itemsize = sitk.GetArrayViewFromImage(probe).dtype.itemsize
    except (RuntimeError, TypeError, ValueError):
        itemsize = 8  # unknown type: assume the widest
    nbytes = declared_bytes(shape, itemsize * components)
    description = _describe(shape + ((components,) if components > 1 else ()),
                            sitk.GetPixelIDValueAsString(reader.GetPixelID()))
    if ext in (".mha", ".mhd", ".nrrd", ".nhdr"):
        stored, compression = None, None  # checked above from our own parse of the header
    else:  # DICOM: uncompressed transfer syntaxes must hold every byte
        syntax = reader.GetMetaData("0002|0010").strip(" \x00") if reader.HasMetaDataKey("0002|0010") else ""
        stored, compression = path.stat().st_size, ("none" if syntax in _UNCOMPRESSED_DICOM else "codec")
    check_declared(path, nbytes, stored_bytes=stored, compression=compression, description=description)


def _check_dicom_attributes(path: Path) -> None:
    """The image attributes of a DICOM file, validated with pydicom before GDCM sees the file: GDCM
    allocated ~740 MB for a 2.5 KB file whose Pixel Representation was 3 (found by fuzzing)."""
    import warnings

    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's notes on invalid values: the checks below decide
            ds = pydicom.dcmread(str(path), defer_size=1024, force=True)
            values = {"Rows": int(ds.Rows), "Columns": int(ds.Columns), "BitsAllocated": int(ds.BitsAllocated),
                      "SamplesPerPixel": int(ds.get("SamplesPerPixel", 1) or 1),
                      "PixelRepresentation": int(ds.get("PixelRepresentation", 0) or 0),
                      "NumberOfFrames": int(ds.get("NumberOfFrames", 1) or 1)}
            pixels = any(key in ds for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on a corrupt file
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ImageReadError(f"not a readable DICOM image ({reason})", path) from None
    allowed = {"BitsAllocated": (1, 8, 16, 32, 64), "SamplesPerPixel": (1, 3, 4), "PixelRepresentation": (0, 1)}
    for key, ok in allowed.items():
        if values[key] not in ok:
            raise ImageReadError(f"corrupt DICOM header: {key} is {values[key]} (expected one of {ok})", path)
    for key in ("Rows", "Columns", "NumberOfFrames"):
        if values[key] < 1:
            raise ImageReadError(f"corrupt DICOM header: {key} is {values[key]}", path)
    if not pixels:
        raise ImageReadError("DICOM file holds no pixel data", path)


_RASTER_ITEMSIZE = {"1": 1, "L": 1, "P": 1, "RGB": 3, "RGBA": 4, "LA": 2, "PA": 2, "CMYK": 4, "YCbCr": 3,
                    "I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4}


def _check_raster(path: Path) -> None:
    import warnings

    from PIL import Image as PILImage

    from medseg.io.itk import native_stderr_captured

    try:
        with warnings.catch_warnings(), native_stderr_captured():
            warnings.simplefilter("ignore")  # Pillow's notes on corrupt tags: the error below says it
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as pil:
                width, height = pil.size
                frames = int(getattr(pil, "n_frames", 1))
                mode = pil.mode
                fmt = pil.format
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ImageReadError(f"refused as a decompression bomb: {exc}", path) from None
    except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError, struct.error... on bad headers
        raise ImageReadError(f"cannot read as {image_extension(path)}: {exc}", path) from None
    nbytes = declared_bytes((frames, height, width), _RASTER_ITEMSIZE.get(mode, 4))
    check_declared(path, nbytes, stored_bytes=path.stat().st_size,
                   compression="deflate" if fmt == "PNG" else "codec",
                   description=f"{frames}×{height}×{width} {mode}" if frames > 1 else f"{height}×{width} {mode}")


def check_header(path: str | Path, backend: str) -> None:
    """Read ``path``'s header and refuse it if the pixel data it declares cannot be in the file or in memory.

    Parameters
    ----------
    path : path
        An image file (not a folder).
    backend : {"itk", "dicom", "raster"}
        From :func:`medseg.io.formats.backend_for` ("dicom" also for extension-less DICOM files).

    Raises
    ------
    ImageReadError
        Naming the file: unreadable header, truncated data, impossible compression ratio, or more
        memory than is available.
    """
    path = Path(path)
    ext = image_extension(path)
    if backend == "raster" or ext in RASTER_EXTENSIONS:
        _check_raster(path)
    elif ext in (".nii", ".nii.gz"):
        _check_nifti(path)
    else:
        if backend == "dicom":
            _check_dicom_attributes(path)
        _check_itk(path, ext if backend == "itk" else ".dcm")
