"""DeepLab v3+.

Chen L-C, Zhu Y, Papandreou G, Schroff F, Adam H. Encoder-decoder with atrous separable convolution for
semantic image segmentation. ECCV 2018. The idea: DeepLab v3's atrous encoder — a backbone whose last
stages trade stride for dilation (output stride 16 or 8) followed by Atrous Spatial Pyramid Pooling —
plus a simple decoder that up-samples the ASPP output ×4 and refines it with the backbone's stride-4
low-level features (reduced to 48 channels by a 1×1 convolution) before a final ×4 up-sampling.

As the paper: ASPP = 1×1 conv, three 3×3 atrous convs at rates 6/12/18 (output stride 16; doubled to
12/24/36 at output stride 8), and image pooling (global average + 1×1 conv, broadcast back), each 256
channels with BN + ReLU, concatenated and projected by a 1×1 conv to 256; decoder = low-level 1×1 → 48,
concat, two 3×3 convs of 256, 1×1 classifier, bilinear ×4. Differences: the backbone is ResNet-50 by
default (the paper uses ResNet-101 / Xception, not provided here) and convolutions are ordinary, not
depth-wise separable (the paper's separable variant is a speed option of Xception). Dropout 0.5 after the
ASPP projection follows the reference implementations (torchvision, segmentation_models_pytorch).

The image-pooling branch applies batch norm to a 1×1 map; with a training batch of one it uses the running
statistics (batch statistics of a single value are undefined).
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

from medseg.errors import MedsegError
from medseg.nets.encoders import ENCODERS, Encoder, feature_index
from medseg.nets.encoders.compose import DECODERS, EncoderDecoder, compose_network, reject_unknown_options
from medseg.nets.encoders.unet_decoder import conv_bn_relu
from medseg.nets.registry import NETWORKS

CITATION = ("Chen et al., Encoder-decoder with atrous separable convolution for semantic image "
            "segmentation (DeepLab v3+), ECCV 2018")


class ASPPPooling(nn.Module):
    """Image-level features: global average pooling, 1×1 conv + BN + ReLU, broadcast to the map size."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = conv_bn_relu(cin, cout, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, bn, relu = self.conv
        y = conv(F.adaptive_avg_pool2d(x, 1))
        if self.training and y.shape[0] == 1:
            # batch norm of one value per channel is undefined (torchvision raises); normalise this
            # batch with the running statistics instead, so training with batch size 1 works
            y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        else:
            y = bn(y)
        return relu(y).expand(-1, -1, x.shape[-2], x.shape[-1])


class ASPP(nn.Module):
    """Atrous Spatial Pyramid Pooling.

    Parameters
    ----------
    cin : int
        Input channels.
    rates : sequence of int
        Dilation rates of the 3×3 branches.
    cout : int
        Channels of every branch and of the projection (256).
    dropout : float
        Dropout after the projection.
    """

    def __init__(self, cin: int, rates: tuple[int, ...] = (6, 12, 18), cout: int = 256, dropout: float = 0.5):
        super().__init__()
        branches = [conv_bn_relu(cin, cout, kernel_size=1)]
        branches += [conv_bn_relu(cin, cout, kernel_size=3, dilation=r) for r in rates]
        branches.append(ASPPPooling(cin, cout))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(conv_bn_relu(cout * len(branches), cout, kernel_size=1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([b(x) for b in self.branches], 1))


class DeepLabV3PlusDecoder(nn.Module):
    """ASPP on the deepest features, fused with the stride-4 low-level features.

    Parameters
    ----------
    encoder : Encoder
        Needs a stride-4 feature map; its deepest map feeds ASPP.
    num_classes : int
    rates : sequence of int, optional
        ASPP rates; default (6, 12, 18) at output stride 16, doubled at output stride 8 (paper).
    aspp_channels, low_level_channels : int
        256 and 48 in the paper.
    dropout : float
        After the ASPP projection.
    """

    def __init__(self, encoder: Encoder, num_classes: int, rates: tuple[int, ...] | None = None,
                 aspp_channels: int = 256, low_level_channels: int = 48, dropout: float = 0.5):
        super().__init__()
        deepest = max(encoder.strides)
        if rates is None:
            rates = tuple(r * max(1, 16 // deepest) for r in (6, 12, 18))
        self.rates = tuple(rates)
        self.i_low = feature_index(encoder.strides, 4)
        self.i_high = feature_index(encoder.strides, deepest)
        self.aspp = ASPP(encoder.out_channels[self.i_high], self.rates, aspp_channels, dropout)
        self.low_level = conv_bn_relu(encoder.out_channels[self.i_low], low_level_channels, kernel_size=1)
        self.fuse = nn.Sequential(conv_bn_relu(aspp_channels + low_level_channels, 256),
                                  conv_bn_relu(256, 256))
        self.classifier = nn.Conv2d(256, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        low = self.low_level(features[self.i_low])
        x = self.aspp(features[self.i_high])
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        x = self.classifier(self.fuse(torch.cat([x, low], 1)))
        h, w = low.shape[-2:]
        return F.interpolate(x, size=(4 * h, 4 * w), mode="bilinear", align_corners=False)


DECODERS.add("deeplabv3plus", DeepLabV3PlusDecoder, citation=CITATION)


@NETWORKS.register("deeplabv3plus", dims=(2,), citation=CITATION,
                   summary="DeepLab v3+: atrous ResNet encoder (output stride 16/8), ASPP 6/12/18 + image "
                           "pooling, decoder fusing stride-4 features (option encoder, output_stride)")
def build_deeplabv3plus(in_channels: int, num_classes: int, spatial_dims: int = 2, encoder: str = "resnet50",
                        encoder_weights: str | None = None, output_stride: int | None = None,
                        rates: tuple[int, ...] | None = None, dropout: float = 0.5, **options) -> EncoderDecoder:
    """DeepLab v3+ (default ResNet-50 at output stride 16).

    ``output_stride`` (8 or 16; default 16) needs an encoder that can dilate (ResNet). Encoders that
    cannot (VGG, DenseNet) keep their stride 32, and ASPP runs there with the stride-16 rates.
    """
    reject_unknown_options("deeplabv3plus", options)
    if "output_stride" in inspect.signature(ENCODERS.get(encoder)).parameters:
        encoder_options = {"output_stride": 16 if output_stride is None else output_stride}
    elif output_stride in (None, 32):
        encoder_options = {}
    else:
        raise MedsegError(f"encoder '{encoder}' cannot dilate; output_stride={output_stride} needs a ResNet")
    return compose_network("deeplabv3plus", in_channels, num_classes, spatial_dims, encoder=encoder,
                           encoder_weights=encoder_weights, encoder_options=encoder_options,
                           rates=rates, dropout=dropout)
