"""SegNet: un-pooling by indices, shapes, parameter count, gradient flow, ONNX."""

import pytest
import torch
import torch.nn.functional as F

from medseg.errors import MedsegError
from medseg.nets import create_network
from medseg.nets import segnet as segnet_module
from medseg.nets.segnet import max_unpool2d
from medseg.nets.meta import count_parameters

from _netcheck import assert_gradient_flow, assert_onnx_matches


pytestmark = pytest.mark.usefixtures("one_thread")


def test_max_unpool_equals_torch():
    x = torch.randn(2, 3, 8, 10)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    out = max_unpool2d(y, idx, (8, 10))
    assert torch.equal(out, F.max_unpool2d(y, idx, 2, output_size=(8, 10)))
    # the maxima sit back at their positions, everything else is zero
    assert torch.equal(out[out != 0], x[out != 0]) and (out != 0).sum() == y.numel()


def test_decoder_uses_the_encoders_pooling_indices(monkeypatch):
    net = create_network("segnet", 1, 2, 2).eval()
    x = torch.randn(1, 1, 32, 32)
    feats, indices = net.encoder.forward_with_indices(x)
    assert len(indices) == 5 and [tuple(i.shape[-2:]) for i in indices] == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    seen = []

    def spy(v, idx, size):
        seen.append(idx)
        return max_unpool2d(v, idx, size)

    monkeypatch.setattr(segnet_module, "max_unpool2d", spy)
    with torch.no_grad():
        net(x)
    assert len(seen) == 5 and all(torch.equal(a, b) for a, b in zip(seen, reversed(indices)))


@pytest.mark.parametrize("shape", [(1, 1, 37, 45), (2, 1, 7, 9)])
def test_output_shape_any_size(shape):
    net = create_network("segnet", 1, 3, 2).eval()
    assert net.size_divisor == 32
    with torch.no_grad():
        assert net(torch.randn(shape)).shape == (shape[0], 3, *shape[2:])


def test_parameter_count_camvid_configuration():
    # Source: Badrinarayanan et al. TPAMI 2017, Table 6 "SegNet ... 29.5M" parameters (CamVid, 11 classes),
    # Caffe model segnet_train.prototxt: encoder = VGG-16 convs + BN (14,714,688 + 2·4,224 = 14,723,136);
    # decoder mirror: 3×(512→512) + 2×(512→512) + (512→256) + 2×(256→256) + (256→128) + (128→128)
    # + (128→64) + (64→64) 3×3 convs with bias, each + BN (2·C) = 14,719,872; conv1_1_D 64→11: 6,347.
    expected = 14_723_136 + 14_719_872 + 64 * 9 * 11 + 11
    assert count_parameters(create_network, "segnet", 3, 11, 2) == expected == 29_449_355
    assert round(expected / 1e6, 2) == 29.45  # the paper's 29.5M


def test_gradient_flow_and_multichannel():
    net = create_network("segnet", 4, 2, 2)
    assert_gradient_flow(net, torch.randn(2, 4, 32, 32))


def test_needs_a_vgg_encoder():
    with pytest.raises(MedsegError, match="pooling indices"):
        create_network("segnet", 1, 2, 2, encoder="resnet18")
    net = create_network("segnet", 1, 2, 2, encoder="vgg16")  # without BN in the encoder
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.encoder.modules())


class _PoolUnpool(torch.nn.Module):
    def forward(self, x):
        y, idx = F.max_pool2d(x, 2, return_indices=True)
        return max_unpool2d(y * 2, idx, (x.shape[-2], x.shape[-1]))


def test_unpool_onnx_export_matches(tmp_path):
    # the operation nn.MaxUnpool2d cannot export; the full network below is slow (117 MB of weights)
    assert_onnx_matches(_PoolUnpool(), tmp_path, (1, 3, 8, 8), test_shapes=[(2, 3, 12, 6)], atol=1e-6)


@pytest.mark.slow
def test_onnx_export_matches(tmp_path):
    assert_onnx_matches(create_network("segnet", 1, 2, 2), tmp_path, (1, 1, 32, 32), test_shapes=[(1, 1, 37, 45)])
