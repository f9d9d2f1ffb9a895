"""The registry of classical methods, so that the CLI can list and dispatch them.

Each entry maps a name (``otsu``) to its ``segment_<name>`` function with metadata:

- ``dims``: supported spatial dimensionalities, e.g. ``(2, 3)``;
- ``seeds``: "required", "optional" or "no";
- ``output``: "binary" (0/1), "classes" (0..K-1 by intensity) or "regions" (one label per seed/marker);
- ``family``: threshold, edges, region growing, clustering, graph, vesselness;
- ``colour_channel``: channel used by default on colour input (None: the user must choose);
- ``summary``: one line for ``medseg segment --list``.

Third-party methods register through the ``medseg.classical`` entry point group.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

from medseg.image import Image
from medseg.registry import Registry

METHODS = Registry("classical method", entry_point_group="medseg.classical")


def register(name: str, *, dims: Sequence[int] = (2, 3), seeds: str = "no", output: str = "binary", family: str,
             summary: str, colour_channel: int | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator adding a ``segment_*`` function to :data:`METHODS` with its metadata.

    Every registered method keeps the geometry of what it is given: an array in, a label array out;
    an :class:`~medseg.image.Image` in, an Image (same spacing, origin, direction; one channel
    ``label``) out.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def method(image, *args, **kwargs):
            labels = func(image, *args, **kwargs)
            if isinstance(image, Image) and not isinstance(labels, Image):
                return image.with_array(labels, ("label",))
            return labels

        return METHODS.register(name, dims=tuple(dims), seeds=seeds, output=output, family=family,
                                summary=summary, colour_channel=colour_channel)(method)

    return decorate
