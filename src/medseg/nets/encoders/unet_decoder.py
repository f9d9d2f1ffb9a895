"""U-Net decoder on any encoder ("encoder_unet").

Ronneberger O, Fischer P, Brox T. U-Net: convolutional networks for biomedical image segmentation.
MICCAI 2015 — the decoder side: at each stride, up-sample ×2, concatenate the encoder's skip feature of
that stride, two 3×3 convolutions. Here the contracting path is a pretrained-able classification backbone
(VGG / ResNet / DenseNet), as in segmentation_models_pytorch's ``Unet`` (conv + BN + ReLU blocks, nearest
up-sampling). Levels without an encoder feature (stride 1 for ResNet / DenseNet) get no skip.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medseg.errors import MedsegError
from medseg.nets.encoders.base import Encoder, feature_index
from medseg.nets.encoders.compose import DECODERS, EncoderDecoder, compose_network, reject_unknown_options
from medseg.nets.registry import NETWORKS


def conv_bn_relu(cin: int, cout: int, kernel_size: int = 3, dilation: int = 1) -> nn.Sequential:
    """3×3 (by default) convolution without bias, batch norm, ReLU."""
    pad = dilation * (kernel_size // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Block(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.conv1 = conv_bn_relu(cin + cskip, cout)
        self.conv2 = conv_bn_relu(cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        x = F.interpolate(x, size=size, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], 1)
        return self.conv2(self.conv1(x))


class UNetDecoder(nn.Module):
    """Decoder blocks at each stride from the deepest feature up to stride 1, then a 3×3 head.

    Parameters
    ----------
    encoder : Encoder
    num_classes : int
    decoder_channels : sequence of int
        Output channels of the blocks, deepest first (one per distinct stride below the deepest, down
        to stride 1). Default (256, 128, 64, 32, 16) as segmentation_models_pytorch for stride 32.
    """

    def __init__(self, encoder: Encoder, num_classes: int,
                 decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)):
        super().__init__()
        strides = sorted(set(encoder.strides))
        deepest = strides[-1]
        # strides the decoder visits, deepest-but-one first, ending at 1
        levels = [s for s in (deepest >> k for k in range(1, 8)) if s >= 1]
        if len(decoder_channels) < len(levels):
            raise MedsegError(f"decoder_channels needs {len(levels)} entries for an encoder of stride {deepest}; "
                              f"got {len(decoder_channels)}")
        self.deep_index = feature_index(encoder.strides, deepest)
        self.skip_index = [feature_index(encoder.strides, s) if s in strides else None for s in levels]
        self.levels = levels
        blocks = []
        cin = encoder.out_channels[self.deep_index]
        for idx, cout in zip(self.skip_index, decoder_channels):
            cskip = encoder.out_channels[idx] if idx is not None else 0
            blocks.append(_Block(cin, cskip, cout))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, num_classes, 3, padding=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[self.deep_index]
        h, w = x.shape[-2:]
        deepest = self.levels[0] * 2
        for s, idx, block in zip(self.levels, self.skip_index, self.blocks):
            skip = features[idx] if idx is not None else None
            size = skip.shape[-2:] if skip is not None else (h * deepest // s, w * deepest // s)
            x = block(x, skip, size)
        return self.head(x)


DECODERS.add("unet", UNetDecoder, citation="Ronneberger et al., MICCAI 2015")


@NETWORKS.register(
    "encoder_unet", dims=(2,),
    citation="Ronneberger et al., U-Net, MICCAI 2015; encoder x decoder composition after segmentation_models_pytorch",
    summary="U-Net decoder (skip concat at every stride) on a VGG / ResNet / DenseNet encoder (option encoder)",
)
def build_encoder_unet(in_channels: int, num_classes: int, spatial_dims: int = 2, encoder: str = "resnet34",
                       encoder_weights: str | None = None, encoder_options: dict | None = None,
                       decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16), **options) -> EncoderDecoder:
    """U-Net decoder on a registered encoder (default ResNet-34)."""
    reject_unknown_options("encoder_unet", options)
    return compose_network("unet", in_channels, num_classes, spatial_dims, encoder=encoder,
                           encoder_weights=encoder_weights, encoder_options=encoder_options,
                           decoder_channels=tuple(decoder_channels))
