"""The encoder contract shared by VGG, ResNet and DenseNet backbones.

An encoder maps an image batch ``(N, C, H, W)`` to a list of feature maps, finest first, with
``encoder.strides[i]`` the down-sampling factor of ``features[i]`` and ``encoder.out_channels[i]`` its
channel count. Decoders (FCN, SegNet, DeepLab v3+, U-Net) pick the features they need by stride, so any
decoder can sit on any encoder (the segmentation_models_pytorch composition).

Parameter and buffer names are torchvision's, so a torchvision state dict loads with the documented
mapping in :mod:`medseg.nets.encoders.weights`. With ``num_classes`` set the ImageNet classifier head is
built as well (same names as torchvision), which lets tests check parameter counts against torchvision's
published numbers and produce torchvision-format files.
"""

from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    """Base class of all encoders.

    Attributes
    ----------
    in_channels : int
        Input channels the first convolution takes.
    out_channels : tuple of int
        Channels of each returned feature map, finest first.
    strides : tuple of int
        Down-sampling factor of each returned feature map (non-decreasing; repeated when the last
        stages are dilated instead of strided).
    first_conv : str
        State-dict key of the first convolution's weight (adapted when in_channels differs from a file's).
    classifier_prefixes : tuple of str
        State-dict key prefixes of the ImageNet classifier head, dropped when loading into an encoder.
    """

    in_channels: int
    out_channels: tuple[int, ...]
    strides: tuple[int, ...]
    first_conv: str
    classifier_prefixes: tuple[str, ...]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet-style class logits (only when built with ``num_classes``)."""
        raise NotImplementedError


def feature_index(strides: tuple[int, ...], stride: int) -> int:
    """Index of the deepest feature map with the given stride.

    Parameters
    ----------
    strides : tuple of int
        An encoder's ``strides``.
    stride : int
        Wanted down-sampling factor.

    Returns
    -------
    int
        Index into the encoder's feature list; the last one of that stride, because with dilated stages
        several maps share a stride and the deepest carries the most context.

    Examples
    --------
    >>> feature_index((2, 4, 8, 16, 16), 16)
    4
    """
    hits = [i for i, s in enumerate(strides) if s == stride]
    if not hits:
        from medseg.errors import MedsegError

        raise MedsegError(f"encoder has no feature map at stride {stride}; it has strides {tuple(strides)}")
    return hits[-1]


def adapt_first_conv_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a pretrained first-convolution weight to another number of input channels.

    The rule of segmentation_models_pytorch (``patch_first_conv``): for one channel the RGB kernels are
    summed (a grey image is R = G = B, so the response is unchanged); for ``k`` channels the RGB kernels
    are repeated cyclically and scaled by ``3 / k`` so that the expected activation stays the same.

    Parameters
    ----------
    weight : torch.Tensor
        ``(out, c, kh, kw)`` weight of the file.
    in_channels : int
        Input channels of the model.

    Returns
    -------
    torch.Tensor
        ``(out, in_channels, kh, kw)``.

    Examples
    --------
    >>> w = torch.ones(2, 3, 1, 1)
    >>> adapt_first_conv_weight(w, 1)[0, 0, 0, 0].item()
    3.0
    """
    c = weight.shape[1]
    if in_channels == c:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    idx = torch.arange(in_channels) % c
    return weight[:, idx] * (c / in_channels)
