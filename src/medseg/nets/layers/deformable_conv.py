"""Deformable convolution (v1 and the modulated v2) in pure PyTorch, no compiled extension.

Dai J. et al. "Deformable Convolutional Networks". ICCV 2017 (v1: learned per-location sampling offsets).
Zhu X., Hu H., Lin S., Dai J. "Deformable ConvNets v2: More Deformable, Better Results". CVPR 2019
(v2: a learned modulation scalar per sampling point).

The sampling uses :func:`torch.nn.functional.grid_sample` (bilinear, zeros outside) on a grid of all
``kh*kw`` kernel points, which gives an im2col matrix that one batched matrix product multiplies by the
weights.
Why grid_sample and not an explicit 4-corner gather: grid_sample is one fused C++ kernel whose backward
recomputes the bilinear weights, so autograd keeps one im2col-sized tensor instead of four (4x less
memory) and it ran faster on these CPUs (``benchmarks/dunet_step.py`` times both). It also
exports to ONNX (GridSample, opset >= 16).

Layout follows ``torchvision.ops.deform_conv2d``: ``offset`` is ``(N, 2*G*kh*kw, Ho, Wo)`` with
``(dy, dx)`` pairs per kernel point (row-major over the kernel), ``mask`` is ``(N, G*kh*kw, Ho, Wo)``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.utils import _pair

from medseg.errors import MedsegError


def deform_conv2d(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Deformable 2D convolution (modulated when ``mask`` is given).

    Parameters
    ----------
    input : torch.Tensor
        ``(N, C, H, W)``.
    offset : torch.Tensor
        ``(N, 2*G*kh*kw, Ho, Wo)``: (dy, dx) per kernel point and offset group ``G`` (``C % G == 0``).
    weight : torch.Tensor
        ``(O, C, kh, kw)``.
    bias : torch.Tensor, optional
        ``(O,)``.
    stride, padding, dilation : int or pair
        As for ``nn.Conv2d`` (zero padding).
    mask : torch.Tensor, optional
        ``(N, G*kh*kw, Ho, Wo)`` modulation scalars (DCNv2).

    Returns
    -------
    torch.Tensor
        ``(N, O, Ho, Wo)``.

    Examples
    --------
    >>> x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    >>> y = deform_conv2d(x, torch.zeros(1, 18, 5, 5), w, padding=1)
    >>> torch.allclose(y, F.conv2d(x, w, padding=1), atol=1e-5)
    True
    """
    n, c, h, w = input.shape
    out_ch, c_w, kh, kw = weight.shape
    if c_w != c:
        raise MedsegError(f"deform_conv2d: weight has {c_w} input channels, input has {c}")
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    k = kh * kw
    groups = offset.shape[1] // (2 * k)
    if groups < 1 or offset.shape[1] != 2 * groups * k or c % groups:
        raise MedsegError(f"deform_conv2d: offset has {offset.shape[1]} channels; need 2*G*{k} with C % G == 0")
    if tuple(offset.shape[2:]) != (ho, wo):
        raise MedsegError(f"deform_conv2d: offset spatial size {tuple(offset.shape[2:])} != output {(ho, wo)}")

    dtype, device = input.dtype, input.device
    # Regular sampling positions p0 + pk, shape (k, ho, wo) each.
    ky = (torch.arange(kh, device=device, dtype=dtype) * dh).repeat_interleave(kw)
    kx = (torch.arange(kw, device=device, dtype=dtype) * dw).repeat(kh)
    base_y = ky.view(k, 1, 1) + (torch.arange(ho, device=device, dtype=dtype) * sh - ph).view(1, ho, 1)
    base_x = kx.view(k, 1, 1) + (torch.arange(wo, device=device, dtype=dtype) * sw - pw).view(1, 1, wo)
    off = offset.reshape(n * groups, k, 2, ho, wo)
    y = base_y + off[:, :, 0]
    x = base_x + off[:, :, 1]
    # grid_sample's align_corners=False maps pixel index p to (2p + 1) / size - 1.
    grid = torch.stack(((2 * x + 1) / w - 1, (2 * y + 1) / h - 1), dim=-1)  # (n*g, k, ho, wo, 2)
    grid = grid.reshape(n * groups, k * ho, wo, 2)
    sampled = F.grid_sample(
        input.reshape(n * groups, c // groups, h, w), grid, mode="bilinear", padding_mode="zeros",
        align_corners=False,
    )  # (n*g, c/g, k*ho, wo)
    sampled = sampled.reshape(n * groups, c // groups, k, ho * wo)
    if mask is not None:
        mask = mask.reshape(n * groups, 1, k, ho * wo)
        # In place when no graph is recorded: saves one im2col-sized allocation at inference.
        sampled = sampled * mask if torch.is_grad_enabled() else sampled.mul_(mask)
    columns = sampled.reshape(n, c * k, ho * wo)  # channel-major, kernel point minor = weight layout
    # The weight product as a batched matrix product over an expanded (not copied) weight: forward +
    # backward about 2x faster than the same product as a 1x1 convolution (benchmarks/dunet_step.py);
    # torch.matmul with a broadcast weight copied the columns first.
    out = torch.bmm(weight.flatten(1).expand(n, -1, -1), columns).reshape(n, out_ch, ho, wo)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


class DeformConv2d(nn.Module):
    """Deformable convolution whose offsets (and DCNv2 modulation) are predicted by a plain convolution.

    The offset/modulation convolution has the main convolution's kernel, stride, padding and dilation
    and is initialised to zero (as in both papers), so training starts from the regular grid. The
    modulation is ``2 * sigmoid(m)``, i.e. exactly 1 at initialisation (DCNv2 uses ``sigmoid``, 0.5 at
    start): the block then starts as an ordinary convolution, and the range (0, 2) still lets it
    attenuate or amplify each sampling point.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding, dilation : int or pair
    bias : bool
    modulation : bool
        DCNv2 modulation (True) or DCNv1 (False).
    offset_groups : int
        Channel groups sharing one offset field.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 1,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        modulation: bool = True,
        offset_groups: int = 1,
    ):
        super().__init__()
        if in_channels % offset_groups:
            raise MedsegError(f"in_channels {in_channels} not divisible by offset_groups {offset_groups}")
        self.kernel_size = _pair(kernel_size)
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        self.modulation = modulation
        self.offset_groups = offset_groups
        k = self.kernel_size[0] * self.kernel_size[1]
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.offset_conv = nn.Conv2d(
            in_channels, offset_groups * k * (3 if modulation else 2), self.kernel_size, self.stride,
            self.padding, self.dilation, bias=True,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same initialisation as nn.Conv2d for the main weights; zeros for offsets / modulation.
        reference = nn.Conv2d(self.weight.shape[1], self.weight.shape[0], self.kernel_size, bias=self.bias is not None)
        with torch.no_grad():
            self.weight.copy_(reference.weight)
            if self.bias is not None:
                self.bias.copy_(reference.bias)
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        predicted = self.offset_conv(x)
        k2 = 2 * self.offset_groups * self.kernel_size[0] * self.kernel_size[1]
        offset = predicted[:, :k2]
        mask = 2 * torch.sigmoid(predicted[:, k2:]) if self.modulation else None
        return deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask)


__all__ = ["DeformConv2d", "deform_conv2d"]
