"""Encoder × decoder composition: the U-Net decoder on every encoder, and any decoder on any encoder."""

import pytest
import torch

from medseg.errors import MedsegError
from medseg.nets import NETWORKS, create_network
from medseg.nets.encoders.compose import DECODERS, EncoderDecoder, pad_to_divisor

from _netcheck import assert_gradient_flow, assert_onnx_matches


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("encoder, in_channels", [("vgg16", 1), ("resnet18", 4), ("densenet121", 3)])
def test_encoder_unet_any_encoder_any_size(encoder, in_channels):
    net = create_network("encoder_unet", in_channels, 3, 2, encoder=encoder).eval()
    assert isinstance(net, EncoderDecoder) and net.size_divisor == 32
    with torch.no_grad():
        assert net(torch.randn(1, in_channels, 37, 45)).shape == (1, 3, 37, 45)


def test_unet_decoder_skips_by_stride():
    vgg = create_network("encoder_unet", 1, 2, 2, encoder="vgg16").decoder
    res = create_network("encoder_unet", 1, 2, 2, encoder="resnet18").decoder
    assert vgg.levels == [16, 8, 4, 2, 1]
    assert None not in vgg.skip_index  # VGG has a stride-1 feature
    assert res.skip_index[-1] is None and None not in res.skip_index[:-1]  # ResNet: none at stride 1
    # dilated encoder: strides (2, 4, 8, 16, 16) -> the decoder starts at 16
    dil = create_network("encoder_unet", 1, 2, 2, encoder="resnet18", encoder_options={"output_stride": 16})
    assert dil.size_divisor == 16 and dil.decoder.levels == [8, 4, 2, 1]
    with torch.no_grad():
        assert dil.eval()(torch.randn(1, 1, 20, 18)).shape == (1, 2, 20, 18)


def test_every_decoder_on_every_suitable_encoder():
    x = torch.randn(1, 2, 33, 31)
    for decoder, encoders in {"fcn8s": ["densenet121"], "deeplabv3plus": ["vgg16"],
                              "unet": ["resnet50"]}.items():
        assert decoder in DECODERS
        name = {"unet": "encoder_unet"}.get(decoder, decoder)
        for encoder in encoders:
            opts = {"fc_channels": 32, "fc_kernel": 1} if decoder == "fcn8s" else {}
            net = create_network(name, 2, 2, 2, encoder=encoder, **opts).eval()
            with torch.no_grad():
                assert net(x).shape == (1, 2, 33, 31), (decoder, encoder)


def test_pad_to_divisor():
    assert pad_to_divisor(torch.zeros(1, 1, 33, 32), 32).shape == (1, 1, 64, 32)
    y = pad_to_divisor(torch.ones(1, 1, 3, 5), 4)
    assert y.shape == (1, 1, 4, 8) and y.sum() == 15


def test_registry_and_errors():
    entry = NETWORKS.entry("encoder_unet")
    assert entry.metadata["dims"] == (2,) and "Ronneberger" in entry.metadata["citation"]
    for name in ("fcn8s", "segnet", "deeplabv3plus", "encoder_unet"):
        assert NETWORKS.entry(name).metadata["summary"]
    with pytest.raises(MedsegError, match="unknown encoder"):
        create_network("encoder_unet", 1, 2, 2, encoder="efficientnet")
    with pytest.raises(MedsegError, match="spatial_dims"):
        create_network("encoder_unet", 1, 2, 3)
    with pytest.raises(MedsegError, match="num_classes"):
        create_network("encoder_unet", 1, 0, 2)


def test_encoder_weights_option(tmp_path):
    from medseg.nets.encoders import create_encoder

    torch.manual_seed(3)
    src = create_encoder("resnet18", 3, num_classes=5)
    torch.save(src.state_dict(), tmp_path / "resnet18-f37072fd.pth")
    net = create_network("encoder_unet", 1, 2, 2, encoder="resnet18",
                         encoder_weights=str(tmp_path / "resnet18-f37072fd.pth"))
    assert torch.equal(net.encoder.layer2[0].conv1.weight, src.layer2[0].conv1.weight)
    assert torch.allclose(net.encoder.conv1.weight, src.conv1.weight.sum(1, keepdim=True))


def test_gradient_flow():
    net = create_network("encoder_unet", 1, 2, 2, encoder="resnet18", decoder_channels=(32, 16, 8, 8, 8))
    assert_gradient_flow(net, torch.randn(2, 1, 32, 32))


def test_onnx_export_matches(tmp_path):
    net = create_network("encoder_unet", 1, 2, 2, encoder="resnet18", decoder_channels=(32, 16, 8, 8, 8))
    assert_onnx_matches(net, tmp_path, (1, 1, 32, 32), test_shapes=[(1, 1, 37, 45)])
