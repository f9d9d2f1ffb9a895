"""File extensions medseg reads and writes, and which back-end handles each."""

from __future__ import annotations

from pathlib import Path

# Extension -> back-end. Multi-part extensions come first so ".nii.gz" wins over ".gz".
ITK_EXTENSIONS = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
DICOM_EXTENSIONS = (".dcm", ".dicom")
RASTER_EXTENSIONS = (".png", ".tif", ".tiff", ".gif", ".jpg", ".jpeg", ".ppm", ".pgm", ".pbm", ".bmp")
SUPPORTED_EXTENSIONS: tuple[str, ...] = ITK_EXTENSIONS + DICOM_EXTENSIONS + RASTER_EXTENSIONS


def image_extension(path: str | Path) -> str:
    """The image extension of ``path``, lower case, including multi-part ones.

    Parameters
    ----------
    path : str or Path
        A file name or path.

    Returns
    -------
    str
        A member of :data:`SUPPORTED_EXTENSIONS` when the name ends with one, otherwise the last
        suffix in lower case ('' when there is none).

    Examples
    --------
    >>> image_extension("case_0000.NII.GZ"), image_extension("a/b.png"), image_extension("x")
    ('.nii.gz', '.png', '')
    """
    name = Path(path).name.lower()
    for ext in SUPPORTED_EXTENSIONS:
        if name.endswith(ext) and len(name) > len(ext):
            return ext
    return Path(name).suffix


def strip_extension(path: str | Path) -> str:
    """The file name of ``path`` without its image extension (``"a/b.nii.gz"`` -> ``"b"``)."""
    name = Path(path).name
    ext = image_extension(name)
    return name[: len(name) - len(ext)] if ext else name


def backend_for(path: str | Path) -> str | None:
    """'itk', 'dicom', 'raster' or None for an unknown extension."""
    ext = image_extension(path)
    if ext in ITK_EXTENSIONS:
        return "itk"
    if ext in DICOM_EXTENSIONS:
        return "dicom"
    if ext in RASTER_EXTENSIONS:
        return "raster"
    return None


#: Formats that lose information on writing (JPEG): never used for a label map.
LOSSY_EXTENSIONS = (".jpg", ".jpeg")
#: The lossless format a label map takes instead of a lossy or read-only input format.
LABEL_EXTENSION_FOR = {".jpg": ".png", ".jpeg": ".png", ".dcm": ".nii.gz", ".dicom": ".nii.gz", "": ".nii.gz"}


def is_raster(path_or_ending: str | Path) -> bool:
    """True for a raster format (PNG, TIFF, JPEG, ...: 2D, no geometry), given a path or an ending.

    Examples
    --------
    >>> is_raster(".png"), is_raster("a/b.nii.gz"), is_raster(".JPG")
    (True, False, True)
    """
    text = str(path_or_ending)
    ext = text.lower() if text.startswith(".") and "/" not in text else image_extension(text)
    return ext in RASTER_EXTENSIONS


def label_output_extension(input_path: str | Path) -> str:
    """The extension of the label map written for ``input_path``: the input's own format when it is
    lossless and writable, else PNG for JPEG inputs and NIfTI for DICOM (read-only) or folders.

    Examples
    --------
    >>> label_output_extension("fundus.jpg"), label_output_extension("ct.mha"), label_output_extension("series/")
    ('.png', '.mha', '.nii.gz')
    """
    path = Path(input_path)
    ext = "" if path.is_dir() else image_extension(path)
    if ext not in SUPPORTED_EXTENSIONS:
        ext = ""
    return LABEL_EXTENSION_FOR.get(ext, ext)


def label_output_path(input_path: str | Path, folder: str | Path, case: str | None = None) -> Path:
    """Where the label map of ``input_path`` goes in ``folder`` (named after ``case``, default the
    input's name), in a lossless format (:func:`label_output_extension`).

    Examples
    --------
    >>> label_output_path("images/eye_0000.jpg", "pred", "eye").as_posix()
    'pred/eye.png'
    """
    name = case if case is not None else strip_extension(input_path)
    return Path(folder) / f"{name}{label_output_extension(input_path)}"


def label_format_note(input_path: str | Path) -> str | None:
    """A sentence to print when the label map's format differs from the input's, else None.

    Examples
    --------
    >>> label_format_note("eye.jpg")
    'label maps are written as .png: .jpg is lossy (a label map must keep its exact values)'
    """
    path = Path(input_path)
    ext = "" if path.is_dir() else image_extension(path)
    out = label_output_extension(path)
    if out == ext:
        return None
    if ext in LOSSY_EXTENSIONS:
        return f"label maps are written as {out}: {ext} is lossy (a label map must keep its exact values)"
    return f"label maps are written as {out}: {ext or 'a DICOM series'} is read-only here"
