"""Neighbouring slices as channels: what a 2D network on a volume sees of the slices around the one it segments.

A 2D network on a stack of slices (a plan's "2d" configuration for thick-slice MRI) sees one slice and cannot
tell the last slice through an organ from the first slice past it. Stacking each slice's neighbours as extra
channels ("2.5D") gives it that context at almost the cost of a 2D network: only the first convolution grows.
Slices past the ends of the stack repeat the end slice.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from medseg.errors import MedsegError


def slice_context(image: np.ndarray, axis: int, neighbours: int = 1, channel_axis: int | None = 0) -> np.ndarray:
    """Each channel followed by copies of itself shifted by −``neighbours`` … +``neighbours`` slices.

    Parameters
    ----------
    image : ndarray
        ``(C, *S)`` with ``channel_axis=0`` (or ``S`` with ``channel_axis=None``).
    axis : int
        The slice axis among the spatial axes ``S``.
    neighbours : int
        Slices on each side.

    Returns
    -------
    ndarray
        ``(C · (2·neighbours + 1), *S)``: for each input channel, the slices at offsets −n … +n, in that order
        (offset 0 is the channel itself); beyond the ends of the stack the end slice repeats.

    Examples
    --------
    >>> x = np.arange(3.0).reshape(1, 3, 1)       # one channel, three slices along axis 0
    >>> slice_context(x, axis=0)[:, :, 0].tolist()
    [[0.0, 0.0, 1.0], [0.0, 1.0, 2.0], [1.0, 2.0, 2.0]]
    """
    if channel_axis is None:
        image = image[None]
    elif channel_axis != 0:
        raise MedsegError("slice_context takes channels first (channel_axis=0) or none")
    spatial = image.ndim - 1
    if not 0 <= axis < spatial:
        raise MedsegError(f"slice axis {axis} but the image has {spatial} spatial axes")
    if neighbours < 1:
        raise MedsegError(f"neighbours must be at least 1; got {neighbours}")
    count = image.shape[1 + axis]
    out = [np.take(image[c], np.clip(np.arange(count) + offset, 0, count - 1), axis=axis)
           for c in range(image.shape[0]) for offset in range(-neighbours, neighbours + 1)]
    return np.stack(out)


def context_channel_names(names: Sequence[str], neighbours: int) -> tuple[str, ...]:
    """``("T2",), 1`` → ``("T2[-1]", "T2", "T2[+1]")``: the names of :func:`slice_context`'s channels."""
    return tuple(name if offset == 0 else f"{name}[{offset:+d}]"
                 for name in names for offset in range(-neighbours, neighbours + 1))
