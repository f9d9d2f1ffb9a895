"""DUNet: deformable U-Net.

Jin Q., Meng Z., Pham T. D., Chen Q., Wei L., Su R. "DUNet: A deformable network for retinal vessel
segmentation". Knowledge-Based Systems 178, 149-162, 2019.

What is new: some U-Net convolution blocks are replaced by deformable convolution blocks, whose
sampling offsets are learned from the features, so the receptive fields adapt to the scale and shape
of the vessels.

Layout, after the authors' PyTorch release (RanSuLab/DUNet-retinal-vessel-detection, models/deform_unet.py):
a U-Net with 4 max-pool down-samplings and base width 16 (64 // 4), channels 16, 32, 64, 128 and a
128-channel bottleneck; each block is two 3×3 (deformable) convolutions with batch norm and ReLU; the
decoder up-samples bilinearly, concatenates the skip and halves the channels; the encoder blocks at
levels 1 and 2 and the decoder blocks at levels 1 and 0 are deformable, the others plain; the input
image is concatenated to the last features before the 1×1 classifier. The release used DCNv1 (its
modulation flag was commented out); ``modulation=True`` (default here, as the survey asks for v2)
adds DCNv2 modulation. Offsets come from a zero-initialised convolution (see
:class:`~medseg.nets.layers.deformable_conv.DeformConv2d`), so training starts from a plain U-Net.
2D only.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from medseg.errors import MedsegError
from medseg.nets.layers.conv import ConvNormAct, crop_to, make_activation, make_norm, pad_to_multiple
from medseg.nets.layers.deformable_conv import DeformConv2d
from medseg.nets.layers.options import build_checked
from medseg.nets.registry import NETWORKS

CITATION = "Jin, Meng, Pham, Chen, Wei, Su. DUNet: a deformable network for retinal vessel segmentation. Knowledge-Based Systems 2019"


class DeformBlock(nn.Sequential):
    """Two 3×3 deformable convolutions, each followed by norm and activation."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, activation: str, modulation: bool):
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            n = make_norm(norm, 2, out_channels)
            layers.append(DeformConv2d(c_in, out_channels, 3, padding=1, bias=n is None, modulation=modulation))
            if n is not None:
                layers.append(n)
            layers.append(make_activation(activation, out_channels))
        super().__init__(*layers)


def _block(deformable: bool, c_in: int, c_out: int, norm: str, activation: str, modulation: bool) -> nn.Module:
    if deformable:
        return DeformBlock(c_in, c_out, norm, activation, modulation)
    return nn.Sequential(ConvNormAct(2, c_in, c_out, 3, 1, norm, activation),
                         ConvNormAct(2, c_out, c_out, 3, 1, norm, activation))


class DUNet(nn.Module):
    """Deformable U-Net (2D).

    Parameters
    ----------
    in_channels, num_classes : int
    spatial_dims : int
        Must be 2.
    features : int
        Base width (paper release: 16).
    depth : int
        Number of down-samplings (paper: 4).
    deformable_encoder : sequence of int
        Encoder levels (0 = full resolution) whose blocks are deformable (paper: 1, 2).
    deformable_decoder : sequence of int
        Decoder levels whose blocks are deformable (paper: 1, 0).
    modulation : bool
        DCNv2 modulation (True) or DCNv1 offsets only (False, the authors' release; a training step costs
        ~0.7× the modulated one on CPU, ``benchmarks/dunet_step.py``).
    norm, activation : str
        Paper: batch norm and ReLU.
    input_skip : bool
        Concatenate the input image to the last features before the classifier (paper: yes).

    Examples
    --------
    >>> net = DUNet(1, 2, features=4, depth=2).eval()
    >>> net(torch.zeros(1, 1, 11, 13)).shape
    torch.Size([1, 2, 11, 13])
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial_dims: int = 2,
        features: int = 16,
        depth: int = 4,
        deformable_encoder: Sequence[int] = (1, 2),
        deformable_decoder: Sequence[int] = (0, 1),
        modulation: bool = True,
        norm: str = "batch",
        activation: str = "relu",
        input_skip: bool = True,
    ):
        super().__init__()
        if spatial_dims != 2:
            raise MedsegError(f"DUNet is 2D only, got spatial_dims={spatial_dims}")
        if depth < 1:
            raise MedsegError(f"DUNet depth must be at least 1, got {depth}")
        self.depth = depth
        self.size_divisor = 2**depth
        self.input_skip = input_skip
        # Levels 0..depth-1 double the width; the bottleneck keeps the last width (the release's 512 // 4).
        ch = [features * 2**i for i in range(depth)]
        ch.append(ch[-1])
        self.channels = ch
        enc_def, dec_def = set(deformable_encoder), set(deformable_decoder)
        self.encoder = nn.ModuleList([_block(0 in enc_def, in_channels, ch[0], norm, activation, modulation)])
        for i in range(1, depth + 1):
            self.encoder.append(nn.Sequential(
                nn.MaxPool2d(2), _block(i in enc_def, ch[i - 1], ch[i], norm, activation, modulation)
            ))
        self.up = nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=True)
        # Decoder level i takes up(level i+1 output) ++ skip i and outputs ch[i-1] (ch[0] at level 0).
        self.decoder = nn.ModuleList()
        for i in range(depth):
            below = ch[i + 1] if i == depth - 1 else ch[i]  # width coming up from level i+1
            self.decoder.append(_block(i in dec_def, below + ch[i], ch[max(i - 1, 0)], norm, activation, modulation))
        self.head = nn.Conv2d(ch[0] + (in_channels if input_skip else 0), num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, shape = pad_to_multiple(x, self.size_divisor)
        image = x
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(self.depth)):
            x = self.decoder[i](torch.cat([skips[i], self.up(x)], dim=1))
        if self.input_skip:
            x = torch.cat([image, x], dim=1)
        return crop_to(self.head(x), shape)


@NETWORKS.register("dunet", dims=(2,), citation=CITATION, norm_option="norm",
                   summary="DUNet: U-Net with deformable convolution blocks (retinal vessels)")
def build_dunet(in_channels: int, num_classes: int, spatial_dims: int = 2, **options: Any) -> DUNet:
    """Build a :class:`DUNet` (see its parameters)."""
    return build_checked(DUNet, "dunet", in_channels, num_classes, spatial_dims, options)


__all__ = ["DUNet", "build_dunet"]
