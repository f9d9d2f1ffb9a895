"""Compose transforms and build them from a JSON config (recorded in the model folder).

A config is ``{"transforms": [{"name": "flip", "p": 0.5}, {"name": "affine", ...}, ...],
"ignore_index": null}``; ``ignore_index`` (optional) is the default label fill of the spatial
transforms that do not set their own. Without ``"transforms"`` the default list is used, for which
``"anisotropic_axis"`` (optional) names a thick-slice axis. ``"leading_transforms"`` (optional) run before
that list (a network's paper augmentation added to the defaults: histogram matching must see the case's own
intensities, before any intensity change); the recorded config holds the one resolved list.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Sequence

import torch

from medseg.augmentation.base import RandomTransform
from medseg.augmentation.functional import check_batch
from medseg.augmentation.intensity import intensity_transforms
from medseg.augmentation.spatial import spatial_transforms
from medseg.errors import MedsegError

Tensor = torch.Tensor


def transform_types() -> dict[str, type[RandomTransform]]:
    """Name → class of every built-in random transform."""
    from medseg.augmentation.bspline import RandomBSplineDeformation
    from medseg.augmentation.histogram import RandomHistogramMatching

    return {**spatial_transforms(), **intensity_transforms(), RandomBSplineDeformation.name: RandomBSplineDeformation,
            RandomHistogramMatching.name: RandomHistogramMatching}


class Compose:
    """Apply transforms in order: ``aug(image, label, generator) -> (image, label)``.

    Parameters
    ----------
    transforms : sequence of RandomTransform
    ignore_index : int, optional
        Recorded in :meth:`to_config` (the spatial transforms carry their own value).

    Examples
    --------
    >>> from medseg.augmentation import RandomFlip
    >>> aug = Compose([RandomFlip(p=1.0)])
    >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
    >>> aug(x, None, torch.Generator().manual_seed(0))[0].flatten().tolist()
    [3.0, 2.0, 1.0, 0.0]
    """

    def __init__(self, transforms: Sequence[RandomTransform], ignore_index: int | None = None):
        self.transforms = list(transforms)
        self.ignore_index = ignore_index

    def __call__(
        self, image: Tensor, label: Tensor | None = None, generator: torch.Generator | None = None,
        cases: Any = None,
    ) -> tuple[Tensor, Tensor | None]:
        """``cases``: a :class:`~medseg.augmentation.histogram.BatchCases` for the transforms that match one
        training case to another (the others ignore it)."""
        check_batch(image, label)
        if not image.is_floating_point():
            image = image.to(torch.float32)
        for t in self.transforms:
            if getattr(t, "uses_cases", False):
                image, label = t(image, label, generator, cases=cases)
            else:
                image, label = t(image, label, generator)
        return image, label

    @property
    def uses_cases(self) -> bool:
        """Whether a transform needs to know each sample's training case (histogram matching)."""
        return any(getattr(t, "uses_cases", False) for t in self.transforms)

    def to_config(self) -> dict[str, Any]:
        """JSON-serialisable config that :func:`build_augmentation` turns back into this Compose."""
        return {"transforms": [t.to_dict() for t in self.transforms], "ignore_index": self.ignore_index}

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        return f"Compose({[t.name for t in self.transforms]})"


def default_augmentation_config(
    spatial_dims: int, anisotropic_axis: int | None = None, ignore_index: int | None = None
) -> dict[str, Any]:
    """The default augmentation, nnU-Net-like, cheap enough for CPU training.

    Rules:
    - mirror along every axis (p 0.5 each);
    - 2D: rotation over the full circle (orientation carries little meaning in a patch of a fundus
      photograph or a slice), zoom 0.85–1.25; 3D: ±30° about every axis, same zoom;
    - anisotropic 3D (``anisotropic_axis`` = the thick-slice axis): rotation, zoom, blur and
      low-resolution act within slices only (nnU-Net's "dummy 2D" augmentation);
    - elastic deformation off (costly, and nnU-Net found it unnecessary); brightness ×0.75–1.25,
      contrast ×0.75–1.25, gamma 0.7–1.5, noise σ ≤ 0.1, blur σ 0.5–1, low resolution ×0.5–1 with
      nnU-Net's probabilities;
    - brightness, contrast and gamma draw one factor per sample, shared by the channels (``per_channel`` draws
      one per channel, as nnU-Net does). Measured on BraTS against the same code and fold (fold 0, 60 min): one
      factor per channel lost the whole tumour on both networks (3D U-Net WT 0.795 → 0.630, SegResNet-VAE 0.800
      → 0.671), over-segmenting one unseen tumour 3–3.5×; over all 8 held-out cases the U-Net scored
      0.819 / 0.687 / 0.480 per sample against 0.798 / 0.663 / 0.483 per channel (BENCHMARKS.md, sessions 25, 26).

    Parameters
    ----------
    spatial_dims : int
        2 or 3.
    anisotropic_axis : int, optional
        Spatial axis with much coarser spacing (3D only).
    ignore_index : int, optional
        Label value for regions moved in from outside the patch.

    Returns
    -------
    dict
        A config for :func:`build_augmentation`.
    """
    if spatial_dims not in (2, 3):
        raise MedsegError(f"spatial_dims must be 2 or 3; got {spatial_dims}")
    if anisotropic_axis is not None and (spatial_dims != 3 or not 0 <= anisotropic_axis < 3):
        raise MedsegError(f"anisotropic_axis must be 0, 1 or 2 for 3D data; got {anisotropic_axis} ({spatial_dims}D)")
    in_plane = None if anisotropic_axis is None else [a for a in range(3) if a != anisotropic_axis]
    rotation = [-180.0, 180.0] if (spatial_dims == 2 or in_plane) else [-30.0, 30.0]
    transforms = [
        {"name": "affine", "rotation": rotation, "scale": [0.85, 1.25], "axes": in_plane, "p": 0.3},
        {"name": "noise", "std": [0.0, 0.1], "p": 0.1},
        {"name": "blur", "sigma": [0.5, 1.0], "axes": in_plane, "p": 0.2},
        {"name": "brightness", "factor": [0.75, 1.25], "p": 0.15},
        {"name": "contrast", "factor": [0.75, 1.25], "p": 0.15},
        {"name": "low_resolution", "zoom": [0.5, 1.0], "axes": in_plane, "p": 0.25},
        {"name": "gamma", "gamma": [0.7, 1.5], "p": 0.3},
        {"name": "flip", "axes": None, "p": 0.5},
    ]
    return {"transforms": transforms, "ignore_index": ignore_index}


