"""Backbone encoders (VGG-16(-BN), ResNet-18/34/50, DenseNet-121) and their registry.

Every encoder returns a list of feature maps with ``out_channels`` and ``strides`` attributes (see
:mod:`medseg.nets.encoders.base`); decoders pick features by stride, so any decoder sits on any encoder.
Weights are random by default; :func:`load_encoder_weights` loads a local torchvision-format file.
Third parties add encoders through the ``medseg.encoders`` entry point group.
"""

from __future__ import annotations

import inspect
from typing import Any

from medseg.errors import MedsegError
from medseg.nets.encoders.base import Encoder, adapt_first_conv_weight, feature_index
from medseg.nets.encoders.densenet import densenet121
from medseg.nets.encoders.resnet import resnet18, resnet34, resnet50
from medseg.nets.encoders.vgg import vgg16, vgg16_bn
from medseg.nets.encoders.weights import load_encoder_weights, map_torchvision_keys, read_state_dict
from medseg.registry import Registry

ENCODERS = Registry("encoder", entry_point_group="medseg.encoders")

_SIMONYAN = "Simonyan & Zisserman, Very deep convolutional networks, ICLR 2015"
_HE = "He et al., Deep residual learning for image recognition, CVPR 2016"
_HUANG = "Huang et al., Densely connected convolutional networks, CVPR 2017"
ENCODERS.add("vgg16", vgg16, citation=_SIMONYAN, torchvision_file="vgg16-397923af.pth")
ENCODERS.add("vgg16_bn", vgg16_bn, citation=_SIMONYAN, torchvision_file="vgg16_bn-6c64b313.pth")
ENCODERS.add("resnet18", resnet18, citation=_HE, torchvision_file="resnet18-f37072fd.pth")
ENCODERS.add("resnet34", resnet34, citation=_HE, torchvision_file="resnet34-b627a593.pth")
ENCODERS.add("resnet50", resnet50, citation=_HE, torchvision_file="resnet50-0676ba61.pth")
ENCODERS.add("densenet121", densenet121, citation=_HUANG, torchvision_file="densenet121-a639ec97.pth")


def create_encoder(name: str, in_channels: int = 3, weights: str | None = None, **options: Any) -> Encoder:
    """Build a registered encoder.

    Parameters
    ----------
    name : str
        ``vgg16``, ``vgg16_bn``, ``resnet18``, ``resnet34``, ``resnet50``, ``densenet121`` or a plug-in.
    in_channels : int
        Input channels (1 grey, 3 RGB, 4 multi-modal MRI, ...).
    weights : path-like, optional
        Local torchvision-format state dict to load (see :func:`load_encoder_weights`).
    **options
        Encoder options, e.g. ``output_stride`` (ResNet: 8, 16, 32) or ``num_classes`` (classifier head).

    Returns
    -------
    Encoder

    Examples
    --------
    >>> enc = create_encoder("resnet18", in_channels=1, output_stride=16)
    >>> enc.strides
    (2, 4, 8, 16, 16)
    """
    if not isinstance(in_channels, int) or in_channels < 1:
        raise MedsegError(f"in_channels must be a positive integer, not {in_channels!r}")
    factory = ENCODERS.get(name)
    accepted = inspect.signature(factory).parameters
    unknown = [k for k in options if k not in accepted]
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        raise MedsegError(f"encoder '{name}' has no option(s) {unknown}; it takes {sorted(accepted)}")
    encoder = factory(in_channels=in_channels, **options)
    if weights is not None:
        load_encoder_weights(encoder, weights)
    return encoder


__all__ = [
    "ENCODERS", "Encoder", "adapt_first_conv_weight", "create_encoder", "feature_index",
    "load_encoder_weights", "map_torchvision_keys", "read_state_dict",
]

# The composition layer imports this package, so it is imported last; importing it registers the
# "encoder_unet" network.
from medseg.nets.encoders import compose as compose  # noqa: E402
from medseg.nets.encoders import unet_decoder as unet_decoder  # noqa: E402
