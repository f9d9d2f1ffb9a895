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
