"""SegNet.

Badrinarayanan V, Kendall A, Cipolla R. SegNet: a deep convolutional encoder-decoder architecture for
image segmentation. IEEE TPAMI 39(12), 2017. The idea: the decoder up-samples with the *max-pooling
indices* memorised by the encoder (non-learned, sparse up-sampling that keeps boundary positions), then
densifies the sparse maps with trainable convolutions; no skip features are stored, only indices.

As the paper (and its Caffe model): encoder = the 13 convolutions of VGG-16 with batch normalisation
(``vgg16_bn``; ``vgg16`` also accepted), decoder = the mirror image (13 convolutions + BN + ReLU, each
decoder stage starting with un-pooling by the stored indices), the last decoder convolution producing the
class scores directly (``conv1_1_D`` in the reference prototxt), then the soft-max of the loss.

Un-pooling is written as a scatter instead of ``nn.MaxUnpool2d`` because the latter does not export to
ONNX with the TorchScript exporter (checked with torch 2.13: it fails in ``_check_with``); scatter exports
as ``ScatterElements`` and gives identical results.
"""

from __future__ import annotations

import torch
from torch import nn

from medseg.errors import MedsegError
from medseg.nets.encoders import Encoder
from medseg.nets.encoders.compose import DECODERS, EncoderDecoder, compose_network, reject_unknown_options
from medseg.nets.registry import NETWORKS

CITATION = ("Badrinarayanan, Kendall & Cipolla, SegNet: a deep convolutional encoder-decoder architecture "
            "for image segmentation, IEEE TPAMI 2017")

# decoder stages, deepest first: (input channels, conv output widths) mirroring VGG-16 configuration D
_DECODER_STAGES = (
    (512, (512, 512, 512)),
    (512, (512, 512, 256)),
    (256, (256, 256, 128)),
    (128, (128, 64)),
    (64, (64,)),
)


def max_unpool2d(x: torch.Tensor, indices: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Place each value of ``x`` at its max-pooling argmax in a zero map of spatial ``size``.

    Same result as ``F.max_unpool2d`` (indices are flat per channel, as ``MaxPool2d(return_indices=True)``
    gives them).

    Examples
    --------
    >>> x = torch.arange(16.0).view(1, 1, 4, 4)
    >>> y, i = torch.nn.functional.max_pool2d(x, 2, return_indices=True)
    >>> max_unpool2d(y, i, (4, 4))[0, 0, 1].tolist()
    [0.0, 5.0, 0.0, 7.0]
    """
    n, c = x.shape[:2]
    out = x.new_zeros(n, c, size[0] * size[1])
    out = out.scatter(2, indices.flatten(2), x.flatten(2))
    return out.view(n, c, size[0], size[1])


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SegNetDecoder(nn.Module):
    """Un-pooling by indices + convolutions, mirroring the VGG-16 encoder.

    Parameters
    ----------
    encoder : Encoder
        A VGG encoder (needs ``forward_with_indices``).
    num_classes : int
    """

    def __init__(self, encoder: Encoder, num_classes: int):
        super().__init__()
        if not hasattr(encoder, "forward_with_indices"):
            raise MedsegError(f"SegNet needs an encoder that returns max-pooling indices (vgg16, vgg16_bn), "
                              f"not {type(encoder).__name__}")
        stages = []
        cin = 512
        for _, widths in _DECODER_STAGES:
            layers = []
            for cout in widths:
                layers.append(_conv_bn_relu(cin, cout))
                cin = cout
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Conv2d(cin, num_classes, 3, padding=1)  # conv1_1_D: class scores
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, encoded: tuple[list[torch.Tensor], list[torch.Tensor]]) -> torch.Tensor:
        _, indices = encoded
        x = encoded[0][-1]
        for stage, idx in zip(self.stages, reversed(indices)):
            h, w = x.shape[-2:]
            x = stage(max_unpool2d(x, idx, (2 * h, 2 * w)))
        return self.classifier(x)


class SegNet(EncoderDecoder):
    """Encoder-decoder whose encoder also hands its pooling indices to the decoder."""

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return self.encoder.forward_with_indices(x)


DECODERS.add("segnet", SegNetDecoder, citation=CITATION)


@NETWORKS.register("segnet", dims=(2,), citation=CITATION,
                   summary="SegNet: VGG-16-BN encoder, decoder up-sampling with the max-pooling indices")
def build_segnet(in_channels: int, num_classes: int, spatial_dims: int = 2, encoder: str = "vgg16_bn",
                 encoder_weights: str | None = None, **options) -> EncoderDecoder:
    """SegNet on VGG-16-BN (or ``encoder="vgg16"``)."""
    reject_unknown_options("segnet", options)
    return compose_network("segnet", in_channels, num_classes, spatial_dims, encoder=encoder,
                           encoder_weights=encoder_weights, model_class=SegNet)
