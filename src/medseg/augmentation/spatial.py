"""Spatial random transforms: flips, rotation/scaling (affine) and elastic deformation.

Image and label go through the same sampling grid: the image is interpolated linearly, the label
with nearest neighbour. Regions moved in from outside the patch are 0 in the image (or the edge value
with ``image_padding="border"``) and background 0 in the label, or ``ignore_index`` when given so that
the loss skips them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F

from medseg.augmentation import functional as Fn
from medseg.augmentation.base import RandomTransform, apply_selected, check_range, uniform
from medseg.errors import MedsegError

Tensor = torch.Tensor


def _subset(x: Tensor | None, selected: Tensor) -> Tensor | None:
    return None if x is None else x[selected.to(x.device)]


@dataclasses.dataclass
class RandomFlip(RandomTransform):
    """Mirror each sample along each of ``axes`` with probability ``p`` (independently per axis).

    Parameters
    ----------
    axes : list of int, optional
        Spatial axes (array order) that may be flipped; default all.
    p : float
        Probability per sample and axis.

    Examples
    --------
    >>> t = RandomFlip(p=1.0)
    >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
    >>> t(x, None, torch.Generator().manual_seed(0))[0].flatten().tolist()
    [3.0, 2.0, 1.0, 0.0]
    """

    name: ClassVar[str] = "flip"
    spatial: ClassVar[bool] = True
    axes: list[int] | None = None
    p: float = 0.5

    def __call__(self, image, label=None, generator=None):
        d = Fn.check_batch(image, label)
        self.check_axes(d)
        mask = torch.rand((image.shape[0], d), generator=generator) < float(self.p)
        if self.axes is not None:
            allowed = torch.zeros(d, dtype=torch.bool)
            allowed[list(self.axes)] = True
            mask &= allowed
        if not bool(mask.any()):
            return image, label
        return Fn.flip(image, label, mask)


@dataclasses.dataclass
class RandomAffine(RandomTransform):
    """Random rotation, scaling and translation about the patch centre, in one resampling.

    Parameters
    ----------
    rotation : [min, max]
        Rotation angle range in degrees, drawn independently for each rotation plane (one plane in
        2D or for two ``axes``; three planes for three axes in 3D).
    scale : [min, max]
        Zoom range (> 1 enlarges the content).
    per_axis_scale : bool
        Draw one zoom per axis instead of one for all.
    translation : float
        Maximum shift as a fraction of each axis' size.
    axes : list of int, optional
        Axes involved (default all). For thick-slice 3D data use the in-plane axes, e.g. ``[1, 2]``:
        rotation then happens within slices only and the slice axis is not scaled.
    image_padding : {"zeros", "border", "reflection"}
        Image values for regions moved in from outside the patch.
    ignore_index : int, optional
        Label value there; default background 0.
    p : float
        Probability per sample.
    """

    name: ClassVar[str] = "affine"
    spatial: ClassVar[bool] = True
    rotation: Sequence[float] = (-15.0, 15.0)
    scale: Sequence[float] = (0.85, 1.25)
    per_axis_scale: bool = False
    translation: float = 0.0
    axes: list[int] | None = None
    image_padding: str = "zeros"
    ignore_index: int | None = None
    p: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        self.rotation = check_range(f"{self.name}.rotation", self.rotation, -360, 360)
        self.scale = check_range(f"{self.name}.scale", self.scale, 1e-3, None)
        if not 0 <= float(self.translation) < 1:
            raise MedsegError(f"{self.name}.translation must be in [0, 1); got {self.translation!r}")
        if self.image_padding not in ("zeros", "border", "reflection"):
            raise MedsegError(f"{self.name}.image_padding must be 'zeros', 'border' or 'reflection'; got {self.image_padding!r}")

    def sample_matrix(self, n: int, spatial_shape: Sequence[int], generator: torch.Generator | None) -> Tensor:
        """(n, D, D+1) sampling matrices; every draw is made for every sample, in a fixed order."""
        d = len(spatial_shape)
        axes = list(range(d)) if self.axes is None else sorted(int(a) for a in self.axes)
        angles = uniform(n, self.rotation, generator, columns=3) * (math.pi / 180.0)
        zoom = uniform(n, self.scale, generator, columns=d)
        if not self.per_axis_scale:
            zoom = zoom[:, :1].expand(n, d)
        scales = torch.ones(n, d)
        scales[:, axes] = zoom[:, axes]
        shift = uniform(n, (-1.0, 1.0), generator, columns=d) * float(self.translation)
        shift = shift * torch.tensor([float(s) for s in spatial_shape])
        keep = torch.zeros(d, dtype=torch.bool)
        keep[axes] = True
        shift = shift * keep
        linear = Fn.rotation_scale_matrix(angles, scales, axes, d)
        return torch.cat([linear, shift[..., None]], dim=2)

    def apply(self, image, label, selected, generator):
        d = image.ndim - 2
        self.check_axes(d)
        matrix = self.sample_matrix(image.shape[0], image.shape[2:], generator)
        if not bool(selected.any()):
            return image, label
        img, lab = Fn.affine(
            image[selected.to(image.device)], _subset(label, selected), matrix[selected],
            self.image_padding, self.ignore_index,
        )
        return apply_selected(image, selected, img), (None if label is None else apply_selected(label, selected, lab))


@dataclasses.dataclass
class RandomElastic(RandomTransform):
    """Smooth random deformation: Gaussian displacements on a coarse grid, upsampled linearly.

    Parameters
    ----------
    magnitude : [min, max]
        Range of the displacement standard deviation, in voxels (drawn per sample).
    control_points : int
        Coarse grid points per axis (fewer = smoother).
    axes : list of int, optional
        Axes along which voxels are displaced (default all; in-plane for thick slices).
    image_padding, ignore_index, p
        As in :class:`RandomAffine`.
    """

    name: ClassVar[str] = "elastic"
    spatial: ClassVar[bool] = True
    magnitude: Sequence[float] = (0.0, 4.0)
    control_points: int = 5
    axes: list[int] | None = None
    image_padding: str = "border"
    ignore_index: int | None = None
    p: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        self.magnitude = check_range(f"{self.name}.magnitude", self.magnitude, 0, None)
        if int(self.control_points) < 2:
            raise MedsegError(f"{self.name}.control_points must be at least 2; got {self.control_points!r}")

    def sample_displacement(self, n: int, spatial_shape: Sequence[int], generator: torch.Generator | None) -> Tensor:
        d = len(spatial_shape)
        k = int(self.control_points)
        sigma = uniform(n, self.magnitude, generator)
        coarse = torch.randn((n, d, *([k] * d)), generator=generator) * sigma.reshape(n, 1, *([1] * d))
        if self.axes is not None:
            keep = torch.zeros(d)
            keep[list(self.axes)] = 1.0
            coarse = coarse * keep.reshape(1, d, *([1] * d))
        mode = "bilinear" if d == 2 else "trilinear"
        return F.interpolate(coarse, size=list(spatial_shape), mode=mode, align_corners=True)

    def apply(self, image, label, selected, generator):
        self.check_axes(image.ndim - 2)
        n_sel = int(selected.sum())
        # Draw for the selected samples only: a full-resolution field is the expensive part.
        disp = self.sample_displacement(n_sel, image.shape[2:], generator) if n_sel else None
        if disp is None:
            return image, label
        img, lab = Fn.elastic(
            image[selected.to(image.device)], _subset(label, selected), disp, self.image_padding, self.ignore_index
        )
        return apply_selected(image, selected, img), (None if label is None else apply_selected(label, selected, lab))


def spatial_transforms() -> dict[str, type[RandomTransform]]:
    return {t.name: t for t in (RandomFlip, RandomAffine, RandomElastic)}


__all__ = ["RandomFlip", "RandomAffine", "RandomElastic"]
