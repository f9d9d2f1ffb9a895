"""ResNet-18/34/50 encoders.

He K, Zhang X, Ren S, Sun J. Deep residual learning for image recognition. CVPR 2016. The idea: blocks
learn a residual ``F(x)`` added to an identity shortcut, which makes very deep networks trainable.
Written from scratch with torchvision's names (``conv1``, ``bn1``, ``layer1…4``, ``downsample.0/1``,
``fc``) and its "v1.5" Bottleneck (stride on the 3×3 convolution), so ``resnet50-0676ba61.pth`` etc. load.

Feature maps returned (finest first): stem after ReLU (stride 2, 64 channels), layer1 (stride 4),
layer2 (8), layer3 (16), layer4 (32). ``output_stride=16`` or ``8`` replaces the stride of layer4 (and
layer3) by dilation, as DeepLab does (Chen et al. 2017/2018), so the last maps keep stride 16 or 8.
"""

from __future__ import annotations

import torch
from torch import nn

from medseg.errors import MedsegError
from medseg.nets.encoders.base import Encoder


class BasicBlock(nn.Module):
    """Two 3×3 convolutions (ResNet-18/34). Dilation is supported (torchvision refuses it) for DeepLab."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided/dilated), 1×1 expand ×4 (ResNet-50)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetEncoder(Encoder):
    """ResNet encoder.

    Parameters
    ----------
    block : type
        :class:`BasicBlock` or :class:`Bottleneck`.
    layers : sequence of int
        Blocks per stage.
    in_channels : int
        Input channels.
    output_stride : int
        32 (plain), 16 (layer4 dilated by 2) or 8 (layer3 dilated by 2, layer4 by 4).
    num_classes : int, optional
        Build torchvision's ``fc`` head for that many classes.
    """

    first_conv = "conv1.weight"
    classifier_prefixes = ("fc.",)

    def __init__(self, block: type, layers: tuple[int, ...], in_channels: int = 3, output_stride: int = 32,
                 num_classes: int | None = None):
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise MedsegError(f"output_stride must be 8, 16 or 32, not {output_stride}")
        dilate = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}[output_stride]
        self.in_channels = in_channels
        self.inplanes = 64
        self.dilation = 1
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, dilate=dilate[0])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2, dilate=dilate[1])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, dilate=dilate[2])
        e = block.expansion
        self.out_channels = (64, 64 * e, 128 * e, 256 * e, 512 * e)
        self.strides = tuple(min(s, output_stride) for s in (2, 4, 8, 16, 32))
        self.output_stride = output_stride
        self.num_classes = num_classes
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512 * e, num_classes)
        # torchvision's initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int = 1, dilate: bool = False):
        # Same bookkeeping as torchvision's replace_stride_with_dilation: the first block of a dilated
        # stage keeps the previous dilation, the following ones use the new one.
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, previous_dilation)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x0 = self.relu(self.bn1(self.conv1(x)))
        x1 = self.layer1(self.maxpool(x0))
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        return [x0, x1, x2, x3, x4]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_classes is None:
            raise RuntimeError("encoder built without a classifier head (num_classes=None)")
        return self.fc(torch.flatten(self.avgpool(self.forward(x)[-1]), 1))


def resnet18(in_channels: int = 3, output_stride: int = 32, num_classes: int | None = None) -> ResNetEncoder:
    """ResNet-18 encoder (BasicBlock, 2-2-2-2)."""
    return ResNetEncoder(BasicBlock, (2, 2, 2, 2), in_channels, output_stride, num_classes)


def resnet34(in_channels: int = 3, output_stride: int = 32, num_classes: int | None = None) -> ResNetEncoder:
    """ResNet-34 encoder (BasicBlock, 3-4-6-3)."""
    return ResNetEncoder(BasicBlock, (3, 4, 6, 3), in_channels, output_stride, num_classes)


def resnet50(in_channels: int = 3, output_stride: int = 32, num_classes: int | None = None) -> ResNetEncoder:
    """ResNet-50 encoder (Bottleneck, 3-4-6-3)."""
    return ResNetEncoder(Bottleneck, (3, 4, 6, 3), in_channels, output_stride, num_classes)
