"""Encoder × decoder composition (the segmentation_models_pytorch pattern).

A network is ``EncoderDecoder(encoder, decoder)``: the encoder returns feature maps with ``strides``,
the decoder turns them into logits at the input resolution. Decoders are registered by name in
:data:`DECODERS` as ``factory(encoder, num_classes, **options) -> nn.Module`` and take any encoder,
choosing the features they need by stride (:func:`medseg.nets.encoders.feature_index`).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medseg.errors import MedsegError
from medseg.nets.encoders import Encoder, create_encoder
from medseg.registry import Registry

DECODERS = Registry("decoder", entry_point_group="medseg.decoders")


def pad_to_divisor(x: torch.Tensor, divisor: int) -> torch.Tensor:
    """Zero-pad the last two axes at their end up to a multiple of ``divisor`` (crop back afterwards).

    Examples
    --------
    >>> pad_to_divisor(torch.zeros(1, 1, 33, 30), 16).shape
    torch.Size([1, 1, 48, 32])
    """
    h, w = x.shape[-2:]
    # always emit the pad (even of 0) so that a traced / ONNX graph is right for every input size
    return F.pad(x, (0, (divisor - w % divisor) % divisor, 0, (divisor - h % divisor) % divisor))


class EncoderDecoder(nn.Module):
    """An encoder, a decoder, and the network contract's padding to ``size_divisor`` and cropping back.

    Parameters
    ----------
    encoder : Encoder
    decoder : nn.Module
        Called with the encoder's output; returns logits at the padded input's resolution.
    size_divisor : int, optional
        Defaults to the encoder's largest stride.
    """

    def __init__(self, encoder: Encoder, decoder: nn.Module, size_divisor: int | None = None):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.size_divisor = int(size_divisor or max(encoder.strides))

    def encode(self, x: torch.Tensor) -> Any:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = self.decoder(self.encode(pad_to_divisor(x, self.size_divisor)))
        return y[..., :h, :w]


def reject_unknown_options(network: str, options: dict[str, Any]) -> None:
    """Raise a MedsegError naming options a network factory does not take (instead of a TypeError)."""
    if options:
        raise MedsegError(f"network '{network}' has no option(s) {sorted(options)}")


def compose_network(decoder: str, in_channels: int, num_classes: int, spatial_dims: int = 2,
                    encoder: str = "resnet34", encoder_weights: str | None = None,
                    encoder_options: dict[str, Any] | None = None, model_class: type = EncoderDecoder,
                    **decoder_options: Any) -> EncoderDecoder:
    """Build ``model_class(encoder, decoder)`` from registered names.

    Parameters
    ----------
    decoder : str
        Name in :data:`DECODERS` (``fcn8s``, ``segnet``, ``deeplabv3plus``, ``unet``).
    in_channels, num_classes : int
        As for every network.
    spatial_dims : int
        Must be 2 (the encoders are 2D).
    encoder : str
        Name in :data:`medseg.nets.encoders.ENCODERS`.
    encoder_weights : path-like, optional
        Local torchvision-format state dict for the encoder (transfer learning).
    encoder_options : dict, optional
        Passed to :func:`create_encoder` (e.g. ``{"output_stride": 16}``).
    **decoder_options
        Passed to the decoder factory.

    Returns
    -------
    EncoderDecoder
    """
    if spatial_dims != 2:
        raise MedsegError(f"encoder-decoder networks are 2D; spatial_dims={spatial_dims} is not supported")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise MedsegError(f"num_classes must be a positive integer, not {num_classes!r}")
    enc = create_encoder(encoder, in_channels, weights=encoder_weights, **(encoder_options or {}))
    factory = DECODERS.get(decoder)
    accepted = inspect.signature(factory).parameters
    unknown = [k for k in decoder_options if k not in accepted]
    if unknown:
        raise MedsegError(f"decoder '{decoder}' has no option(s) {unknown}; it takes "
                          f"{sorted(k for k in accepted if k not in ('encoder', 'num_classes'))}")
    return model_class(enc, factory(encoder=enc, num_classes=num_classes, **decoder_options))
