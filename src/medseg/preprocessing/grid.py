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


