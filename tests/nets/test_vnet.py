import pytest
import torch

from medseg.errors import MedsegError
from medseg.nets import create_network
from medseg.nets.vnet import VNet

from _netcheck import assert_gradient_flow, assert_onnx_matches, count_params

TINY = dict(features=4, encoder_convs=(1, 2, 2), decoder_convs=(2, 1), kernel_size=3)


@pytest.mark.parametrize("shape", [(1, 1, 16, 16, 16), (2, 1, 9, 13, 7)])
def test_output_shape_3d(shape):
    net = create_network("vnet", 1, 2, 3, **TINY).eval()
    with torch.no_grad():
        assert net(torch.randn(shape)).shape == (shape[0], 2, *shape[2:])


def test_output_shape_2d_and_multichannel():
    net = create_network("vnet", 3, 4, 2, **TINY).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 21, 30)).shape == (1, 4, 21, 30)


def test_default_is_the_paper_layout():
    net = create_network("vnet", 1, 2, 3)
    assert net.channels == [16, 32, 64, 128, 256]
    assert net.size_divisor == 16
    assert [len(s.convs) for s in net.encoder] == [2, 3, 3, 3]
    assert len(net.input_stage.convs) == 1
    assert [len(s.convs) for s in net.decoder] == [3, 3, 2, 1]
    conv = net.encoder[0].convs[0][0]
    assert conv.kernel_size == (5, 5, 5)
    assert net.down[0][0].kernel_size == (2, 2, 2) and net.down[0][0].stride == (2, 2, 2)
    assert isinstance(net.up[0][0], torch.nn.ConvTranspose3d)
    assert any(isinstance(m, torch.nn.PReLU) for m in net.modules())


def test_parameter_count_of_the_paper_configuration():
    # Milletari et al. 2016, Fig. 2 (the paper states no total): computed layer by layer.
    # 5x5x5 conv c->c': 125*c*c' + c' (with bias, no normalisation); PReLU: one slope per channel.
    conv5 = lambda ci, co: 125 * ci * co + co  # noqa: E731
    conv2 = lambda ci, co: 8 * ci * co + co  # noqa: E731  (2x2x2 down- and up-convolutions)

    def stage(c, n, c_in=None):  # n convs + n PReLU (n-1 inside, 1 after the residual addition)
        return conv5(c_in or c, c) + (n - 1) * conv5(c, c) + n * c

    total = stage(16, 1, c_in=1)
    for c, n in zip((32, 64, 128, 256), (2, 3, 3, 3)):
        total += conv2(c // 2, c) + c + stage(c, n)
    # decompression: up-conv to half the width (+PReLU), concat with the skip -> width w, n convs
    for c_below, w, n in ((256, 256, 3), (256, 128, 3), (128, 64, 2), (64, 32, 1)):
        total += conv2(c_below, w // 2) + w // 2 + stage(w, n)
    total += 32 * 2 + 2  # final 1x1x1 conv to 2 classes
    with torch.device("meta"):
        net = VNet(1, 2, 3)
    assert count_params(net) == total == 65_175_314


def test_gradient_flow():
    assert_gradient_flow(VNet(1, 2, 3, **TINY), torch.randn(2, 1, 8, 8, 8))
    assert_gradient_flow(VNet(1, 2, 3, **TINY, norm="instance"), torch.randn(2, 1, 8, 8, 8))


def test_bad_config():
    with pytest.raises(MedsegError):
        VNet(1, 2, 3, encoder_convs=(1, 2), decoder_convs=(1, 1))


def test_onnx(tmp_path):
    torch.manual_seed(0)
    assert_onnx_matches(VNet(1, 2, 3, **TINY), tmp_path, (1, 1, 16, 16, 16), [(1, 1, 9, 12, 17)])
