"""VGG-16 and VGG-16-BN encoders.

Simonyan K, Zisserman A. Very deep convolutional networks for large-scale image recognition. ICLR 2015.
Configuration "D": thirteen 3×3 convolutions in five blocks separated by 2×2 max pooling; the idea is depth
through small kernels. Written from scratch with torchvision's names (``features.N`` indices of the
``nn.Sequential``, ``classifier.0/3/6``) so that ``vgg16-397923af.pth`` / ``vgg16_bn-6c64b313.pth`` load.

Feature maps returned (finest first): the output of block 1 (stride 1, 64 channels, before pool1) and
the outputs of pool1…pool5 (strides 2…32; 64, 128, 256, 512, 512 channels). Pool outputs are the maps
FCN's skip layers score (pool3, pool4) and SegNet needs their argmax indices
(:meth:`VGGEncoder.forward_with_indices`).
"""

from __future__ import annotations

import torch
from torch import nn

from medseg.nets.encoders.base import Encoder

# Configuration "D" of Simonyan & Zisserman (Table 1): numbers are conv widths, "M" is a 2×2 max pool.
CFG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGGEncoder(Encoder):
    """VGG configuration D, optionally with batch normalisation after every convolution.

    Parameters
    ----------
    in_channels : int
        Input channels.
    batch_norm : bool
        VGG-16-BN when True.
    num_classes : int, optional
        Build torchvision's classifier head (``avgpool`` + ``classifier``) for that many classes.
    """

    first_conv = "features.0.weight"
    classifier_prefixes = ("classifier.",)

    def __init__(self, in_channels: int = 3, batch_norm: bool = False, num_classes: int | None = None):
        super().__init__()
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        c = in_channels
        for v in CFG_D:
            if v == "M":
                # return_indices costs nothing and lets SegNet reuse the same module
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, return_indices=True))
            else:
                layers.append(nn.Conv2d(c, v, kernel_size=3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(v))
                layers.append(nn.ReLU(inplace=True))
                c = v
        self.features = nn.Sequential(*layers)
        self.out_channels = (64, 64, 128, 256, 512, 512)
        self.strides = (1, 2, 4, 8, 16, 32)
        self.num_classes = num_classes
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
                nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                nn.Linear(4096, num_classes),
            )
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's VGG initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_with_indices(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Features as :meth:`forward` plus the argmax indices of pool1…pool5 (for SegNet)."""
        features: list[torch.Tensor] = []
        indices: list[torch.Tensor] = []
        for layer in self.features:
            if isinstance(layer, nn.MaxPool2d):
                if not features:
                    features.append(x)  # block 1 output, stride 1
                x, idx = layer(x)
                features.append(x)
                indices.append(idx)
            else:
                x = layer(x)
        return features, indices

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_with_indices(x)[0]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_classes is None:
            raise RuntimeError("encoder built without a classifier head (num_classes=None)")
        x = self.forward(x)[-1]
        return self.classifier(torch.flatten(self.avgpool(x), 1))


def vgg16(in_channels: int = 3, num_classes: int | None = None) -> VGGEncoder:
    """VGG-16 (configuration D) encoder."""
    return VGGEncoder(in_channels, batch_norm=False, num_classes=num_classes)


def vgg16_bn(in_channels: int = 3, num_classes: int | None = None) -> VGGEncoder:
    """VGG-16 with batch normalisation after every convolution."""
    return VGGEncoder(in_channels, batch_norm=True, num_classes=num_classes)
