"""A case on the network's grid, and back: the one transform training and prediction share.

Training and the predictor both bring an :class:`~medseg.Image` (with its ROI, and in training its label)
onto the grid the network works on — crop to the non-zero region, the recorded intensity steps, resample
to the target spacing — and the predictor brings the network's labels or probabilities back onto the
input's exact grid. Both do it through this module, so they can never drift apart.

Label values (e.g. 0, 255 or 0, 1, 2, 4) map onto the network's class indices through
:class:`LabelMapping`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from medseg.constants import SPACING_RTOL
from medseg.errors import MedsegError
from medseg.image import Image
from medseg.losses import IGNORE_INDEX


@dataclass
class LabelMapping:
    """Maps a dataset's label values (e.g. 0, 255 or 0, 1, 2, 4) onto class indices 0..K-1.

    The dataset's ignore label maps onto :data:`medseg.losses.IGNORE_INDEX`.

    Examples
    --------
    >>> m = LabelMapping([0, 1, 2, 4], ignore_label=None)
    >>> m.encode(np.array([0, 4, 2])).tolist(), m.decode(np.array([0, 3, 2])).tolist()
    ([0, 3, 2], [0, 4, 2])
    """

    values: list[int]
    ignore_label: int | None = None

    def __post_init__(self) -> None:
        self.values = sorted(int(v) for v in self.values)

    @property
    def num_classes(self) -> int:
        return len(self.values)

    def encode(self, label: np.ndarray, where: str = "label") -> np.ndarray:
        label = np.asarray(label)
        out = np.full(label.shape, IGNORE_INDEX, dtype=np.int16)
        known = np.zeros(label.shape, bool)
        for index, value in enumerate(self.values):
            hit = label == value
            out[hit] = index
            known |= hit
        if self.ignore_label is not None:
            known |= label == self.ignore_label
        if not known.all():
            unknown = sorted(set(np.unique(label[~known]).tolist()))[:5]
            raise MedsegError(f"{where} holds value(s) {unknown} not declared in dataset.json labels {self.values}")
        return out

    def decode(self, index: np.ndarray) -> np.ndarray:
        lut = np.asarray(self.values)
        dtype = np.uint8 if lut.max(initial=0) < 256 and lut.min(initial=0) >= 0 else np.int32
        return lut[np.asarray(index)].astype(dtype)

    def regions_as_indices(self, regions: dict[str, list[int]] | None) -> list[list[int]] | None:
        """Regions (lists of label values) as lists of class indices."""
        if not regions:
            return None
        lookup = {v: i for i, v in enumerate(self.values)}
        return [[lookup[v] for v in members if v in lookup] for members in regions.values()]


def preprocess_image(
    image: Image,
    steps: Sequence[dict[str, Any]],
    target_spacing: Sequence[float] | None = None,
    roi: Image | None = None,
) -> Image:
    """Apply the recorded preprocessing steps, then resample to ``target_spacing`` (if any).

    The same function runs at training and prediction time, so both see identical intensities.
    """
    if steps:
        from medseg.preprocessing import apply_pipeline

        image = apply_pipeline(image, list(steps), roi=roi)
    if target_spacing is not None and not np.allclose(image.spacing, target_spacing, rtol=SPACING_RTOL):
        from medseg.preprocessing.resample import resample_image

        image = resample_image(image, tuple(target_spacing))
    return image




@dataclass(frozen=True)
class GridLayout:
    """How a case is brought onto the network's grid (recorded in the model folder's config.json).

    Parameters
    ----------
    preprocessing : list of dict
        Intensity steps (see :func:`medseg.preprocessing.apply_pipeline`), with fitted statistics.
    target_spacing : sequence of float, optional
        Spacing of the network's grid; None keeps each case's own.
    crop_to_nonzero : bool
        Crop to the bounding box of the non-zero voxels first.
    resampling : dict, optional
        A plan's ``{"image_order": 3, "label": "linear"|"nearest"}``.
    fov_diameter : float, optional
        Fundus photographs: the training camera's field-of-view diameter (pixels on the network grid).
        Each case's FOV (its ROI, else found, :func:`medseg.preprocessing.fov.find_fov`) is brought to this
        diameter by the resampling step (:func:`medseg.preprocessing.fov.fov_spacing`), before anything else.
    field_extent : dict, optional
        Volumes whose spacing was lost upstream (:func:`medseg.planning.device_rules.rule_field_extent`):
        ``{"side": S, "axes": [...]}``. Each case's voxels are taken as they are across the other axes, and its
        larger side across ``axes`` is brought to ``S`` voxels of the network grid — every scan is taken to
        cover the training scans' median field of view, whatever its matrix size.
    """

    preprocessing: tuple = ()
    target_spacing: tuple[float, ...] | None = None
    crop_to_nonzero: bool = False
    resampling: dict[str, Any] | None = None
    fov_diameter: float | None = None
    field_extent: dict[str, Any] | None = None

    @classmethod
    def of(cls, config: Any) -> "GridLayout":
        """The layout recorded in a model configuration (anything with these attributes)."""
        spacing = config.target_spacing
        fov = getattr(config, "fov_diameter", None)
        return cls(tuple(config.preprocessing or ()), tuple(float(v) for v in spacing) if spacing is not None else None,
                   bool(config.crop_to_nonzero), config.resampling, float(fov) if fov else None,
                   getattr(config, "field_extent", None) or None)

    @property
    def image_order(self) -> int:
        return int((self.resampling or {}).get("image_order", 3))


@dataclass
class GridCase:
    """One case on the network's grid, with what brings results back onto the input's exact grid.

    Attributes
    ----------
    image : Image
        Preprocessed image on the network grid.
    label, roi : Image or None
        On the network grid (labels keep their values; see :class:`LabelMapping` for class indices).
    input_grid : Image
        The input after cropping (before intensity steps and resampling): results on the network grid
        are resampled onto this grid, then uncropped to ``full_shape``.
    bbox : list of [start, stop) or None
        The crop, when there was one.
    full_shape : tuple of int
        The input's spatial shape.
    input_label, input_roi : Image or None
        The label and ROI on the (cropped) input grid — the ROI found there for photographs without one —
        against which results brought back onto that grid are scored.
    """

    image: Image
    label: Image | None
    roi: Image | None
    input_grid: Image
    bbox: list[list[int]] | None
    full_shape: tuple[int, ...]
    input_label: Image | None = None
    input_roi: Image | None = None

    @property
    def resampled(self) -> bool:
        """Whether the network grid differs from the input's (cropping aside)."""
        return self.image.spatial_shape != self.input_grid.spatial_shape or not np.allclose(
            self.image.spacing, self.input_grid.spacing, rtol=SPACING_RTOL)

    def geometry(self) -> "GridCase":
        """The same case without its voxels (broadcast zeros, no label or ROI): what brings results back onto
        the input's grid, cheap to keep for every validation case."""
        def empty(image: Image) -> Image:
            return image.with_array(np.broadcast_to(np.zeros((), np.uint8), (1, *image.spatial_shape)), ("0",))

        return GridCase(empty(self.image), None, None, empty(self.input_grid), self.bbox, self.full_shape)

    def channel_to_input(self, channel: np.ndarray) -> np.ndarray:
        """One probability channel from the network grid onto the (cropped) input grid, linearly."""
        if not self.resampled:
            return np.asarray(channel, np.float32)
        from medseg.preprocessing.resample import resample_probabilities

        grid = self.image.with_array(np.asarray(channel, np.float32)[None], ("p",))
        return resample_probabilities(grid, self.input_grid, order=1).array[0]

    def probabilities_to_input(self, probabilities: np.ndarray, background_outside: bool = True) -> np.ndarray:
        """``(C, *S)`` probabilities onto the input's full grid (float32).

        Outside the crop, channel 0 is 1 (certainly background) when ``background_outside``; sigmoid
        region outputs (no background channel) pass ``False`` and stay 0 there.
        """
        probs = np.asarray(probabilities)
        if self.resampled:
            from medseg.preprocessing.resample import resample_probabilities

            probs = resample_probabilities(self.image.with_array(probs.astype(np.float32)), self.input_grid,
                                           order=1).array
        probs = probs.astype(np.float32)
        if self.bbox is None:
            return probs
        from medseg.preprocessing.crop import uncrop

        full = uncrop(probs, self.bbox, self.full_shape, 0.0).astype(np.float32)
        if background_outside:
            outside = uncrop(np.ones(probs.shape[1:], bool), self.bbox, self.full_shape, False) == 0
            full[0][outside] = 1.0
        return full

    def labels_to_input(self, labels: np.ndarray) -> np.ndarray:
        """A label map on the (cropped) input grid onto the full input grid (background outside the crop).

        Labels are never resampled: bring probabilities back (:meth:`channel_to_input`) and label there.
        """
        if self.bbox is None:
            return labels
        from medseg.preprocessing.crop import uncrop

        return uncrop(labels, self.bbox, self.full_shape, 0).astype(labels.dtype)


