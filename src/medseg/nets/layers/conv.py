"""Dimension-agnostic convolution blocks and the pad-to-divisor / crop-back helpers.

The layer type (2D or 3D) is chosen by ``spatial_dims`` so each network is written once.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from medseg.errors import MedsegError

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_TCONV = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_INSTANCE = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_BATCH = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _check_dims(spatial_dims: int) -> int:
    if spatial_dims not in _CONV:
        raise MedsegError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
    return spatial_dims


def conv_type(spatial_dims: int) -> type[nn.Module]:
    """``nn.Conv{1,2,3}d`` for ``spatial_dims``."""
    return _CONV[_check_dims(spatial_dims)]


def transposed_conv_type(spatial_dims: int) -> type[nn.Module]:
    """``nn.ConvTranspose{1,2,3}d`` for ``spatial_dims``."""
    return _TCONV[_check_dims(spatial_dims)]


def pool_type(spatial_dims: int) -> type[nn.Module]:
    """``nn.MaxPool{1,2,3}d`` for ``spatial_dims``."""
    return _POOL[_check_dims(spatial_dims)]


def group_count(channels: int, groups: int = 8) -> int:
    """Largest divisor of ``channels`` not above ``groups`` (GroupNorm needs an exact division)."""
    for g in range(min(groups, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


def make_norm(kind: str | None, spatial_dims: int, channels: int, groups: int = 8) -> nn.Module | None:
    """Normalisation layer by name: ``"instance"``, ``"batch"``, ``"group"`` or ``None``/``"none"``.

    Instance norm is affine (learned scale and shift), as in nnU-Net.
    """
    if kind is None or kind == "none":
        return None
    if kind == "instance":
        return _INSTANCE[_check_dims(spatial_dims)](channels, affine=True)
    if kind == "batch":
        return _BATCH[_check_dims(spatial_dims)](channels)
    if kind == "group":
        return nn.GroupNorm(group_count(channels, groups), channels)
    raise MedsegError(f"unknown norm '{kind}'; use instance, batch, group or none")


def make_activation(kind: str, channels: int | None = None) -> nn.Module:
    """Activation by name: ``"leakyrelu"`` (slope 0.01), ``"relu"``, ``"prelu"`` (per channel) or ``"elu"``."""
    if kind == "leakyrelu":
        return nn.LeakyReLU(0.01, inplace=True)
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "prelu":
        return nn.PReLU(channels or 1)
    if kind == "elu":
        return nn.ELU(inplace=True)
    raise MedsegError(f"unknown activation '{kind}'; use leakyrelu, relu, prelu or elu")


def as_tuple(value: int | Sequence[int], spatial_dims: int, name: str = "value") -> tuple[int, ...]:
    """Broadcast an int to a per-axis tuple; check a sequence has one entry per spatial axis."""
    if isinstance(value, int):
        return (value,) * spatial_dims
    value = tuple(int(v) for v in value)
    if len(value) != spatial_dims:
        raise MedsegError(f"{name} {value} needs {spatial_dims} entries (one per spatial axis)")
    return value


class ConvNormAct(nn.Sequential):
    """Convolution → normalisation → activation with 'same' padding.

    The convolution has no bias when a normalisation follows (the norm's shift makes it redundant and it
    costs time on CPU).

    Parameters
    ----------
    spatial_dims : int
        2 or 3.
    in_channels, out_channels : int
    kernel_size : int or tuple
    stride : int or tuple
    norm : str or None
    activation : str or None
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        norm: str | None = "instance",
        activation: str | None = "leakyrelu",
    ):
        k = as_tuple(kernel_size, spatial_dims, "kernel_size")
        n = make_norm(norm, spatial_dims, out_channels)
        layers: list[nn.Module] = [
            conv_type(spatial_dims)(
                in_channels, out_channels, k, stride=stride, padding=tuple(s // 2 for s in k), bias=n is None
            )
        ]
        if n is not None:
            layers.append(n)
        if activation is not None:
            layers.append(make_activation(activation, out_channels))
        super().__init__(*layers)


class DoubleConv(nn.Sequential):
    """Two :class:`ConvNormAct` in a row (the U-Net stage); the first may be strided."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        norm: str | None = "instance",
        activation: str = "leakyrelu",
    ):
        super().__init__(
            ConvNormAct(spatial_dims, in_channels, out_channels, kernel_size, stride, norm, activation),
            ConvNormAct(spatial_dims, out_channels, out_channels, kernel_size, 1, norm, activation),
        )


def pad_to_multiple(
    x: torch.Tensor, divisor: int | Sequence[int], mode: str = "constant"
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Pad the trailing spatial axes of ``x`` at their end to multiples of ``divisor``.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, C, *S)``.
    divisor : int or tuple of int
        Per spatial axis (an int applies to all).
    mode : str
        ``F.pad`` mode; ``"constant"`` pads with zeros (exports to ONNX with dynamic sizes).

    Returns
    -------
    padded : torch.Tensor
    shape : tuple of int
        The original spatial shape, for :func:`crop_to`.

    Examples
    --------
    >>> y, s = pad_to_multiple(torch.zeros(1, 1, 5, 8), 4)
    >>> tuple(y.shape), s
    ((1, 1, 8, 8), (5, 8))
    """
    dims = x.dim() - 2
    div = as_tuple(divisor, dims, "size_divisor")
    shape = tuple(x.shape[2:])
    if all(d == 1 for d in div):
        return x, shape
    pad: list = []
    # F.pad lists the last axis first. Always emit the pad (even of 0) so that a traced/ONNX graph stays
    # correct for every input size, not only for the example's.
    for size, d in zip(reversed(shape), reversed(div)):
        pad += [0, (d - size % d) % d]
    return F.pad(x, pad, mode=mode), shape


def crop_to(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Crop the trailing spatial axes of ``x`` back to ``shape`` (undo :func:`pad_to_multiple`)."""
    index = (slice(None), slice(None)) + tuple(slice(0, s) for s in shape)
    return x[index]


def prod_per_axis(strides: Sequence[Sequence[int]], spatial_dims: int) -> tuple[int, ...]:
    """Per-axis product of a list of per-axis strides (the total down-sampling factor)."""
    out = [1] * spatial_dims
    for s in strides:
        for i, v in enumerate(s):
            out[i] *= v
    return tuple(out)


def simplify_divisor(div: Sequence[int]) -> int | tuple[int, ...]:
    """An int when all axes agree (the common isotropic case), else the tuple."""
    div = tuple(div)
    return div[0] if len(set(div)) == 1 else div


__all__ = [
    "ConvNormAct",
    "DoubleConv",
    "as_tuple",
    "conv_type",
    "crop_to",
    "group_count",
    "make_activation",
    "make_norm",
    "pad_to_multiple",
    "pool_type",
    "prod_per_axis",
    "simplify_divisor",
    "transposed_conv_type",
]
