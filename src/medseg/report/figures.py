"""Overlay figures of a label map on its image: three orthogonal planes through a structure's centroid.

Colours are the Okabe–Ito palette (Okabe & Ito 2002, "Color Universal Design"), distinguishable with the
common colour-vision deficiencies; the label is drawn as a translucent fill with an opaque outline so the
anatomy under it stays visible. Volumes are shown in the radiological convention whatever the file's
orientation (:func:`patient_axes`: axial with anterior up and the patient's right on the left, coronal and
sagittal with superior up, marked R / A / S). Figures come back as PNG bytes (for embedding in a report).

Examples
--------
>>> import numpy as np
>>> from medseg.image import Image
>>> img = Image(np.random.default_rng(0).random((1, 20, 30, 30)).astype(np.float32))
>>> lab = np.zeros((1, 20, 30, 30), np.uint8); lab[0, 5:15, 10:20, 10:20] = 1
>>> png = orthogonal_overlay(img, img.with_array(lab), {1: "lesion"})
>>> png[:4] == b"\\x89PNG"
True
"""

from __future__ import annotations

import io
from typing import Mapping, Sequence

import numpy as np

from medseg.image import Image

__all__ = ["OKABE_ITO", "label_colours", "centroid_index", "orthogonal_overlay", "overlay_figure", "thumbnail"]

#: Okabe–Ito colours without black (the background of an MR image): orange, sky blue, bluish green,
#: yellow, blue, vermillion, reddish purple.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")


def label_colours(values: Sequence[int]) -> dict[int, str]:
    """A colour per foreground label value, in the order given (cycling after seven labels)."""
    return {int(v): OKABE_ITO[i % len(OKABE_ITO)] for i, v in enumerate(values)}


