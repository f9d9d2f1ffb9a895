"""DenseNet-121 encoder.

Huang G, Liu Z, van der Maaten L, Weinberger KQ. Densely connected convolutional networks. CVPR 2017.
The idea: inside a dense block every layer receives the concatenation of all preceding feature maps.
Written from scratch with torchvision's names (``features.conv0``, ``features.denseblockK.denselayerJ.
norm1/conv1/norm2/conv2``, ``features.transitionK``, ``features.norm5``, ``classifier``); older
torchvision files spell ``norm.1`` for ``norm1``, which :mod:`medseg.nets.encoders.weights` renames.

Feature maps returned (finest first): stem after ReLU (stride 2, 64 channels), dense block 1 (stride 4,
256), block 2 (8, 512), block 3 (16, 1024), block 4 after ``norm5`` + ReLU (32, 1024).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from medseg.nets.encoders.base import Encoder


class _DenseLayer(nn.Module):
    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class _DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers: int, num_input_features: int, bn_size: int, growth_rate: int):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}",
                            _DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, num_input_features: int, num_output_features: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, 1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNetEncoder(Encoder):
    """DenseNet-BC encoder (DenseNet-121 with the defaults).

    Parameters
    ----------
    in_channels : int
        Input channels.
    growth_rate, block_config, num_init_features, bn_size
        DenseNet-BC hyper-parameters (121: 32, (6, 12, 24, 16), 64, 4).
    num_classes : int, optional
        Build torchvision's ``classifier`` head for that many classes.
    """

    first_conv = "features.conv0.weight"
    classifier_prefixes = ("classifier.",)

    def __init__(self, in_channels: int = 3, growth_rate: int = 32,
                 block_config: tuple[int, ...] = (6, 12, 24, 16), num_init_features: int = 64,
                 bn_size: int = 4, num_classes: int | None = None):
        super().__init__()
        self.in_channels = in_channels
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(in_channels, num_init_features, 7, stride=2, padding=3, bias=False)),
            ("norm0", nn.BatchNorm2d(num_init_features)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
        ]))
        n = num_init_features
        channels = [num_init_features]
        for i, num_layers in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", _DenseBlock(num_layers, n, bn_size, growth_rate))
            n += num_layers * growth_rate
            channels.append(n)
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(n, n // 2))
                n //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(n))
        self.out_channels = tuple(channels)
        self.strides = (2, 4, 8, 16, 32)
        self.num_classes = num_classes
        if num_classes is not None:
            self.classifier = nn.Linear(n, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f = self.features
        x = f.relu0(f.norm0(f.conv0(x)))
        out = [x]
        x = f.pool0(x)
        for i in range(1, 5):
            x = getattr(f, f"denseblock{i}")(x)
            if i < 4:
                out.append(x)
                x = getattr(f, f"transition{i}")(x)
        out.append(torch.relu(f.norm5(x)))
        return out

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_classes is None:
            raise RuntimeError("encoder built without a classifier head (num_classes=None)")
        x = nn.functional.adaptive_avg_pool2d(self.forward(x)[-1], 1)
        return self.classifier(torch.flatten(x, 1))


def densenet121(in_channels: int = 3, num_classes: int | None = None) -> DenseNetEncoder:
    """DenseNet-121 encoder (growth 32, blocks 6-12-24-16)."""
    return DenseNetEncoder(in_channels, 32, (6, 12, 24, 16), 64, 4, num_classes)