def build_augmentation(
    config: dict[str, Any] | None, spatial_dims: int, anisotropic_axis: int | None = None
) -> Compose:
    """Build a :class:`Compose` from a JSON config (None: :func:`default_augmentation_config`).

    Parameters
    ----------
    config : dict or None
        ``{"transforms": [...], "ignore_index": ...}``; an empty list disables augmentation. Without
        ``"transforms"`` the defaults are used (with the config's ``ignore_index`` and
        ``anisotropic_axis``).
    spatial_dims : int
        2 or 3; axes in the config are checked against it.
    anisotropic_axis : int, optional
        Used only for the default config.

    Raises
    ------
    MedsegError
        Naming the transform (index and name) and the field that is wrong.

    Examples
    --------
    >>> aug = build_augmentation(None, spatial_dims=2)
    >>> build_augmentation(aug.to_config(), 2).to_config() == aug.to_config()
    True
    """
    if spatial_dims not in (2, 3):
        raise MedsegError(f"spatial_dims must be 2 or 3; got {spatial_dims}")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise MedsegError(f"augmentation config must be an object; got {type(config).__name__}")
    unknown = sorted(set(config) - {"transforms", "ignore_index", "anisotropic_axis", "leading_transforms"})
    if unknown:
        raise MedsegError(f"augmentation config: unknown field '{unknown[0]}' (fields: transforms, ignore_index, "
                          "anisotropic_axis, leading_transforms)")
    ignore_index = config.get("ignore_index")
    leading = config.get("leading_transforms") or []
    if not isinstance(leading, list):
        raise MedsegError("augmentation config: 'leading_transforms' must be a list")
    if "transforms" not in config:
        axis = config.get("anisotropic_axis", anisotropic_axis)
        if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)):
            raise MedsegError(f"augmentation config: anisotropic_axis must be an integer or null; got {axis!r}")
        config = {**default_augmentation_config(spatial_dims, axis), "ignore_index": ignore_index}
    if not isinstance(config["transforms"], list):
        raise MedsegError("augmentation config: 'transforms' must be a list")
    config = {**config, "transforms": list(leading) + list(config["transforms"])}
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise MedsegError(f"augmentation config: ignore_index must be an integer or null; got {ignore_index!r}")
    types = transform_types()
    transforms = []
    for i, entry in enumerate(config["transforms"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise MedsegError(f"augmentation transform {i} must be an object with a 'name'; got {entry!r}")
        name = entry["name"]
        if name not in types:
            raise MedsegError(f"augmentation transform {i}: unknown transform '{name}'; known: {', '.join(sorted(types))}")
        entry = copy.deepcopy(entry)
        cls = types[name]
        if cls.spatial and "ignore_index" in {f for f in cls.__dataclass_fields__} and entry.get("ignore_index") is None:
            entry["ignore_index"] = ignore_index
        try:
            t = cls.from_dict(entry)
            t.check_axes(spatial_dims)
        except MedsegError as exc:
            raise MedsegError(f"augmentation transform {i} ({exc.message})") from exc
        except TypeError as exc:
            raise MedsegError(f"augmentation transform {i} ({name}): {exc}") from exc
        transforms.append(t)
    aug = Compose(transforms, ignore_index)
    try:
        json.dumps(aug.to_config(), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise MedsegError(f"augmentation config is not JSON-serialisable: {exc}") from None
    return aug