def to_network_grid(
    image: Image,
    layout: GridLayout,
    *,
    roi: Image | None = None,
    label: Image | None = None,
    spacing: Sequence[float] | None = None,
    before_resampling: Any = None,
    keep_roi: bool = True,
) -> GridCase:
    """Bring a case onto the network's grid: crop, intensity steps, resample.

    Parameters
    ----------
    image : Image
        The raw case (same grid as ``roi`` and ``label``).
    layout : GridLayout
    roi : Image, optional
        Region of interest: intensity statistics are taken inside it; resampled with nearest neighbour.
    label : Image, optional
        Training label: resampled without inventing label values (``layout.resampling["label"]``).
    spacing : sequence of float, optional
        Override of ``layout.target_spacing`` (the predictor's ``--fast`` grid).
    before_resampling : callable, optional
        ``before_resampling(preprocessed, spacing)`` is called before a resampling, with the spacing (a
        memory check: stop before a large allocation).
    keep_roi : bool
        Bring the ROI onto the network grid too (training samples patches inside it); the predictor only
        needs it for the intensity statistics and passes False.

    Returns
    -------
    GridCase

    Examples
    --------
    >>> img = Image(np.arange(16, dtype=np.float32).reshape(1, 4, 4), spacing=(1.0, 1.0))
    >>> case = to_network_grid(img, GridLayout(({"name": "zscore"},), (2.0, 2.0)))
    >>> case.image.spatial_shape, case.probabilities_to_input(np.ones((2, 2, 2))).shape
    ((2, 2), (2, 4, 4))
    """
    full_shape = image.spatial_shape
    target = spacing if spacing is not None else layout.target_spacing
    if layout.fov_diameter is not None:
        image, roi, label, target = _fov_normalised(image, roi, label, layout, target)
    elif layout.field_extent is not None:
        image, roi, label, target = _extent_normalised(image, roi, label, layout, target)
    bbox = None
    if layout.crop_to_nonzero:
        from medseg.preprocessing.crop import crop_image, crop_to_nonzero

        image, label, bbox = crop_to_nonzero(image, label)
        roi = crop_image(roi, bbox) if roi is not None else None
    source, input_label, input_roi = image, label, roi
    pre = preprocess_image(image, list(layout.preprocessing), None, roi)
    if target is not None and not np.allclose(pre.spacing, target, rtol=SPACING_RTOL):
        if before_resampling is not None:
            before_resampling(pre, tuple(float(v) for v in target))
        from medseg.preprocessing.resample import resample_image, resample_label

        pre = resample_image(pre, tuple(target), order=layout.image_order)
        # labels and ROI onto the resampled image's exact grid, without inventing label values
        if label is not None:
            label = resample_label(label, pre, method=(layout.resampling or {}).get("label", "linear"))
        roi = resample_label(roi, pre, method="nearest") if roi is not None and keep_roi else None
    return GridCase(pre, label, roi, source, bbox, tuple(full_shape), input_label, input_roi)


