"""ViT segmenter: patch tokens → transformer → light upsampling head, with no U-Net decoder (2D and 3D).

Zheng S. et al. "Rethinking Semantic Segmentation from a Sequence-to-Sequence Perspective with
Transformers" (SETR). CVPR 2021. Isensee F. et al. "Primus: Enforcing Attention Usage for 3D Medical
Image Segmentation". arXiv 2503.01835, 2025. Built on Dosovitskiy A. et al. "An Image is Worth 16x16
Words: Transformers for Image Recognition at Scale" (ViT). ICLR 2021.

What is new: segmentation as sequence-to-sequence — the image is cut into non-overlapping patches, every
patch token attends to every other one in a plain transformer (global context from the first layer), and
a light head of transposed convolutions (SETR's progressive up-sampling, Primus's decoder) turns the
token grid back into a full-resolution label map; no skip connections and no convolutional encoder.

Choices here: pre-norm blocks (LayerNorm, multi-head self-attention through PyTorch's fused
``scaled_dot_product_attention``, GELU MLP), a learned positional embedding on a reference token grid that
is interpolated to the input's grid (any input size, as the registry's contract asks), and Primus-style
up-sampling by 2 per step (channels halved, normalisation, GELU) down to a 1×1 convolution to the classes.
Defaults are small for a CPU (192 wide, 8 blocks, 16² patches in 2D, 8³ in 3D).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medseg.errors import MedsegError
from medseg.nets.layers.conv import (
    conv_type,
    crop_to,
    make_norm,
    pad_to_multiple,
    transposed_conv_type,
)
from medseg.nets.layers.options import build_checked
from medseg.nets.registry import NETWORKS

CITATION = ("Zheng et al., SETR, CVPR 2021; Isensee et al., Primus, arXiv 2503.01835, 2025 "
            "(ViT: Dosovitskiy et al., ICLR 2021)")


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + MHSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise MedsegError(f"vit_seg: width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(attn.transpose(1, 2).reshape(b, n, c))
        return x + self.mlp(self.norm2(x))


class UpStep(nn.Sequential):
    """Transposed convolution ×2, normalisation, GELU (one step of the light head)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, norm: str):
        layers: list[nn.Module] = [transposed_conv_type(spatial_dims)(in_channels, out_channels, 2, stride=2)]
        n = make_norm(norm, spatial_dims, out_channels)
        if n is not None:
            layers.append(n)
        layers.append(nn.GELU())
        super().__init__(*layers)


class ViTSeg(nn.Module):
    """A plain ViT encoder with a light up-sampling head.

    Parameters
    ----------
    in_channels, num_classes : int
    spatial_dims : int
        2 or 3.
    patch_size : int
        Side of the square / cubic patches (a power of 2; default 16 in 2D, 8 in 3D). The network's
        ``size_divisor``.
    dim : int
        Token width.
    depth : int
        Transformer blocks.
    heads : int
        Attention heads.
    mlp_ratio : float
        MLP hidden width / ``dim``.
    reference_grid : int
        Tokens per axis of the learned positional embedding (interpolated to other grids).
    norm : str
        Normalisation in the head: ``"instance"``, ``"batch"``, ``"group"`` or ``"none"``.
    dropout : float
        Attention dropout in training.

    Examples
    --------
    >>> net = ViTSeg(1, 3, 2, dim=32, depth=2, heads=2).eval()
    >>> net(torch.zeros(1, 1, 40, 50)).shape
    torch.Size([1, 3, 40, 50])
    """

    def __init__(self, in_channels: int, num_classes: int, spatial_dims: int = 2, patch_size: int | None = None,
                 dim: int = 192, depth: int = 8, heads: int = 6, mlp_ratio: float = 4.0,
                 reference_grid: int | None = None, norm: str = "instance", dropout: float = 0.0):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise MedsegError(f"vit_seg: spatial_dims must be 2 or 3, got {spatial_dims}")
        patch_size = patch_size or (16 if spatial_dims == 2 else 8)
        steps = int(round(math.log2(patch_size)))
        if patch_size < 2 or 2 ** steps != patch_size:
            raise MedsegError(f"vit_seg: patch_size must be a power of 2 (>= 2), got {patch_size}")
        self.spatial_dims = spatial_dims
        self.patch_size = patch_size
        self.size_divisor = patch_size
        self.reference_grid = reference_grid or (8 if spatial_dims == 2 else 6)
        self.patch_embed = conv_type(spatial_dims)(in_channels, dim, patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, dim, *[self.reference_grid] * spatial_dims))
        nn.init.normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        channels = [max(dim >> i, 16) for i in range(steps + 1)]
        self.head = nn.Sequential(*(UpStep(spatial_dims, channels[i], channels[i + 1], norm) for i in range(steps)))
        self.classifier = conv_type(spatial_dims)(channels[-1], num_classes, 1)

    def _positions(self, grid: tuple[int, ...]) -> torch.Tensor:
        mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
        # always interpolated (an identity at the reference grid) so that a traced/ONNX graph stays
        # correct for every input size
        return F.interpolate(self.pos_embed, size=grid, mode=mode, align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, shape = pad_to_multiple(x, self.size_divisor)
        tokens = self.patch_embed(x)
        grid = tuple(tokens.shape[2:])
        tokens = tokens + self._positions(grid)
        b, c = tokens.shape[:2]
        t = tokens.flatten(2).transpose(1, 2)
        for block in self.blocks:
            t = block(t)
        t = self.norm(t).transpose(1, 2).reshape(b, c, *grid)
        return crop_to(self.classifier(self.head(t)), shape)


@NETWORKS.register("vit_seg", dims=(2, 3), citation=CITATION,
                   summary="ViT segmenter: patch tokens → transformer → light transposed-conv head (SETR/Primus)")
def build_vit_seg(in_channels: int, num_classes: int, spatial_dims: int = 2, **options: Any) -> ViTSeg:
    """Build a :class:`ViTSeg` (see its parameters)."""
    return build_checked(ViTSeg, "vit_seg", in_channels, num_classes, spatial_dims, options)


__all__ = ["CITATION", "TransformerBlock", "ViTSeg", "build_vit_seg"]
