"""Localise, then segment (coarse to fine): a low-resolution model finds the structure's bounding box, the
full-resolution model runs only inside that box (plus a margin), and the result is pasted back onto the
input's exact grid.

This is the two-stage idea of nnU-Net's cascade (Isensee et al., Nature Methods 2021: a low-resolution
U-Net first) and TotalSegmentator (Wasserthal et al., Radiology AI 2023: a 3 mm model to find the region,
then the 1.5 mm model), reduced to what pays on a CPU: the cost of a sliding window is proportional to the
voxels it covers, so a structure filling a tenth of the volume costs about a tenth of the fine pass, plus
the coarse pass (``factor``³ fewer voxels).

The pair is stored as a folder holding ``localise.json`` (which sub-folders are the coarse and the fine
model, the margin, and the rule that chose it, with its reason) and the two ordinary model folders.
``medseg predict`` accepts that folder like any model folder.

Correctness details:

- the fine model's intensity normalisation is computed on the **whole** image, then the box is cut from
  the normalised image (a z-score inside the box alone would see other statistics than in training);
- the box is widened to at least one fine training patch, so the network sees as much context as it was
  trained with;
- the box encloses the coarse model's main components (:data:`MIN_COMPONENT_SHARE`), not every speck;
- a coarse pass that finds nothing falls back to the whole-volume fine pass (a miss of the localiser must
  not silently drop a lesion); :attr:`LocalisedResult.fallback` says so.

Examples
--------
>>> box_with_margin(np.pad(np.ones((2, 2, 2), bool), 4), (1.0, 1.0, 1.0), margin_mm=2.0, min_size=(4, 4, 4))
[[2, 8], [2, 8], [2, 8]]
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medseg.errors import MedsegError
from medseg.image import Image

__all__ = ["LOCALISE_NAME", "MAX_BOX_FRACTION", "MIN_TILES", "LocalisedResult", "LocaliseThenSegment",
           "main_components", "box_with_margin", "box_fraction", "coarse_plan", "localise_rule", "dataset_localise_rule",
           "write_localise_folder", "is_localise_folder"]

#: The file that makes a folder a coarse + fine pair.
LOCALISE_NAME = "localise.json"
#: Localising pays when the expected box (structure + margin) is at most this share of the image: the fine
#: pass then costs ≤ 30 % of the whole-volume pass, and with the coarse pass (``factor``³ fewer voxels)
#: the pair stays ≥ 3× faster only below about a quarter to a third (the issue's target: ≥ 3×).
MAX_BOX_FRACTION = 0.3
#: Coarse components smaller than this share of the largest one are ignored when placing the box: an
#: under-trained or noisy coarse model scatters specks that would stretch the box to the whole image, while
#: the main lesions of a multi-focal tumour (each ≥ 10 % of the largest) are kept.
MIN_COMPONENT_SHARE = 0.1
#: ...and when the whole-volume fine pass (after the fine model's own crop to the non-zero region) needs at
#: least this many tiles. Measured on BraTS (benchmarks/localise.py, BENCHMARKS.md): a planned fine pass of
#: 8 tiles took 8.3 s and localising it 18.4 s — the coarse pass reads, normalises and resamples the whole
#: 4-channel volume twice (to the coarse grid and back), a fixed cost worth about 8 tiles here.
MIN_TILES = 16


def main_components(foreground: np.ndarray, min_share: float = MIN_COMPONENT_SHARE) -> np.ndarray:
    """The connected components of ``foreground`` holding at least ``min_share`` of the largest one's voxels.

    Examples
    --------
    >>> fg = np.zeros((1, 20, 20), bool); fg[0, 2:8, 2:8] = True; fg[0, 15, 15] = True
    >>> int(main_components(fg).sum())
    36
    """
    import cc3d

    foreground = np.asarray(foreground, bool)
    if not foreground.any():
        return foreground
    components = cc3d.connected_components(foreground.astype(np.uint8), connectivity=26 if foreground.ndim == 3 else 8)
    counts = np.bincount(components.ravel())
    counts[0] = 0
    keep = np.flatnonzero(counts >= min_share * counts.max())
    return np.isin(components, keep)


def box_with_margin(foreground: np.ndarray, spacing: Sequence[float], margin_mm: float,
                    min_size: Sequence[int] = ()) -> list[list[int]]:
    """Bounding box ``[[lower, upper), ...]`` of ``foreground`` widened by ``margin_mm`` on each side and to at
    least ``min_size`` voxels per axis (centred, shifted inside the array), clipped to the array.

    An empty ``foreground`` gives the whole array.
    """
    shape = foreground.shape
    if not foreground.any():
        return [[0, int(s)] for s in shape]
    box = []
    for axis in range(foreground.ndim):
        others = tuple(a for a in range(foreground.ndim) if a != axis)
        present = np.flatnonzero(foreground.any(axis=others))
        pad = int(math.ceil(float(margin_mm) / float(spacing[axis])))
        lower, upper = int(present[0]) - pad, int(present[-1]) + 1 + pad
        need = int(min_size[axis]) if axis < len(min_size) else 0
        if upper - lower < need:
            grow = need - (upper - lower)
            lower -= grow // 2
            upper += grow - grow // 2
        lower, upper = max(lower, 0), min(upper, int(shape[axis]))
        if upper - lower < need:  # hit a border: extend on the other side
            lower, upper = max(0, min(lower, upper - need)), min(int(shape[axis]), max(upper, lower + need))
        box.append([lower, upper])
    return box


def box_fraction(foreground: np.ndarray, spacing: Sequence[float], margin_mm: float,
                 min_size: Sequence[int] = ()) -> float:
    """Share of the image inside :func:`box_with_margin` (the input of :func:`localise_rule`, e.g. the median
    over the training labels).

    Examples
    --------
    >>> fg = np.zeros((10, 10, 10), bool); fg[4:6, 4:6, 4:6] = True
    >>> box_fraction(fg, (1, 1, 1), 1.0)
    0.064
    """
    box = box_with_margin(np.asarray(foreground, bool), spacing, margin_mm, min_size)
    return float(np.prod([b - a for a, b in box]) / np.prod(np.shape(foreground)))


def localise_rule(image_shape: Sequence[int], spacing: Sequence[float], fine_spacing: Sequence[float] | None,
                  fine_patch: Sequence[int], box_fraction: float, crop_fraction: float = 1.0) -> tuple[bool, str]:
    """Whether localise-then-segment pays for images like this one, and why (a named, recorded rule).

    Parameters
    ----------
    image_shape, spacing : sequence
        A typical (median) image of the dataset.
    fine_spacing : sequence of float, optional
        The fine model's grid (None: the image's own).
    fine_patch : sequence of int
        The fine model's tile.
    box_fraction : float
        Typical share of the image inside the structure's box plus margin (e.g. the training labels' median).
    crop_fraction : float
        Share of the image the fine model keeps by cropping to the non-zero region (1: no crop); the
        whole-volume pass only covers that.

    Returns
    -------
    (bool, str)

    Examples
    --------
    >>> localise_rule((155, 240, 240), (1, 1, 1), (1, 1, 1), (64, 64, 64), 0.12)[0]
    True
    >>> localise_rule((88, 112, 112), (1, 1, 1), None, (96, 112, 112), 0.12)
    (False, 'the whole-volume pass needs 1 tile(s) (< 16): the coarse pass costs more than it saves')
    """
    fine_spacing = spacing if fine_spacing is None else fine_spacing
    side = float(crop_fraction) ** (1.0 / len(image_shape))  # the crop, as an equal share per axis
    grid = [max(1, int(round(n * s / f * side))) for n, s, f in zip(image_shape, spacing, fine_spacing)]
    tiles = int(np.prod([max(1, math.ceil(g / p)) for g, p in zip(grid, fine_patch)]))
    if tiles < MIN_TILES:
        return False, (f"the whole-volume pass needs {tiles} tile(s) (< {MIN_TILES}): the coarse pass costs more "
                       "than it saves")
    if box_fraction > MAX_BOX_FRACTION * crop_fraction:
        return False, (f"the structure's box with margin covers {100 * box_fraction:.0f}% of the image "
                       f"(> {100 * MAX_BOX_FRACTION:.0f}% of the {100 * crop_fraction:.0f}% the fine pass covers): "
                       "the fine pass would cost nearly as much")
    return True, (f"the whole-volume pass needs {tiles} tiles (≥ {MIN_TILES}) and the box with margin covers "
                  f"{100 * box_fraction:.0f}% of the image (≤ {100 * MAX_BOX_FRACTION:.0f}%)")


def dataset_localise_rule(dataset: Any, config: Any, cases: Sequence[str],
                          margin_mm: float = 10.0) -> tuple[bool, str]:
    """:func:`localise_rule` for a dataset's typical image, read from its labelled ``cases``.

    The median shape and spacing of the cases, the median share of the image inside their labels' box plus
    ``margin_mm``, and — when the fine model ``config`` crops to the non-zero region — the median share that
    crop keeps.

    Parameters
    ----------
    dataset : medseg.datasets.Dataset
    config : medseg.model_folder.ModelConfig
        The fine model's configuration (its grid, training patch and crop).
    cases : sequence of str
        Labelled case names (the fine model's training cases: what the rule may look at).
    margin_mm : float
    """
    from medseg.preprocessing.crop import bounding_box

    if not cases:
        raise MedsegError("no labelled cases to decide whether localising pays", dataset.root)
    foreground_values = [v for v in dataset.label_values if v not in (0, dataset.ignore_label)]
    fractions, shapes, spacings, crops = [], [], [], []
    for name in cases:
        case = dataset.case(name)
        label = case.read_label()
        if label is None:
            raise MedsegError(f"case '{name}' has no label", dataset.root)
        fractions.append(box_fraction(np.isin(label.array[0], foreground_values), label.spacing, margin_mm))
        shapes.append(label.spatial_shape)
        spacings.append(label.spacing)
        if config.crop_to_nonzero:  # the whole-volume fine pass covers only the non-zero region
            array = case.read_image().array
            box = bounding_box(np.any(array != 0, axis=0))
            crops.append(float(np.prod([b - a for a, b in box]) / np.prod(array.shape[1:])))
    return localise_rule(np.median(shapes, 0).astype(int).tolist(), np.median(spacings, 0).tolist(),
                         config.target_spacing, config.data_patch_size, float(np.median(fractions)),
                         float(np.median(crops)) if crops else 1.0)


@dataclass
class LocalisedResult:
    """A localised prediction: the label map on the input grid, the box used, and whether it fell back."""

    labels: Image
    box: list[list[int]]
    fallback: bool
    box_fraction: float


class LocaliseThenSegment:
    """A coarse model that localises and a fine model that segments inside the box.

    Parameters
    ----------
    coarse, fine : Predictor
        The low-resolution and the full-resolution predictors (same inputs; the fine one's labels are the
        output). Any label of the coarse model counts as the structure.
    margin_mm : float
        Margin added around the coarse box on each side (covers the coarse model's boundary error).
    """

    def __init__(self, coarse: Any, fine: Any, margin_mm: float = 10.0):
        if coarse.config.input_channels != fine.config.input_channels:
            raise MedsegError("the coarse and the fine model take different input channels")
        # The coarse pass only places a box, so it runs once, unmirrored: mirroring would repeat it 2^axes times
        # (BraTS, 4 mm: 60 s against 13 s per case on one busy thread) for a boundary the margin covers anyway.
        self.coarse = copy.copy(coarse)
        self.coarse.tta = False
        self.fine, self.margin_mm = fine, float(margin_mm)

    @classmethod
    def from_folder(cls, path: str | Path, **options: Any) -> "LocaliseThenSegment":
        """Load a folder written by :func:`write_localise_folder` (``options`` go to both predictors)."""
        from medseg.inference.predictor import Predictor

        path = Path(path)
        spec = _read_spec(path)
        return cls(Predictor.from_folder(path / spec["coarse"], **options),
                   Predictor.from_folder(path / spec["fine"], **options), float(spec.get("margin_mm", 10.0)))

    @property
    def config(self):  # noqa: ANN201  (the fine model's: labels, regions, channels of the output)
        return self.fine.config

    @property
    def models(self) -> list:
        """The fine predictor's models (what the output's labels come from)."""
        return self.fine.models

    def _fine_min_size(self, image: Image) -> tuple[int, ...]:
        cfg = self.fine.config
        fine_spacing = cfg.target_spacing or image.spacing
        return tuple(int(math.ceil(p * f / s)) for p, f, s in zip(cfg.data_patch_size, fine_spacing, image.spacing))

    def predict_localised(self, image: Image, roi: Image | None = None,
                          notes: list[str] | None = None) -> LocalisedResult:
        """Coarse labels → box + margin → fine labels inside the box, on the input's grid; ``notes`` as
        :meth:`Predictor.predict_with_probabilities <medseg.inference.predictor.Predictor.predict_with_probabilities>`
        takes them (the fine model's close calls)."""
        from medseg.inference.predictor import LoadedModel, Predictor, close_call_notes
        from medseg.preprocessing.crop import crop_image, uncrop
        from medseg.preprocessing.grid import preprocess_image

        coarse = self.coarse.predict(image, roi)
        foreground = main_components(np.asarray(coarse.array[0]) != 0)
        if not foreground.any():
            labels = self.fine.predict_with_probabilities(image, roi, probabilities=False, notes=notes)[0]
            return LocalisedResult(labels, [[0, int(s)] for s in image.spatial_shape], True, 1.0)
        box = box_with_margin(foreground, image.spacing, self.margin_mm, self._fine_min_size(image))
        # normalise on the whole image (as in training), then cut the box out of the normalised image
        cfg = self.fine.config
        normalised = preprocess_image(image, cfg.preprocessing, None, roi)
        inner = Predictor([LoadedModel(m.folder, replace(m.config, preprocessing=[], crop_to_nonzero=False),
                                       m.network, m.prune_level) for m in self.fine.models],
                          overlap=self.fine.overlap, tta=self.fine.tta, batch_size=self.fine.batch_size,
                          tile_size=self.fine.tile_size, postprocessing=bool(self.fine.postprocessing))
        inner.models = [replace(m, config=replace(m.config, input_channels=normalised.num_channels))
                        for m in inner.models]
        crop_roi = crop_image(roi, box) if roi is not None else None
        part = inner.predict_with_probabilities(crop_image(normalised, box), crop_roi, probabilities=False,
                                                notes=notes)[0]
        full = uncrop(np.asarray(part.array[0]), box, image.spatial_shape, 0).astype(part.array.dtype)
        if roi is not None:
            full = np.where(np.asarray(roi.array[0]) != 0, full, 0).astype(full.dtype)
        if self.fine.largest_component:
            from medseg.postprocessing import keep_largest_component

            close: list[dict[str, Any]] | None = None if notes is None else []
            full = keep_largest_component(full, connectivity=full.ndim, close=close)
            if notes is not None:
                notes.extend(close_call_notes(close, cfg))
        fraction = float(np.prod([b - a for a, b in box]) / np.prod(image.spatial_shape))
        return LocalisedResult(image.with_array(full[None], ("label",)), box, False, fraction)

    def predict(self, image: Image, roi: Image | None = None) -> Image:
        """The label map on the input's grid."""
        return self.predict_localised(image, roi).labels

    def predict_with_probabilities(self, image: Image, roi: Image | None = None, *, probabilities: bool = False,
                                   notes: list[str] | None = None) -> tuple[Image, None]:
        """Labels only (the interface of :class:`~medseg.inference.predictor.Predictor`)."""
        if probabilities:
            raise MedsegError("localise-then-segment writes labels only; predict probabilities with the fine model")
        return self.predict_localised(image, roi, notes).labels, None


def coarse_plan(plan: dict[str, Any], factor: float = 4.0) -> dict[str, Any]:
    """The coarse model's plan: the fine plan's grid ``factor`` times coarser on every axis (patch, network and
    preprocessing unchanged, so one patch sees ``factor``³ times the volume), the rule recorded.

    Examples
    --------
    >>> coarse_plan({"target_spacing": [1.0, 0.5, 0.5], "rules_fired": []}, 4)["target_spacing"]
    [4.0, 2.0, 2.0]
    """
    if factor <= 1:
        raise MedsegError(f"the coarse grid must be coarser than the fine one (factor > 1), not {factor}")
    out = json.loads(json.dumps(plan))
    fine = [float(v) for v in out["target_spacing"]]
    out["target_spacing"] = [round(v * float(factor), 6) for v in fine]
    out["alternatives"] = {}  # the other configuration is not coarsened: drop it rather than mix grids
    out.setdefault("rules_fired", []).append({
        "rule": "localise.coarse_spacing", "decision": str(out["target_spacing"]),
        "reason": f"{factor:g}× the fine grid {fine}: finds the structure's box at about {factor:g}³ fewer voxels"})
    return out


def _read_spec(path: Path) -> dict[str, Any]:
    spec_path = path / LOCALISE_NAME
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MedsegError(f"cannot read {LOCALISE_NAME}: {exc}", spec_path) from None
    for key in ("coarse", "fine"):
        if not isinstance(spec.get(key), str) or not (path / spec[key] / "config.json").is_file():
            raise MedsegError(f"'{key}' must name a model folder inside {path}", spec_path)
    return spec


def fine_folder(path: str | Path) -> Path:
    """The fine model folder of a pair (the folder itself for an ordinary model folder)."""
    path = Path(path)
    return path / _read_spec(path)["fine"] if is_localise_folder(path) else path


def is_localise_folder(path: str | Path) -> bool:
    """True for a folder holding ``localise.json`` (a coarse + fine pair)."""
    return (Path(path) / LOCALISE_NAME).is_file()


def write_localise_folder(path: str | Path, coarse: str, fine: str, *, margin_mm: float = 10.0,
                          rule: tuple[bool, str] | None = None) -> Path:
    """Write ``localise.json`` into ``path`` (which holds the two model folders ``coarse`` and ``fine``).

    ``rule``: the :func:`localise_rule` decision and reason, recorded beside the pair.
    """
    from medseg.fileutil import write_text_atomic

    path = Path(path)
    for name in (coarse, fine):
        if not (path / name / "config.json").is_file():
            raise MedsegError(f"no model folder '{name}' inside", path)
    spec = {"coarse": coarse, "fine": fine, "margin_mm": float(margin_mm)}
    if rule is not None:
        spec["rule"] = {"name": "localise_then_segment", "decision": bool(rule[0]), "reason": rule[1]}
    write_text_atomic(path / LOCALISE_NAME, json.dumps(spec, indent=2) + "\n")
    return path / LOCALISE_NAME