def _fov_normalised(image: Image, roi: Image | None, label: Image | None, layout: GridLayout,
                    target: Sequence[float] | None) -> tuple[Image, Image, Image | None, tuple[float, ...]]:
    """The case with the spacing that brings its field of view to ``layout.fov_diameter`` on the network
    grid (the ROI is the FOV; found in the image when there is none), and the grid's spacing."""
    from medseg.preprocessing.fov import fov_roi, fov_spacing

    if image.spatial_dims != 2:
        raise MedsegError(f"field-of-view normalisation is for 2D photographs; the image is {image.spatial_dims}D")
    if roi is None:
        roi = fov_roi(image)
    unit = tuple(layout.target_spacing) if layout.target_spacing is not None else tuple(image.spacing)
    nominal = fov_spacing(np.asarray(roi.array[0]) != 0, layout.fov_diameter, unit)
    image, roi, label = _with_spacing(nominal, image, roi, label)
    return image, roi, label, tuple(target) if target is not None else unit


def _extent_normalised(image: Image, roi: Image | None, label: Image | None, layout: GridLayout,
                       target: Sequence[float] | None) -> tuple[Image, Image | None, Image | None, tuple[float, ...]]:
    """The case with the spacing that brings its larger side across ``layout.field_extent["axes"]`` to
    ``layout.field_extent["side"]`` voxels of the network grid (across the other axes each voxel is one of the
    grid's; with ``"outlier_ratio"`` only a side that far from it or farther), and the grid's spacing."""
    axes = [int(a) for a in layout.field_extent["axes"]]
    if image.spatial_dims <= max(axes):
        raise MedsegError(f"the model brings axes {axes} of each volume to a common extent; the image is "
                          f"{image.spatial_dims}D")
    unit = tuple(float(v) for v in (layout.target_spacing if layout.target_spacing is not None else image.spacing))
    side = max(image.spatial_shape[a] for a in axes)
    ratio = layout.field_extent.get("outlier_ratio")
    rescaled = ratio is None or is_outlying_side(side, float(layout.field_extent["side"]), float(ratio))
    scale = float(layout.field_extent["side"]) / side if rescaled else 1.0
    nominal = tuple(u * scale if a in axes else u for a, u in enumerate(unit))
    image, roi, label = _with_spacing(nominal, image, roi, label)
    return image, roi, label, tuple(target) if target is not None else unit


def is_outlying_side(side: float, median: float, ratio: float) -> bool:
    """Whether a matrix side is ``ratio`` times ``median`` or more, or that many times less (the field-extent
    rule's outlying scans)."""
    return not 1.0 / ratio < side / median < ratio


def _with_spacing(spacing: Sequence[float], *images: Image | None) -> tuple[Image | None, ...]:
    from dataclasses import replace

    return tuple(replace(i, spacing=tuple(spacing)) if i is not None else None for i in images)
