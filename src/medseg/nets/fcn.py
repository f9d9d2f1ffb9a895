"""FCN-8s.

Long J, Shelhamer E, Darrell T. Fully convolutional networks for semantic segmentation. CVPR 2015.
The idea: turn a classification network into a dense predictor — its fully connected layers become
convolutions (fc6 = 7×7, fc7 = 1×1), class scores are up-sampled in-network by transposed convolutions
initialised to bilinear interpolation, and coarse deep scores are fused with finer scores from pool4 and
pool3 ("skip" architecture, FCN-8s).

Faithful to the reference (``voc-fcn8s``) except where noted:

- Caffe pads conv1_1 by 100 pixels and aligns the score maps with Crop layers (offsets 5, 9, 31). Here
  the input is zero-padded to a multiple of 32 and fc6 uses ``padding=3``; then every map is exactly
  1/stride of the padded input and transposed convolutions with ``padding = stride / 2`` give the same
  alignment as the crops, without the 100-pixel border (which costs ~10× compute at 64²). The output is
  cropped back to the input size (any input size works).
- Score layers are zero-initialised (Section 4.1); the 2× up-samplings are initialised bilinear and
  learned, the final 8× up-sampling is fixed bilinear (Section 4.3, "Upsampling"), so it is a buffer.
- The "at-once" pool4 / pool3 scaling (0.01 / 0.0001) is not applied (the staged training of the paper).
- ``fc_channels=1024, fc_kernel=3`` is a lighter CPU variant (default is faithful: 4096, 7).
- Any registered encoder with features at strides 8, 16, 32 works (``encoder="resnet50"``...); for VGG
  the features at those strides are exactly pool3, pool4, pool5.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medseg.nets.encoders import Encoder, feature_index
from medseg.nets.encoders.compose import DECODERS, EncoderDecoder, compose_network, reject_unknown_options
from medseg.nets.registry import NETWORKS

CITATION = "Long, Shelhamer & Darrell, Fully convolutional networks for semantic segmentation, CVPR 2015"


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Transposed-convolution weight that performs bilinear up-sampling channel by channel.

    The filter of the FCN reference code (``surgery.upsample_filt``); with ``stride = kernel_size // 2``
    and ``padding = stride // 2`` the transposed convolution equals ``F.interpolate(mode="bilinear",
    align_corners=False)`` away from the image border.

    Parameters
    ----------
    channels : int
        Input = output channels (the filter is diagonal across channels).
    kernel_size : int
        Twice the up-sampling factor.

    Returns
    -------
    torch.Tensor
        ``(channels, channels, kernel_size, kernel_size)``.

    Examples
    --------
    >>> bilinear_kernel(1, 4)[0, 0, 0].tolist()
    [0.0625, 0.1875, 0.1875, 0.0625]
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = np.ogrid[:kernel_size, :kernel_size]
    filt = (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = torch.as_tensor(filt, dtype=torch.float32)
    return weight


def _upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, 2 * factor))
    return up


class FCN8sDecoder(nn.Module):
    """fc6, fc7, score layers and the pool4 / pool3 skip fusion on any encoder.

    Parameters
    ----------
    encoder : Encoder
        Needs features at strides 8, 16 and 32.
    num_classes : int
    fc_channels : int
        Width of fc6 / fc7 (4096 in the paper).
    fc_kernel : int
        Kernel of fc6 (7 in the paper: VGG's 7×7×512 → 4096 fully connected layer as a convolution).
    dropout : float
        Dropout after fc6 and fc7 (0.5, as VGG's classifier).
    zero_init_score : bool
        Zero-initialise the score layers (paper); False draws them like the other convolutions.
    """

    def __init__(self, encoder: Encoder, num_classes: int, fc_channels: int = 4096, fc_kernel: int = 7,
                 dropout: float = 0.5, zero_init_score: bool = True):
        super().__init__()
        self.i3, self.i4, self.i5 = (feature_index(encoder.strides, s) for s in (8, 16, 32))
        c3, c4, c5 = (encoder.out_channels[i] for i in (self.i3, self.i4, self.i5))
        self.fc6 = nn.Conv2d(c5, fc_channels, fc_kernel, padding=fc_kernel // 2)
        self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        self.drop = nn.Dropout2d(dropout)
        self.score_fr = nn.Conv2d(fc_channels, num_classes, 1)
        self.score_pool4 = nn.Conv2d(c4, num_classes, 1)
        self.score_pool3 = nn.Conv2d(c3, num_classes, 1)
        self.upscore2 = _upsampler(num_classes, 2)
        self.upscore_pool4 = _upsampler(num_classes, 2)
        # fixed bilinear ×8 (not learned in the paper): a buffer, so freezing/unfreezing never touches it
        self.register_buffer("upscore8_weight", bilinear_kernel(num_classes, 16))
        for conv in (self.fc6, self.fc7):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        for conv in (self.score_fr, self.score_pool4, self.score_pool3):
            if zero_init_score:
                nn.init.zeros_(conv.weight)
            else:
                nn.init.normal_(conv.weight, 0, 0.01)
            nn.init.zeros_(conv.bias)

    def _fc6(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return self.fc6(x)
        # Training: the same convolution as im2col + one matrix product. Measured on the 2-core CPU
        # (torch 2.13): oneDNN's backward of this 7×7, 512 → 4096 convolution on a 4×4 map (128² patches)
        # took 16 s per batch of 4 (PyTorch's non-oneDNN path: 0.5 s); inference and ONNX keep the conv.
        n, _, h, w = x.shape
        columns = F.unfold(x, self.fc6.kernel_size, padding=self.fc6.padding)
        out = torch.matmul(self.fc6.weight.flatten(1), columns) + self.fc6.bias[:, None]
        return out.view(n, -1, h, w)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.drop(F.relu(self._fc6(features[self.i5])))
        x = self.drop(F.relu(self.fc7(x)))
        x = self.upscore2(self.score_fr(x))
        x = self.upscore_pool4(x + self.score_pool4(features[self.i4]))
        x = x + self.score_pool3(features[self.i3])
        return F.conv_transpose2d(x, self.upscore8_weight, stride=8, padding=4)


DECODERS.add("fcn8s", FCN8sDecoder, citation=CITATION)


@NETWORKS.register("fcn8s", dims=(2,), citation=CITATION,
                   summary="FCN-8s: VGG-16 with convolutionalised fc6/fc7, bilinear-initialised "
                           "transposed-conv up-sampling, pool4/pool3 skip fusion (option encoder)")
def build_fcn8s(in_channels: int, num_classes: int, spatial_dims: int = 2, encoder: str = "vgg16",
                encoder_weights: str | None = None, encoder_options: dict | None = None,
                fc_channels: int = 4096, fc_kernel: int = 7, dropout: float = 0.5,
                zero_init_score: bool = True, **options) -> EncoderDecoder:
    """FCN-8s (default VGG-16 encoder; ``encoder="resnet18"`` etc. also work)."""
    reject_unknown_options("fcn8s", options)
    return compose_network("fcn8s", in_channels, num_classes, spatial_dims, encoder=encoder,
                           encoder_weights=encoder_weights, encoder_options=encoder_options,
                           fc_channels=fc_channels, fc_kernel=fc_kernel, dropout=dropout,
                           zero_init_score=zero_init_score)
