"""DeepLab v3+: atrous encoder, ASPP rates, decoder fusion, shapes, parameter count, gradient flow, ONNX."""

import pytest
import torch

from medseg.errors import MedsegError
from medseg.nets import create_network
from medseg.nets.meta import count_parameters

from _netcheck import assert_gradient_flow, assert_onnx_matches


pytestmark = pytest.mark.usefixtures("one_thread")


def _rates(net):
    return [b[0].dilation[0] for b in net.decoder.aspp.branches[1:4]]


@pytest.mark.parametrize("output_stride, rates", [(16, [6, 12, 18]), (8, [12, 24, 36])])
def test_output_stride_and_aspp_rates(output_stride, rates):
    net = create_network("deeplabv3plus", 1, 3, 2, encoder="resnet18", output_stride=output_stride).eval()
    assert net.encoder.strides[-1] == output_stride and net.size_divisor == output_stride
    assert _rates(net) == rates  # paper: 6/12/18 at OS16, doubled at OS8
    with torch.no_grad():
        assert net.encoder(torch.randn(1, 1, 48, 48))[-1].shape[-1] == 48 // output_stride
        assert net(torch.randn(1, 1, 37, 45)).shape == (1, 3, 37, 45)


def test_decoder_structure():
    net = create_network("deeplabv3plus", 3, 2, 2, encoder="resnet18")
    d = net.decoder
    assert len(d.aspp.branches) == 5  # 1×1, three atrous 3×3, image pooling
    assert all(b[0].out_channels == 256 for b in d.aspp.branches[:4])
    assert d.low_level[0].out_channels == 48 and d.low_level[0].kernel_size == (1, 1)
    assert d.low_level[0].in_channels == 64  # resnet18 layer1, stride 4
    assert net.encoder.strides[d.i_low] == 4


@pytest.mark.parametrize("shape", [(1, 2, 37, 45), (2, 2, 9, 70)])
def test_output_shape_any_size(shape):
    net = create_network("deeplabv3plus", 2, 4, 2, encoder="resnet18").eval()
    with torch.no_grad():
        assert net(torch.randn(shape)).shape == (shape[0], 4, *shape[2:])


def test_parameter_count_resnet50():
    # Source: layer shapes of Chen et al. ECCV 2018 (sections 3.1-3.2, Fig. 2) on torchvision's ResNet-50
    # (25,557,032 with the ImageNet fc of 2,049,000 → 23,508,032 without it):
    # ASPP 1×1 2048·256 + BN 512; 3 × (3×3 2048·256·9 + BN 512); pooling 1×1 2048·256 + 512;
    # projection 1280·256 + 512; low-level 1×1 256·48 + 96; two 3×3 convs (304·256·9 + 512, 256·256·9 + 512);
    # classifier 256·21 + 21 (convolutions followed by BN have no bias).
    aspp = (2048 * 256 + 512) + 3 * (2048 * 256 * 9 + 512) + (2048 * 256 + 512) + (1280 * 256 + 512)
    decoder = (256 * 48 + 96) + (304 * 256 * 9 + 512) + (256 * 256 * 9 + 512) + (256 * 21 + 21)
    expected = 25_557_032 - 2_049_000 + aspp + decoder
    # default: ResNet-50, output stride 16
    assert count_parameters(create_network, "deeplabv3plus", 3, 21, 2) == expected == 40_352_181


def test_gradient_flow():
    net = create_network("deeplabv3plus", 1, 2, 2, encoder="resnet18", dropout=0.0)
    assert_gradient_flow(net, torch.randn(2, 1, 32, 32))
    # batch of one: BN of the 1×1 image-pooling map falls back to running statistics instead of failing
    assert net.train()(torch.randn(1, 1, 32, 32)).shape == (1, 2, 32, 32)


def test_other_encoders_and_errors():
    net = create_network("deeplabv3plus", 1, 2, 2, encoder="densenet121").eval()
    assert net.size_divisor == 32
    with torch.no_grad():
        assert net(torch.randn(1, 1, 33, 40)).shape == (1, 2, 33, 40)
    with pytest.raises(MedsegError, match="cannot dilate"):
        create_network("deeplabv3plus", 1, 2, 2, encoder="vgg16", output_stride=8)
    with pytest.raises(MedsegError, match="output_stride"):
        create_network("deeplabv3plus", 1, 2, 2, encoder="resnet18", output_stride=4)


def test_onnx_export_matches(tmp_path):
    net = create_network("deeplabv3plus", 1, 2, 2, encoder="resnet18")
    assert_onnx_matches(net, tmp_path, (1, 1, 48, 48), test_shapes=[(1, 1, 37, 45)])
