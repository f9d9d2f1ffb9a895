"""UNet++.

Zhou Z., Rahman Siddiquee M. M., Tajbakhsh N., Liang J. "UNet++: A Nested U-Net Architecture for Medical
Image Segmentation". DLMIA / ML-CDS workshops, MICCAI 2018 (LNCS 11045); extended as "UNet++: Redesigning
Skip Connections to Exploit Multiscale Features in Image Segmentation", IEEE TMI 39(6), 2020 (online 2019).

What is new: the plain skip connections of U-Net are replaced by nested, densely connected convolution
nodes X^{i,j} that bridge the semantic gap between encoder and decoder features; with deep supervision
on every top node X^{0,j} the trained network can be *pruned* at inference to the sub-network UNet++ L^j,
trading a little accuracy for speed.

Node X^{i,j} (level i, column j) is a double convolution of the concatenation
``[X^{i,0}, ..., X^{i,j-1}, Up(X^{i+1,j-1})]``; X^{i,0} is the encoder backbone. The original (Keras)
code uses 32..512 channels, two 3×3 conv + ReLU per node and 2×2 transposed convolutions; the defaults
here add instance norm and LeakyReLU like :class:`medseg.nets.unet.UNet` (``norm="none",
activation="relu"`` gives the paper's network).

Outputs. Train mode (``deep_supervision=True``): ``{"logits": head(X^{0,depth}), "deep_supervision":
[head(X^{0,depth-1}), ..., head(X^{0,1})]}`` — all full resolution (unlike U-Net's lower-resolution
deep supervision), nearest-to-full first; the paper averages the losses of all four with equal weight (attribute
``deep_supervision_weighting = "equal"``).
Eval mode: the logits of ``head(X^{0,L})`` for the prune level ``L`` (default ``depth``, the full
network — the paper's "fast mode" choice of one branch); ``ensemble=True`` instead averages the logits
of ``X^{0,1..L}`` (the paper's "accurate mode"). At prune level L only the nodes X^{i,j} with i + j <= L
are computed, so pruned inference is really cheaper (see :func:`pruning_report`).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch
from torch import nn

from medseg.errors import MedsegError
from medseg.nets.layers.conv import (
    DoubleConv,
    conv_type,
    crop_to,
    pad_to_multiple,
    pool_type,
    prod_per_axis,
    simplify_divisor,
)
from medseg.nets.layers.options import build_checked
from medseg.nets.registry import NETWORKS
from medseg.nets.unet import Upsample, _per_level

CITATION = "Zhou, Rahman Siddiquee, Tajbakhsh, Liang. UNet++. DLMIA (MICCAI workshop) 2018; IEEE TMI 2020"


class UNetPlusPlus(nn.Module):
    """UNet++ with deep supervision and pruned inference, 2D and 3D.

    Parameters
    ----------
    in_channels, num_classes, spatial_dims : int
    features : int
        Channels at level 0, doubled per level up to ``max_features`` (paper: 32, 64, 128, 256, 512).
    depth : int
        Number of down-samplings (paper: 4).
    max_features : int, optional
        Channel cap (default 512 in 2D, 320 in 3D).
    strides : list, optional
        Per-level pooling strides (int or per-axis tuple), as in :class:`~medseg.nets.unet.UNet`.
    norm, activation, upsample : str
        As in :class:`~medseg.nets.unet.UNet`.
    deep_supervision : bool
        Heads on every X^{0,j} (needed for pruning); without it only X^{0,depth} has a head.
    prune_level : int, optional
        Sub-network used in eval mode, 1..depth (default depth).
    ensemble : bool
        In eval mode, average the logits of X^{0,1..L} instead of using X^{0,L} alone.

    Examples
    --------
    >>> net = UNetPlusPlus(1, 2, 2, features=4, depth=2).eval()
    >>> net.set_prune_level(1)
    >>> net(torch.zeros(1, 1, 9, 12)).shape
    torch.Size([1, 2, 9, 12])
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial_dims: int = 2,
        features: int = 32,
        depth: int = 4,
        max_features: int | None = None,
        strides: Sequence[int | Sequence[int]] | None = None,
        norm: str = "instance",
        activation: str = "leakyrelu",
        upsample: str = "transpose",
        deep_supervision: bool = True,
        prune_level: int | None = None,
        ensemble: bool = False,
    ):
        super().__init__()
        if depth < 1:
            raise MedsegError(f"UNet++ depth must be at least 1, got {depth}")
        if max_features is None:
            max_features = 320 if spatial_dims == 3 else 512
        self.spatial_dims = spatial_dims
        self.depth = depth
        self.deep_supervision = deep_supervision
        # The paper averages the losses of the X^{0,j} outputs with equal weights (read by the loss).
        self.deep_supervision_weighting = "equal"
        self.ensemble = ensemble
        self.strides = _per_level(strides, depth, spatial_dims, 2, "strides")
        self.size_divisor = simplify_divisor(prod_per_axis(self.strides, spatial_dims))
        ch = self.channels = [min(features * 2**i, max_features) for i in range(depth + 1)]
        bias = norm in (None, "none")

        self.nodes = nn.ModuleDict()
        self.ups = nn.ModuleDict()
        for i in range(depth + 1):
            stride = self.strides[i - 1] if i > 0 else None
            block = DoubleConv(spatial_dims, in_channels if i == 0 else ch[i - 1], ch[i], 3, 1, norm, activation)
            self.nodes[f"x{i}_0"] = block if i == 0 else nn.Sequential(pool_type(spatial_dims)(stride, stride), block)
        for j in range(1, depth + 1):
            for i in range(depth + 1 - j):
                self.ups[f"x{i}_{j}"] = Upsample(spatial_dims, ch[i + 1], ch[i], self.strides[i], upsample, bias)
                self.nodes[f"x{i}_{j}"] = DoubleConv(spatial_dims, (j + 1) * ch[i], ch[i], 3, 1, norm, activation)
        conv = conv_type(spatial_dims)
        head_columns = range(1, depth + 1) if deep_supervision else [depth]
        self.heads = nn.ModuleDict({f"x0_{j}": conv(ch[0], num_classes, 1) for j in head_columns})
        self.prune_level = depth
        if prune_level is not None:
            self.set_prune_level(prune_level)

    def set_prune_level(self, level: int) -> None:
        """Use sub-network UNet++ L^``level`` (nodes X^{i,j} with i + j <= level) in eval mode."""
        level = int(level)
        if not 1 <= level <= self.depth:
            raise MedsegError(f"prune_level must be in 1..{self.depth}, got {level}")
        if f"x0_{level}" not in self.heads:
            raise MedsegError(f"prune_level {level} needs deep_supervision=True (no head on X^(0,{level}))")
        self.prune_level = level

    def parameters_used(self, level: int | None = None) -> int:
        """Number of parameters of the sub-network at ``level`` (default: the current prune level)."""
        level = self.prune_level if level is None else level

        def used(key: str) -> bool:
            i, j = map(int, key[1:].split("_"))
            return i + j <= level

        modules = [m for k, m in self.nodes.items() if used(k)] + [m for k, m in self.ups.items() if used(k)]
        heads = [f"x0_{j}" for j in range(1, level + 1)] if self.ensemble else [f"x0_{level}"]
        modules += [self.heads[k] for k in heads if k in self.heads]
        return sum(p.numel() for m in modules for p in m.parameters())

    def _columns(self, x: torch.Tensor, level: int) -> list[torch.Tensor]:
        """Compute the nodes with i + j <= level; return the top row X^{0,1..level}."""
        grid: dict[tuple[int, int], torch.Tensor] = {}
        for i in range(level + 1):
            x = self.nodes[f"x{i}_0"](x)
            grid[i, 0] = x
        for j in range(1, level + 1):
            for i in range(level + 1 - j):
                key = f"x{i}_{j}"
                inputs = [grid[i, k] for k in range(j)] + [self.ups[key](grid[i + 1, j - 1])]
                grid[i, j] = self.nodes[key](torch.cat(inputs, dim=1))
        return [grid[0, j] for j in range(1, level + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, Any]:
        x, shape = pad_to_multiple(x, self.size_divisor)
        if self.training:
            top = self._columns(x, self.depth)
            logits = crop_to(self.heads[f"x0_{self.depth}"](top[-1]), shape)
            if not self.deep_supervision:
                return logits
            ds = [crop_to(self.heads[f"x0_{j}"](top[j - 1]), shape) for j in range(self.depth - 1, 0, -1)]
            return {"logits": logits, "deep_supervision": ds}
        level = self.prune_level
        top = self._columns(x, level)
        if self.ensemble:
            outs = [self.heads[f"x0_{j}"](top[j - 1]) for j in range(1, level + 1) if f"x0_{j}" in self.heads]
            return crop_to(torch.stack(outs).mean(0), shape)
        return crop_to(self.heads[f"x0_{level}"](top[-1]), shape)


def pruning_report(
    model: UNetPlusPlus, input_shape: Sequence[int], repeats: int = 3
) -> list[dict[str, float]]:
    """Parameters and inference time of every pruned sub-network UNet++ L^1 .. L^depth.

    Parameters
    ----------
    model : UNetPlusPlus
    input_shape : sequence of int
        ``(N, C, *S)`` of the timed input (random values).
    repeats : int
        Timed runs per level; the fastest is reported (least disturbed by other processes).

    Returns
    -------
    list of dict
        ``{"level", "params", "seconds"}`` per level, level 1 first. The model's prune level and
        train/eval mode are restored.

    Examples
    --------
    >>> rows = pruning_report(UNetPlusPlus(1, 2, 2, features=4, depth=2), (1, 1, 16, 16), repeats=1)
    >>> [r["level"] for r in rows]
    [1, 2]
    """
    was_training, old_level = model.training, model.prune_level
    model.eval()
    x = torch.randn(tuple(input_shape))
    rows = []
    try:
        with torch.no_grad():
            for level in range(1, model.depth + 1):
                model.set_prune_level(level)
                model(x)  # warm-up
                best = float("inf")
                for _ in range(max(1, repeats)):
                    start = time.perf_counter()
                    model(x)
                    best = min(best, time.perf_counter() - start)
                rows.append({"level": level, "params": model.parameters_used(level), "seconds": best})
    finally:
        model.prune_level = old_level
        model.train(was_training)
    return rows


@NETWORKS.register("unet_plus_plus", dims=(2, 3), citation=CITATION, norm_option="norm",
                   summary="UNet++: nested dense skip pathways, deep supervision, prunable at inference")
def build_unet_plus_plus(in_channels: int, num_classes: int, spatial_dims: int = 2, **options: Any) -> UNetPlusPlus:
    """Build a :class:`UNetPlusPlus` (see its parameters)."""
    return build_checked(UNetPlusPlus, "unet_plus_plus", in_channels, num_classes, spatial_dims, options)


__all__ = ["UNetPlusPlus", "build_unet_plus_plus", "pruning_report"]
