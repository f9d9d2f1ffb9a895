"""Channel reduction for colour photographs (fundus): green channel or luminance; grey pictures stored as RGB."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from medseg.errors import MedsegError
from medseg.image import Image

# ITU-R BT.709 weights, the ones skimage.color.rgb2gray uses. We apply them ourselves because rgb2gray
# rescales integer input to [0, 1], which would make the output scale depend on the input dtype.
LUMINANCE_WEIGHTS = (0.2125, 0.7154, 0.0721)
#: Largest mean absolute difference between the channels of an RGB picture (in its stored units, grey levels
#: of 255 for the 8-bit files this concerns) that still counts as grey: JPEG's colour subsampling leaves about
#: one level between the channels of a grey B-scan saved as colour; a colour photograph differs by tens.
GREY_RGB_TOLERANCE = 2.0


def _rgb_channels(image: np.ndarray, channel_names: Sequence[str] | None, what: str) -> tuple[int, int, int]:
    if image.ndim < 3 or image.shape[0] not in (3, 4):
        raise MedsegError(f"{what} needs a colour image with 3 (RGB) or 4 (RGBA) channels first; got shape {image.shape}")
    if channel_names:
        names = [n.lower() for n in channel_names]
        for triple in (("r", "g", "b"), ("red", "green", "blue")):
            if all(t in names for t in triple):
                return tuple(names.index(t) for t in triple)  # type: ignore[return-value]
    return (0, 1, 2)


def green_channel(image: np.ndarray, channel_names: Sequence[str] | None = None) -> np.ndarray:
    """The green channel of a channels-first RGB(A) image, shape ``(1, ...)``.

    In fundus photographs vessels have the highest contrast in green (haemoglobin absorbs it).

    Parameters
    ----------
    image : ndarray
        ``(3 or 4, Y, X)`` array.
    channel_names : sequence of str, optional
        Channel names (e.g. ``("R", "G", "B")``) used to locate green; default order RGB.

    Returns
    -------
    ndarray
        ``(1, Y, X)`` float array.

    Examples
    --------
    >>> green_channel(np.stack([np.zeros((2, 2)), np.ones((2, 2)), np.zeros((2, 2))])).shape
    (1, 2, 2)
    """
    image = np.asarray(image)
    _, g, _ = _rgb_channels(image, channel_names, "green_channel")
    return image[g : g + 1].astype(np.float32)


def luminance(image: np.ndarray, channel_names: Sequence[str] | None = None) -> np.ndarray:
    """Luminance ``0.2125 R + 0.7154 G + 0.0721 B`` of a channels-first RGB(A) image, shape ``(1, ...)``.

    Examples
    --------
    >>> float(luminance(np.ones((3, 2, 2)) * 100).max())
    100.0
    """
    image = np.asarray(image)
    r, g, b = _rgb_channels(image, channel_names, "luminance")
    rgb = image[[r, g, b]].astype(np.float32)
    return np.tensordot(np.asarray(LUMINANCE_WEIGHTS, np.float32), rgb, axes=1)[None]


def grey_picture(image: Image, tolerance: float = GREY_RGB_TOLERANCE) -> Image | None:
    """The one channel of a grey picture stored as RGB (OCT exports often are), or None for a colour image.

    Parameters
    ----------
    image : Image
        A 3-channel image; any other channel count gives None.
    tolerance : float
        Largest mean absolute difference between any two channels, in the image's units.

    Returns
    -------
    Image or None
        The luminance as one channel (for equal channels: the grey values themselves), on the same grid.

    Examples
    --------
    >>> grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    >>> grey_picture(Image(np.stack([grey] * 3), channel_names=("R", "G", "B"))).array.shape
    (1, 3, 4)
    >>> grey_picture(Image(np.stack([grey, grey, grey + 50]))) is None
    True
    """
    if image.num_channels != 3:
        return None
    channels = np.asarray(image.array, np.float32)
    spread = max(float(np.abs(channels[a] - channels[b]).mean()) for a, b in ((0, 1), (0, 2), (1, 2)))
    if spread > tolerance:
        return None
    return image.with_array(luminance(channels, image.channel_names), ("grey",))


def channels_for_model(image: Image, expected: int) -> Image:
    """``image`` with the channel count a model expects where that is unambiguous: a grey picture stored as
    RGB given to a one-channel model becomes that channel. Anything else is returned unchanged, for the
    caller's channel check to name the mismatch."""
    grey = grey_picture(image) if expected == 1 else None
    return image if grey is None else grey
