"""FCN-8s: bilinear initialisation, shapes for any size, parameter count, gradient flow, ONNX."""

import pytest
import torch
import torch.nn.functional as F

from medseg.errors import MedsegError
from medseg.nets import NETWORKS, create_network
from medseg.nets.fcn import bilinear_kernel
from medseg.nets.meta import count_parameters

from _netcheck import assert_gradient_flow, assert_onnx_matches

LIGHT = dict(fc_channels=64, fc_kernel=3)  # the CPU variant keeps the tests fast


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("factor", [2, 8])
def test_transposed_conv_initialised_to_bilinear_interpolation(factor):
    x = torch.randn(1, 3, 6, 7)
    up = F.conv_transpose2d(x, bilinear_kernel(3, 2 * factor), stride=factor, padding=factor // 2)
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert up.shape == ref.shape
    b = factor // 2  # the border differs: interpolate clamps, the transposed conv sees zeros beyond
    torch.testing.assert_close(up[..., b:-b, b:-b], ref[..., b:-b, b:-b], atol=1e-6, rtol=0)
    assert not torch.allclose(up, ref)


def test_network_upsamplers_start_bilinear_and_scores_zero():
    net = create_network("fcn8s", 1, 3, 2, **LIGHT)
    d = net.decoder
    for up in (d.upscore2, d.upscore_pool4):
        assert up.weight.requires_grad  # learned (paper section 4.3)
        assert torch.equal(up.weight, bilinear_kernel(3, 4))
    assert torch.equal(dict(net.named_buffers())["decoder.upscore8_weight"], bilinear_kernel(3, 16))  # fixed
    assert "decoder.upscore8_weight" not in dict(net.named_parameters())
    for conv in (d.score_fr, d.score_pool4, d.score_pool3):
        assert not conv.weight.any()  # zero-initialised scoring layers (section 4.1)
    with torch.no_grad():
        assert not net.eval()(torch.randn(1, 1, 40, 40)).any()


@pytest.mark.parametrize("shape", [(1, 1, 37, 45), (2, 1, 5, 70)])
def test_output_shape_any_size(shape):
    net = create_network("fcn8s", 1, 3, 2, **LIGHT).eval()
    assert net.size_divisor == 32
    with torch.no_grad():
        assert net(torch.randn(shape)).shape == (shape[0], 3, *shape[2:])


@pytest.mark.slow  # builds the 134M-parameter model (~2 s on an idle core, more under load)
def test_faithful_default_runs_at_64():
    # default = the paper's fc6 7×7×4096, fc7 4096
    net = create_network("fcn8s", 3, 2, 2).eval()
    assert net.decoder.fc6.kernel_size == (7, 7) and net.decoder.fc6.out_channels == 4096
    with torch.no_grad():
        assert net(torch.randn(1, 3, 33, 64)).shape == (1, 2, 33, 64)


def test_parameter_count_voc_fcn8s():
    # Source: Long et al. CVPR 2015 Table 1 lists FCN-VGG16 with 134M parameters; exact value from the
    # layer shapes of the reference prototxt voc-fcn8s (21 classes): VGG-16 convs 14,714,688;
    # fc6 7·7·512·4096+4096 = 102,764,544; fc7 4096·4096+4096 = 16,781,312; score_fr 4096·21+21 = 86,037;
    # score_pool4 512·21+21 = 10,773; score_pool3 256·21+21 = 5,397; upscore2 and upscore_pool4
    # 4·4·21·21 = 7,056 each (no bias). upscore8 (16·16·21·21 = 112,896) is fixed bilinear in the paper
    # (lr_mult 0), kept here as a buffer and not counted.
    expected = 14_714_688 + 102_764_544 + 16_781_312 + 86_037 + 10_773 + 5_397 + 2 * 7_056
    assert expected == 134_376_863
    assert count_parameters(create_network, "fcn8s", 3, 21, 2) == expected
    assert round(expected / 1e6) == 134


def test_gradient_flow():
    net = create_network("fcn8s", 1, 2, 2, zero_init_score=False, dropout=0.0, **LIGHT)
    assert_gradient_flow(net, torch.randn(2, 1, 64, 64))


def test_resnet_encoder_and_errors():
    net = create_network("fcn8s", 4, 3, 2, encoder="resnet18", **LIGHT).eval()
    assert net.decoder.score_pool3.in_channels == 128 and net.decoder.score_pool4.in_channels == 256
    with torch.no_grad():
        assert net(torch.randn(1, 4, 35, 50)).shape == (1, 3, 35, 50)
    with pytest.raises(MedsegError, match="stride 32"):
        create_network("fcn8s", 1, 2, 2, encoder="resnet18", encoder_options={"output_stride": 16})
    with pytest.raises(MedsegError, match="spatial_dims"):
        create_network("fcn8s", 1, 2, 3)
    with pytest.raises(MedsegError, match="no option"):
        create_network("fcn8s", 1, 2, 2, depth=3)
    assert NETWORKS.entry("fcn8s").metadata["dims"] == (2,)


def test_onnx_export_matches(tmp_path):
    net = create_network("fcn8s", 1, 2, 2, zero_init_score=False, **LIGHT)
    assert_onnx_matches(net, tmp_path, (1, 1, 64, 64), test_shapes=[(1, 1, 37, 45)])


def test_fc6_training_path_equals_the_convolution():
    # training computes fc6 as im2col + matmul (oneDNN's conv backward is ~30x slower on small maps)
    import torch

    from medseg.nets import create_network

    torch.manual_seed(0)
    decoder = next(m for m in create_network("fcn8s", 1, 2, 2).modules() if hasattr(m, "_fc6")).train()
    x = torch.randn(2, 512, 5, 6, requires_grad=True)
    fast = decoder._fc6(x)
    fast_grads = torch.autograd.grad(fast.square().sum(), [x, decoder.fc6.weight, decoder.fc6.bias])
    conv = decoder.fc6(x)
    conv_grads = torch.autograd.grad(conv.square().sum(), [x, decoder.fc6.weight, decoder.fc6.bias])
    torch.testing.assert_close(fast, conv, rtol=1e-4, atol=1e-4)
    for g, h in zip(fast_grads, conv_grads):
        torch.testing.assert_close(g, h, rtol=1e-3, atol=1e-3 * h.abs().max().item())
