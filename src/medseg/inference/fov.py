"""Predicting on fundus photographs from another camera: find the field of view, zoom the image so that
the FOV has the training camera's diameter, predict, and return labels/probabilities at the input's size.

The training camera's diameter is a number recorded with the model (pixels; :func:`training_fov_diameter`
measures it on the training images or their FOV masks; :func:`save_fov_diameter` writes it to the model
folder's ``fov.json`` until config.json's preprocessing steps hold it). :class:`FovNormalisedPredictor`
wraps any predictor that has ``predict_with_probabilities(image, roi, probabilities=...)``
(:class:`~medseg.inference.predictor.Predictor`).

Examples
--------
>>> predictor = FovNormalisedPredictor(Predictor.from_folder("drive_model"), fov_diameter=538)  # doctest: +SKIP
>>> labels, probs = predictor.predict_with_probabilities(read_image("stare.png"))             # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from medseg.errors import MedsegError
from medseg.fileutil import write_text_atomic
from medseg.image import Image
from medseg.preprocessing.fov import find_fov, fit_fov_circle, rescale_to_diameter, restore_size


def training_fov_diameter(images: Iterable[np.ndarray], rois: Iterable[np.ndarray | None] | None = None) -> float:
    """Median aperture diameter (pixels) over training images: of their FOV masks where given, else of
    the FOV found in them.

    Examples
    --------
    >>> yy, xx = np.mgrid[:100, :120]
    >>> roi = (yy - 50) ** 2 + (xx - 60) ** 2 < 45 ** 2
    >>> round(training_fov_diameter([np.stack([roi * 200.0] * 3)]))
    90
    """
    images = list(images)
    rois = list(rois) if rois is not None else [None] * len(images)
    diameters = [2 * fit_fov_circle(roi if roi is not None else find_fov(image))[2] for image, roi in zip(images, rois)]
    if not diameters:
        raise MedsegError("no training images to measure the field of view on")
    return float(np.median(diameters))


#: sidecar of a model folder recording its training camera's FOV diameter (until config.json holds it)
FOV_NAME = "fov.json"


def save_fov_diameter(folder: str | Path, diameter: float, source: str) -> Path:
    """Record a model's training FOV diameter (pixels) and how it was measured in ``MODEL/fov.json``."""
    if not diameter > 0:
        raise MedsegError(f"FOV diameter must be positive; got {diameter}")
    path = Path(folder) / FOV_NAME
    write_text_atomic(path, json.dumps({"fov_diameter": float(diameter), "source": source}, indent=2) + "\n")
    return path


def load_fov_diameter(folder: str | Path) -> float | None:
    """The recorded training FOV diameter of a model folder, or None when it has none."""
    path = Path(folder) / FOV_NAME
    if not path.is_file():
        return None
    try:
        value = float(json.loads(path.read_text(encoding="utf-8"))["fov_diameter"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise MedsegError(f"unreadable FOV record: {exc}", path) from None
    if not value > 0:
        raise MedsegError(f"FOV diameter must be positive; got {value}", path)
    return value


class FovNormalisedPredictor:
    """A predictor that sees every fundus photograph at the training camera's FOV diameter.

    Parameters
    ----------
    predictor : object
        Has ``predict_with_probabilities(image, roi=None, probabilities=True)`` and ``config``.
    fov_diameter : float
        The training images' FOV diameter in pixels.
    """

    def __init__(self, predictor: Any, fov_diameter: float):
        if not fov_diameter > 0:
            raise MedsegError(f"fov_diameter must be positive; got {fov_diameter}")
        self.predictor, self.fov_diameter = predictor, float(fov_diameter)

    @classmethod
    def from_folder(cls, folder: str | Path, **predictor_options: Any) -> "FovNormalisedPredictor":
        """A model folder's predictor at its recorded FOV diameter (``fov.json``; an error without one)."""
        from medseg.inference.predictor import Predictor

        diameter = load_fov_diameter(folder)
        if diameter is None:
            raise MedsegError(f"no {FOV_NAME}: the training FOV diameter was not recorded (save_fov_diameter)", folder)
        return cls(Predictor.from_folder(folder, **predictor_options), diameter)

    @property
    def config(self) -> Any:
        return self.predictor.config

    def predict_with_probabilities(self, image: Image, roi: Image | None = None, *, probabilities: bool = True
                                   ) -> tuple[Image, Image | None]:
        """Labels and probabilities on the input's grid; the FOV is ``roi`` when given, else found."""
        if image.spatial_dims != 2:
            raise MedsegError("field-of-view normalisation is for 2D photographs")
        fov = np.asarray(roi.array[0]) != 0 if roi is not None else find_fov(image.array)
        zoomed, zoomed_fov, scale = rescale_to_diameter(image.array, fov, self.fov_diameter)
        small = Image(zoomed.astype(image.array.dtype) if np.issubdtype(image.array.dtype, np.floating)
                      else np.clip(np.round(zoomed), np.iinfo(image.array.dtype).min,
                                   np.iinfo(image.array.dtype).max).astype(image.array.dtype),
                      # the input's pixel size, not spacing/scale: a model that resamples to its training
                      # spacing would otherwise undo the zoom (fundus pixels carry no physical size)
                      spacing=image.spacing, channel_names=image.channel_names)
        small_roi = small.with_array(zoomed_fov[None].astype(np.uint8), ("roi",))
        _, probs = self.predictor.predict_with_probabilities(small, small_roi, probabilities=True)
        full = restore_size(np.asarray(probs.array, np.float32), image.spatial_shape)
        from medseg.inference.predictor import labels_from_probabilities

        labels = np.asarray(labels_from_probabilities(full, self.config))
        labels = np.where(fov, labels, 0).astype(labels.dtype)
        label_image = image.with_array(labels[None], ("label",))
        return label_image, image.with_array(full, probs.channel_names) if probabilities else None

    def predict(self, image: Image, roi: Image | None = None) -> Image:
        """The label map on the input's grid."""
        return self.predict_with_probabilities(image, roi, probabilities=False)[0]
