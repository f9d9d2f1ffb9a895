"""Intensity random transforms (image only; the label passes through unchanged).

Default ranges follow nnU-Net's (Isensee et al., Nature Methods 2021) data augmentation; the bias field's
follow TorchIO's (Pérez-García et al., CMPB 2021).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Sequence

import torch

from medseg.augmentation import functional as Fn
from medseg.augmentation.base import RandomTransform, apply_selected, check_range, uniform
from medseg.errors import MedsegError


def _float(image: torch.Tensor) -> torch.Tensor:
    return image if image.is_floating_point() else image.to(torch.float32)


def _scale_selected(image, selected, value_range, per_channel, generator, fn):
    """Draw one value per sample (or per channel) from ``value_range`` and apply ``fn(x, values)`` to the
    selected samples. Values are drawn for every sample, selected or not, so that the random stream
    does not depend on which samples were selected."""
    n, c = image.shape[:2]
    values = uniform(n, value_range, generator, columns=c if per_channel else None)
    if not bool(selected.any()):
        return image
    x = _float(image)
    return apply_selected(x, selected, fn(x[selected.to(x.device)], values[selected]))


@dataclasses.dataclass
class RandomBrightness(RandomTransform):
    """Multiply intensities by a factor drawn from ``factor`` (per sample, or per channel)."""

    name: ClassVar[str] = "brightness"
    factor: Sequence[float] = (0.75, 1.25)
    per_channel: bool = False
    p: float = 0.15

    def __post_init__(self) -> None:
        super().__post_init__()
        self.factor = check_range(f"{self.name}.factor", self.factor, 0, None)

    def apply(self, image, label, selected, generator):
        return _scale_selected(image, selected, self.factor, self.per_channel, generator, Fn.brightness), label


@dataclasses.dataclass
class RandomContrast(RandomTransform):
    """Scale deviations from each channel's mean by a factor from ``factor``; range kept if asked."""

    name: ClassVar[str] = "contrast"
    factor: Sequence[float] = (0.75, 1.25)
    preserve_range: bool = True
    per_channel: bool = False
    p: float = 0.15

    def __post_init__(self) -> None:
        super().__post_init__()
        self.factor = check_range(f"{self.name}.factor", self.factor, 0, None)

    def apply(self, image, label, selected, generator):
        def contrast(x, f):
            return Fn.contrast(x, f, self.preserve_range)

        return _scale_selected(image, selected, self.factor, self.per_channel, generator, contrast), label


@dataclasses.dataclass
class RandomGamma(RandomTransform):
    """Gamma from ``gamma`` on each channel's [min, max] range (kept). ``invert`` applies it to -x."""

    name: ClassVar[str] = "gamma"
    gamma: Sequence[float] = (0.7, 1.5)
    invert: bool = False
    per_channel: bool = False
    p: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        self.gamma = check_range(f"{self.name}.gamma", self.gamma, 1e-3, None)

    def apply(self, image, label, selected, generator):
        def gamma(x, g):
            return -Fn.gamma(-x, g) if self.invert else Fn.gamma(x, g)

        return _scale_selected(image, selected, self.gamma, self.per_channel, generator, gamma), label


@dataclasses.dataclass
class RandomGaussianNoise(RandomTransform):
    """Add zero-mean Gaussian noise whose standard deviation is drawn from ``std`` per sample."""

    name: ClassVar[str] = "noise"
    std: Sequence[float] = (0.0, 0.1)
    p: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        self.std = check_range(f"{self.name}.std", self.std, 0, None)

    def apply(self, image, label, selected, generator):
        n = image.shape[0]
        s = uniform(n, self.std, generator)
        k = int(selected.sum())
        if k == 0:
            return image, label
        x = _float(image)
        noise = torch.randn((k, *image.shape[1:]), generator=generator)
        return apply_selected(x, selected, Fn.add_noise(x[selected.to(x.device)], noise, s[selected])), label


@dataclasses.dataclass
class RandomGaussianBlur(RandomTransform):
    """Gaussian smoothing with σ (voxels) drawn from ``sigma`` per sample (per axis if asked)."""

    name: ClassVar[str] = "blur"
    sigma: Sequence[float] = (0.5, 1.0)
    per_axis: bool = False
    axes: list[int] | None = None
    p: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sigma = check_range(f"{self.name}.sigma", self.sigma, 0, 20)

    def apply(self, image, label, selected, generator):
        n, d = image.shape[0], image.ndim - 2
        self.check_axes(d)
        s = uniform(n, self.sigma, generator, columns=d)
        if not self.per_axis:
            s = s[:, :1].expand(n, d)
        if not bool(selected.any()):
            return image, label
        x = _float(image)
        return apply_selected(x, selected, Fn.gaussian_blur(x[selected.to(x.device)], s[selected], self.axes)), label


@dataclasses.dataclass
class RandomLowResolution(RandomTransform):
    """Downsample by a zoom from ``zoom`` (nearest) and upsample back (linear): a coarser scan."""

    name: ClassVar[str] = "low_resolution"
    zoom: Sequence[float] = (0.5, 1.0)
    axes: list[int] | None = None
    p: float = 0.25

    def __post_init__(self) -> None:
        super().__post_init__()
        self.zoom = check_range(f"{self.name}.zoom", self.zoom, 1e-2, 1.0)

    def apply(self, image, label, selected, generator):
        self.check_axes(image.ndim - 2)
        z = uniform(image.shape[0], self.zoom, generator)
        if not bool(selected.any()):
            return image, label
        x = _float(image)
        return apply_selected(x, selected, Fn.low_resolution(x[selected.to(x.device)], z[selected], self.axes)), label


@dataclasses.dataclass
class RandomBiasField(RandomTransform):
    """A smooth multiplicative intensity inhomogeneity, as an MR receive coil leaves (TorchIO's RandomBiasField).

    The log of the field is a polynomial of degree ≤ ``order`` over the patch whose coefficients are drawn from
    ``coefficients`` per sample (shared by the channels); see :func:`medseg.augmentation.functional.bias_field`.
    """

    name: ClassVar[str] = "bias_field"
    coefficients: Sequence[float] = (-0.5, 0.5)
    order: int = 3
    p: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        self.coefficients = check_range(f"{self.name}.coefficients", self.coefficients, -5, 5)
        if isinstance(self.order, bool) or not isinstance(self.order, int) or not 0 <= self.order <= 5:
            raise MedsegError(f"{self.name}: order must be an integer in [0, 5]; got {self.order!r}")

    def apply(self, image, label, selected, generator):
        terms = len(Fn.polynomial_exponents(self.order, image.ndim - 2))
        c = uniform(image.shape[0], self.coefficients, generator, columns=terms)
        if not bool(selected.any()):
            return image, label
        x = _float(image)
        return apply_selected(x, selected, Fn.bias_field(x[selected.to(x.device)], c[selected], self.order)), label


def intensity_transforms() -> dict[str, type[RandomTransform]]:
    return {
        t.name: t
        for t in (RandomBrightness, RandomContrast, RandomGamma, RandomGaussianNoise, RandomGaussianBlur, RandomLowResolution,
                  RandomBiasField)
    }


__all__ = [
    "RandomBiasField",
    "RandomBrightness",
    "RandomContrast",
    "RandomGamma",
    "RandomGaussianNoise",
    "RandomGaussianBlur",
    "RandomLowResolution",
]
