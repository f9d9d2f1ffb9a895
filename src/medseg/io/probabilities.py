"""The probability file format: written by ``medseg predict --probabilities``, read by ``medseg
evaluate`` and ``medseg threshold``. One module owns both directions.

A probability map is ``(C, *spatial)`` float32, channel ``c`` = label value ``c`` (a binary task keeps
only the foreground channel; region tasks one channel per region). It is stored

- in the input's own format for NIfTI / MHA / NRRD inputs (geometry kept),
- as float TIFF for raster inputs with 1 or 3 channels,
- otherwise as ``.npz`` with key ``probabilities`` (plus ``spacing``, ``origin``, ``direction``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from medseg.errors import ImageReadError
from medseg.fileutil import atomic_path
from medseg.image import Image
from medseg.io.formats import RASTER_EXTENSIONS, image_extension

#: File endings of probability maps that are arrays rather than images.
ARRAY_EXTENSIONS = (".npz", ".npy")
NPZ_KEY = "probabilities"


def probabilities_extension(label_ext: str, channels: int) -> str:
    """The probability file ending beside a label map with ending ``label_ext``.

    Examples
    --------
    >>> probabilities_extension(".png", 1), probabilities_extension(".png", 4), probabilities_extension(".mha", 4)
    ('.tif', '.npz', '.mha')
    """
    if label_ext in RASTER_EXTENSIONS:
        return ".tif" if channels in (1, 3) else ".npz"
    return label_ext


def write_probabilities(probabilities: Image, path: str | Path) -> None:
    """Write a probability map as an image, or as ``.npz`` (key ``probabilities``), atomically."""
    path = Path(path)
    if path.suffix == ".npz":
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **{NPZ_KEY: probabilities.array.astype(np.float32)},
                                    spacing=np.asarray(probabilities.spacing), origin=np.asarray(probabilities.origin),
                                    direction=probabilities.direction)
        return
    from medseg.io import write_image

    write_image(probabilities, path)


def read_probabilities(path: str | Path) -> tuple[np.ndarray, Image | None]:
    """Read a probability map written by :func:`write_probabilities` (or any image / ``.npy``).

    Returns
    -------
    array : ndarray
        float32 probabilities.
    image : Image or None
        The image (for its geometry) when the file is an image file, else None.

    Raises
    ------
    ImageReadError
        Unreadable file, non-finite values, or values outside [0, 1]; the message names the file.
    """
    path = Path(path)
    image = None
    if path.name.lower().endswith(ARRAY_EXTENSIONS):
        try:
            if path.name.lower().endswith(".npy"):
                array = np.load(path, allow_pickle=False)
            else:
                with np.load(path, allow_pickle=False) as data:
                    if not data.files:
                        raise ImageReadError("holds no array", path)
                    key = NPZ_KEY if NPZ_KEY in data.files else data.files[0]
                    array = data[key]
            array = np.asarray(array, dtype=np.float32)
        except ImageReadError:
            raise
        except (OSError, ValueError, IndexError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            raise ImageReadError(f"cannot read probabilities: {exc}", path) from None
    else:
        from medseg.io import read_image

        image = read_image(path)
        array = image.array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ImageReadError("probabilities hold NaN or infinite values", path)
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ImageReadError(f"probabilities must lie in [0, 1]; found [{array.min():.4g}, {array.max():.4g}]", path)
    return array, image


def is_probability_file(path: str | Path) -> bool:
    """True for a file :func:`read_probabilities` can read by its name."""
    from medseg.io.formats import backend_for

    return Path(path).name.lower().endswith(ARRAY_EXTENSIONS) or backend_for(path) is not None


__all__ = ["probabilities_extension", "write_probabilities", "read_probabilities", "ARRAY_EXTENSIONS",
           "is_probability_file", "image_extension"]