def centroid_index(label_map: np.ndarray) -> tuple[int, ...]:
    """Voxel index of the foreground's centroid (the image centre when there is no foreground).

    Examples
    --------
    >>> a = np.zeros((5, 9, 9), np.uint8); a[1:3, 2:4, 6:8] = 2
    >>> centroid_index(a)
    (2, 3, 7)
    """
    points = np.nonzero(np.asarray(label_map))
    if not points[0].size:
        return tuple(int(s // 2) for s in np.shape(label_map))
    # round half up, so a two-voxel-thick structure shows its upper (not lower) voxel consistently
    return tuple(int(np.floor(p.mean() + 0.5)) for p in points)


def _window(plane: np.ndarray) -> tuple[float, float]:
    """Display window: 1st–99th percentile of the non-zero voxels (skull-stripped MRI is mostly zero)."""
    values = plane[plane != 0] if np.any(plane != 0) else plane.ravel()
    lower, upper = np.percentile(values, [1, 99]) if values.size else (0.0, 1.0)
    return float(lower), float(upper if upper > lower else lower + 1.0)


def patient_axes(direction: np.ndarray) -> tuple[tuple[int, ...], tuple[bool, ...]]:
    """How to view a volume in the patient's frame: for each of the patient axes inferior→superior,
    anterior→posterior and right→left (LPS, ITK's frame, in medseg's array order), the array axis closest to
    it and whether that axis runs against it. Oblique scans get their nearest axes (no resampling); a
    direction with no clear nearest axes keeps the array's own order.

    Examples
    --------
    >>> patient_axes(np.diag([1.0, -1.0, -1.0]))  # a NIfTI in RAS: rows and columns run the other way
    ((0, 1, 2), (False, True, True))
    """
    direction = np.asarray(direction, dtype=np.float64)
    order = tuple(int(j) for j in np.argmax(np.abs(direction), axis=1))
    if sorted(order) != list(range(len(direction))):
        return tuple(range(len(direction))), (False,) * len(direction)
    return order, tuple(bool(direction[p, j] < 0) for p, j in enumerate(order))


#: Letters at the left edge and the top edge of each plane in the radiological convention.
_ORIENTATION_MARKS = {"axial": ("R", "A"), "coronal": ("R", "S"), "sagittal": ("A", "S")}


def _in_patient_frame(array: np.ndarray, order: Sequence[int], flips: Sequence[bool]) -> np.ndarray:
    view = np.transpose(array, order)
    return np.flip(view, axis=[p for p, f in enumerate(flips) if f]) if any(flips) else view


def _patient_view(image: Image, arrays: Sequence[np.ndarray]):  # noqa: ANN202
    """``arrays`` (on ``image``'s grid) and the spacing in the patient frame, with the ``order`` / ``flips``
    that took them there (2D images: unchanged)."""
    order, flips = tuple(range(arrays[0].ndim)), (False,) * arrays[0].ndim
    spacing = tuple(image.spacing)
    if arrays[0].ndim == 3:
        order, flips = patient_axes(image.direction)
        arrays = [_in_patient_frame(a, order, flips) for a in arrays]
        spacing = tuple(spacing[j] for j in order)
    return list(arrays), spacing, order, flips


def _planes(array: np.ndarray, index: Sequence[int]) -> list[tuple[str, np.ndarray, tuple[int, int]]]:
    """(name, 2D plane, the two array axes it spans) through ``index``; 2D images give one plane."""
    if array.ndim == 2:
        return [("image", array, (0, 1))]
    z, y, x = index
    return [("axial", array[z], (1, 2)), ("coronal", array[:, y, :], (0, 2)), ("sagittal", array[:, :, x], (0, 1))]


def _draw(ax, image_plane, label_plane, colours, spacing_pair, window, flip):  # noqa: ANN001
    from matplotlib.colors import ListedColormap

    aspect = float(spacing_pair[0]) / float(spacing_pair[1])  # row spacing / column spacing
    origin = "lower" if flip else "upper"  # in the patient frame axis 0 runs inferior -> superior
    ax.imshow(image_plane, cmap="gray", vmin=window[0], vmax=window[1], aspect=aspect, origin=origin,
              interpolation="nearest")
    for value, colour in colours.items():
        mask = label_plane == value
        if not mask.any():
            continue
        ax.imshow(np.ma.masked_where(~mask, mask), cmap=ListedColormap([colour]), alpha=0.45, aspect=aspect,
                  origin=origin, interpolation="nearest")
        ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=0.8)  # index coordinates, as imshow
    ax.set_xticks([])
    ax.set_yticks([])


def orthogonal_overlay(image: Image, label_map: Image, names: Mapping[int, str], *, channel: int = 0,
                       index: Sequence[int] | None = None, title: str | None = None, dpi: int = 110) -> bytes:
    """PNG of :func:`overlay_figure` (same parameters): axial, coronal and sagittal planes through ``index``."""
    import matplotlib.pyplot as plt

    fig = overlay_figure(image, label_map, names, channel=channel, index=index, title=title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def overlay_figure(image: Image, label_map: Image, names: Mapping[int, str], *, channel: int = 0,
                   index: Sequence[int] | None = None, title: str | None = None, figure=None,  # noqa: ANN001
                   rect: Sequence[float] = (0, 0, 1, 1)):
    """A matplotlib Figure of the label map over one image channel: axial, coronal and sagittal planes
    through ``index``, with a legend (PNG for the HTML report, a vector page for the PDF).

    Parameters
    ----------
    image, label_map : Image
        The input (any number of channels) and its label map on the same grid.
    names : mapping of int to str
        Label value -> legend text; only these values are drawn, each in its own Okabe–Ito colour.
    channel : int
        Image channel shown underneath (BraTS: 0 = FLAIR, where the oedema is brightest).
    index : sequence of int, optional
        Voxel the planes pass through; default the foreground centroid (:func:`centroid_index`).
    title : str, optional
    figure : matplotlib Figure, optional
        Draw into this figure (within ``rect``, figure coordinates left, bottom, right, top) instead of a new one.
    rect : sequence of float

    Returns
    -------
    matplotlib.figure.Figure
        The caller closes it (``plt.close(fig)``).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    array = np.asarray(image.array[channel], dtype=np.float32)
    labels = np.asarray(label_map.array[0])
    # radiological convention whatever the file's orientation: axial with anterior up and the patient's
    # right on the left, coronal and sagittal with superior up
    shape = array.shape
    (array, labels), spacing, order, flips = _patient_view(image, [array, labels])
    if index is not None:
        index = [index[j] if not f else shape[j] - 1 - index[j] for j, f in zip(order, flips)]
    index = tuple(int(i) for i in (index if index is not None else centroid_index(labels)))
    file_index = {j: (array.shape[p] - 1 - index[p] if flips[p] else index[p]) for p, j in enumerate(order)}
    colours = label_colours(list(names))
    planes = _planes(array, index)
    label_planes = _planes(labels, index)
    window = _window(array)
    if figure is None:
        fig, axes = plt.subplots(1, len(planes), figsize=(3.6 * len(planes), 4.0), squeeze=False)
    else:
        fig, axes = figure, figure.subplots(1, len(planes), squeeze=False)
    left, bottom, right, top = rect
    for ax, (name, plane, axes_pair), (_, lplane, _) in zip(axes[0], planes, label_planes):
        spacing_pair = (spacing[axes_pair[0]], spacing[axes_pair[1]])
        _draw(ax, plane, lplane, colours, spacing_pair, window, flip=array.ndim == 3 and name != "axial")
        if array.ndim == 3:
            axis = order[{"axial": 0, "coronal": 1, "sagittal": 2}[name]]
            ax.set_title(f"{name} (slice {file_index[axis]} of the file's axis {axis})", fontsize=9)
            for (x, y, ha, va), mark in zip(((0.02, 0.5, "left", "center"), (0.5, 0.98, "center", "top")),
                                            _ORIENTATION_MARKS[name]):
                ax.text(x, y, mark, transform=ax.transAxes, ha=ha, va=va, color="white", fontsize=8)
        else:
            ax.set_title(name, fontsize=9)
    handles = [Patch(facecolor=colours[v], edgecolor=colours[v], label=f"{v}: {names[v]}") for v in names]
    height = top - bottom
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=((left + right) / 2, bottom),
               ncol=min(len(handles), 4), fontsize=8, frameon=False)
    if title:
        fig.text((left + right) / 2, top - 0.02 * height, title, ha="center", va="top", fontsize=10)
    fig.tight_layout(rect=(left, bottom + 0.08 * height, right, top - (0.05 if title else 0) * height))
    return fig


def thumbnail(image: Image, label_map: Image, names: Mapping[int, str], *, channel: int = 0,
              reference: Image | None = None, dpi: int = 60) -> bytes:
    """Small PNG: the plane through the centroid (axial in 3D) with the label map, and the reference's
    outline in white when given (evaluation reports)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    array = np.asarray(image.array[channel], dtype=np.float32)
    labels = np.asarray(label_map.array[0])
    source = np.asarray(reference.array[0]) if reference is not None else labels
    # the axial plane as the overlay figure shows it
    (array, labels, source), spacing, _, _ = _patient_view(image, [array, labels, source])
    index = centroid_index(source)
    name, plane, axes_pair = _planes(array, index)[0]
    lplane = _planes(labels, index)[0][1]
    fig, ax = plt.subplots(figsize=(2.2, 2.2))
    spacing_pair = (spacing[axes_pair[0]], spacing[axes_pair[1]])
    _draw(ax, plane, lplane, label_colours(list(names)), spacing_pair, _window(array), flip=False)
    if reference is not None:
        ref_plane = _planes(source, index)[0][1]
        if np.any(ref_plane):
            ax.contour((ref_plane != 0).astype(float), levels=[0.5], colors=["white"], linewidths=0.7)
    fig.tight_layout(pad=0.1)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()
