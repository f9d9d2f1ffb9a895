"""V-Net.

Milletari F., Navab N., Ahmadi S.-A. "V-Net: Fully Convolutional Neural Networks for Volumetric Medical
Image Segmentation". 3DV 2016 (Fourth International Conference on 3D Vision), pp. 565-571.

What is new: a volumetric (3D) encoder-decoder whose stages learn a residual function, that down-samples
with strided convolutions instead of pooling, and that is trained with a Dice loss (in
:mod:`medseg.losses`) to cope with the strong foreground/background imbalance of prostate MRI.

Configuration of the paper (Fig. 2): 5×5×5 convolutions with PReLU; compression stages of 1, 2, 3, 3
convolutions at 16, 32, 64, 128 channels and a bottom stage of 3 convolutions at 256; each stage adds its
input to its output (the first stage adds the input replicated to 16 channels); 2×2×2 stride-2
convolutions double the channels on the way down; 2×2×2 stride-2 transposed convolutions up-sample to
half the channels, which are concatenated with the skip (decompression stages of 3, 3, 2, 1
convolutions at 256, 128, 64, 32 channels); a final 1×1×1 convolution gives the class maps. The paper
uses no normalisation (``norm="none"``, default); ``medseg train`` uses instance norm and 3×3×3 kernels
(the registry's training defaults below).
Also builds in 2D (the same design with 5×5 kernels), which the paper does not describe.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from medseg.errors import MedsegError
from medseg.nets.layers.conv import (
    ConvNormAct,
    conv_type,
    crop_to,
    make_norm,
    pad_to_multiple,
    transposed_conv_type,
)
from medseg.nets.layers.options import build_checked
from medseg.nets.registry import NETWORKS

CITATION = "Milletari, Navab, Ahmadi. V-Net. 3DV 2016"


class ResidualStage(nn.Module):
    """``n`` 5×5×5 conv + PReLU layers whose output is added to the stage input (then PReLU).

    The last convolution's activation is applied after the addition, as in Fig. 2 of the paper. The
    first convolution may change the channel count (input stage); the residual is then given explicitly.
    """

    def __init__(self, spatial_dims: int, in_channels: int, channels: int, n_convs: int, kernel_size: int,
                 norm: str):
        super().__init__()
        widths = [in_channels] + [channels] * n_convs
        layers = [
            ConvNormAct(spatial_dims, widths[k], channels, kernel_size, 1, norm, "prelu" if k < n_convs - 1 else None)
            for k in range(n_convs)
        ]
        self.convs = nn.Sequential(*layers)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        return self.act(self.convs(x) + (x if residual is None else residual))


def _resample(kind: type[nn.Module], spatial_dims: int, c_in: int, c_out: int, norm: str) -> nn.Sequential:
    n = make_norm(norm, spatial_dims, c_out)
    layers: list[nn.Module] = [kind(c_in, c_out, 2, stride=2, bias=n is None)]
    if n is not None:
        layers.append(n)
    layers.append(nn.PReLU(c_out))
    return nn.Sequential(*layers)


class VNet(nn.Module):
    """V-Net (3D; 2D also builds).

    Parameters
    ----------
    in_channels, num_classes, spatial_dims : int
    features : int
        Channels of the first stage (paper: 16), doubled per level.
    encoder_convs : sequence of int
        Convolutions per compression stage, the last entry being the bottom stage (paper: 1, 2, 3, 3, 3).
    decoder_convs : sequence of int
        Convolutions per decompression stage, coarsest first (paper: 3, 3, 2, 1).
    kernel_size : int
        Paper: 5.
    norm : str
        ``"none"`` (paper), ``"instance"``, ``"batch"`` or ``"group"``.

    Examples
    --------
    >>> net = VNet(1, 2, 3, features=4, encoder_convs=(1, 1), decoder_convs=(1,)).eval()
    >>> net(torch.zeros(1, 1, 5, 6, 7)).shape
    torch.Size([1, 2, 5, 6, 7])
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial_dims: int = 3,
        features: int = 16,
        encoder_convs: Sequence[int] = (1, 2, 3, 3, 3),
        decoder_convs: Sequence[int] = (3, 3, 2, 1),
        kernel_size: int = 5,
        norm: str = "none",
    ):
        super().__init__()
        levels = len(encoder_convs) - 1
        if levels < 1 or len(decoder_convs) != levels:
            raise MedsegError(
                f"V-Net needs len(decoder_convs) == len(encoder_convs) - 1 >= 1, got {encoder_convs}, {decoder_convs}"
            )
        self.levels = levels
        self.features = features
        self.size_divisor = 2**levels
        ch = [features * 2**i for i in range(levels + 1)]
        self.channels = ch
        # Input stage: residual = the input replicated to `features` channels (paper, Fig. 2).
        self.input_stage = ResidualStage(spatial_dims, in_channels, ch[0], encoder_convs[0], kernel_size, norm)
        tconv, conv = transposed_conv_type(spatial_dims), conv_type(spatial_dims)
        self.down = nn.ModuleList([_resample(conv, spatial_dims, ch[i], ch[i + 1], norm) for i in range(levels)])
        self.encoder = nn.ModuleList(
            [ResidualStage(spatial_dims, ch[i + 1], ch[i + 1], encoder_convs[i + 1], kernel_size, norm) for i in range(levels)]
        )
        # Decompression stage at level i (0 = finest) works at 2 * ch[i] channels (up-sampled ++ skip).
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for depth_index, n_convs in enumerate(decoder_convs):
            i = levels - 1 - depth_index
            c_below = ch[levels] if depth_index == 0 else 2 * ch[i + 1]
            self.up.append(_resample(tconv, spatial_dims, c_below, ch[i], norm))
            self.decoder.append(ResidualStage(spatial_dims, 2 * ch[i], 2 * ch[i], n_convs, kernel_size, norm))
        self.head = conv(2 * ch[0], num_classes, 1)

    def _input_residual(self, x: torch.Tensor) -> torch.Tensor:
        repeats = -(-self.features // x.shape[1])
        return x.repeat(1, repeats, *([1] * (x.dim() - 2)))[:, : self.features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, shape = pad_to_multiple(x, self.size_divisor)
        x = self.input_stage(x, self._input_residual(x))
        skips = [x]
        for down, stage in zip(self.down, self.encoder):
            x = stage(down(x))
            skips.append(x)
        skips.pop()
        for up, stage in zip(self.up, self.decoder):
            x = torch.cat([up(x), skips.pop()], dim=1)
            x = stage(x)
        return crop_to(self.head(x), shape)


#: The paper's augmentation (Sec. 3): histogram matching of a training volume to another training scan, and
#: a random deformation from a 2×2×2 grid of B-spline control points. The size of the displacements is not
#: given in the paper: ``max_displacement_share`` is a share of the training patch along each axis, turned into
#: voxels by the augmentation rule (medseg.planning.training_rules).
PAPER_AUGMENTATION = (
    {"name": "histogram_matching", "p": 0.5},
    {"name": "bspline", "control_points": 2, "max_displacement_share": 0.05, "p": 0.5},
)


_TRAINING_DEFAULTS = {"norm": "instance", "kernel_size": 3}
_TRAINING_DEFAULT_REASONS = {
    "norm": "the paper's no-normalisation V-Net diverged within 20 steps at medseg's AdamW 2e-3 on ACDC (the paper "
            "trained with SGD at 1e-6; BENCHMARKS.md, 3D table)",
    "kernel_size": "the paper's 5×5×5 kernels cost ~5× per step on a CPU (PROMISE12's planned patch, one thread: "
                   "5.1–5.7 s against 1.0 s); in 30 minutes 8 held-out PROMISE12 cases scored 0.153 against 0.540 "
                   "Dice (BENCHMARKS.md, session 40)",
}


@NETWORKS.register("vnet", dims=(3, 2), citation=CITATION, norm_option="norm", paper_augmentation=PAPER_AUGMENTATION,
                   training_defaults=_TRAINING_DEFAULTS, training_default_reasons=_TRAINING_DEFAULT_REASONS,
                   paper_loss="vnet_dice", paper_dims=3,
                   summary="V-Net: 3D residual encoder-decoder, 5x5x5 convs, strided-conv down-sampling, PReLU")
def build_vnet(in_channels: int, num_classes: int, spatial_dims: int = 3, **options: Any) -> VNet:
    """Build a :class:`VNet` (see its parameters)."""
    return build_checked(VNet, "vnet", in_channels, num_classes, spatial_dims, options)


__all__ = ["VNet", "build_vnet"]
