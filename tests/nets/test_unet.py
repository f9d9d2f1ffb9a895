import pytest
import torch

from medseg.errors import MedsegError
from medseg.nets import NETWORKS, create_network
from medseg.nets.unet import UNet

from _netcheck import assert_gradient_flow, assert_onnx_matches, count_params


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (1, 1, 33, 21), (1, 1, 7, 9)])
def test_unet_2d_output_shape_any_size(shape):
    net = create_network("unet", 1, 3, 2, features=4, depth=3).eval()
    assert net.size_divisor == 8
    with torch.no_grad():
        assert net(torch.randn(shape)).shape == (shape[0], 3, *shape[2:])


@pytest.mark.parametrize("shape", [(1, 2, 16, 16, 16), (1, 2, 9, 17, 11)])
def test_unet_3d_output_shape_any_size(shape):
    net = create_network("unet", 2, 2, 3, features=4, depth=2).eval()
    with torch.no_grad():
        assert net(torch.randn(shape)).shape == (shape[0], 2, *shape[2:])


def test_unet3d_registered_as_3d_only():
    assert NETWORKS.entry("unet3d").metadata["dims"] == (3,)
    assert NETWORKS.entry("unet3d").factory is NETWORKS.entry("unet").factory
    with pytest.raises(MedsegError):
        create_network("unet3d", 1, 2, 2)


def test_anisotropic_strides_and_kernels():
    net = create_network(
        "unet3d", 1, 2, 3, features=4, depth=3,
        strides=[(1, 2, 2), (1, 2, 2), (2, 2, 2)], kernel_sizes=[(1, 3, 3), (1, 3, 3), 3, 3],
    ).eval()
    assert net.size_divisor == (2, 8, 8)
    # the finest stage has 1x3x3 kernels: no mixing across slices
    assert net.encoder[0][0][0].kernel_size == (1, 3, 3)
    with torch.no_grad():
        assert net(torch.randn(1, 1, 5, 20, 19)).shape == (1, 2, 5, 20, 19)


def test_deep_supervision_train_dict_eval_tensor():
    net = create_network("unet", 1, 2, 2, features=4, depth=3, deep_supervision=True).train()
    out = net(torch.randn(2, 1, 32, 30))
    assert out["logits"].shape == (2, 2, 32, 30)
    assert [tuple(t.shape[2:]) for t in out["deep_supervision"]] == [(16, 15), (8, 8)]  # finest first
    net.eval()
    with torch.no_grad():
        assert isinstance(net(torch.randn(1, 1, 32, 32)), torch.Tensor)


@pytest.mark.parametrize("norm", ["instance", "batch", "group"])
@pytest.mark.parametrize("upsample", ["transpose", "interp"])
def test_unet_gradient_flow(norm, upsample):
    net = UNet(1, 2, 2, features=8, depth=2, norm=norm, upsample=upsample, deep_supervision=True)
    assert_gradient_flow(net, torch.randn(2, 1, 16, 16))


def test_unet_3d_gradient_flow():
    assert_gradient_flow(UNet(1, 2, 3, features=4, depth=2, deep_supervision=True), torch.randn(2, 1, 8, 8, 8))


def test_feature_cap():
    with torch.device("meta"):
        assert UNet(1, 2, 3, features=32, depth=5).channels == [32, 64, 128, 256, 320, 320]
        assert UNet(1, 2, 2, features=32, depth=5).channels[-1] == 512


def test_parameter_count_of_the_paper_configuration():
    # Ronneberger et al. 2015, Fig. 1: 1 input channel, 64 base channels doubled to 1024 over 4 poolings,
    # two 3x3 convs (with bias, ReLU, no normalisation) per stage, 2x2 up-convolutions halving the
    # channels, 1x1 output conv to 2 classes. Computed layer by layer (weights + biases):
    # encoder 18,842,048 + decoder 12,188,480 + head 130 = 31,030,658 ("~31M" as widely quoted).
    # Same padding instead of valid convolutions does not change the count.
    net = UNet(1, 2, 2, features=64, depth=4, max_features=1024, norm="none", activation="relu")
    assert count_params(net) == 31_030_658


def test_bad_options():
    with pytest.raises(MedsegError, match="unknown option 'featurs'"):
        create_network("unet", 1, 2, 2, featurs=8)
    with pytest.raises(MedsegError):
        UNet(1, 2, 3, depth=2, strides=[2])
    with pytest.raises(MedsegError):
        UNet(1, 2, 2, norm="weird")


@pytest.mark.parametrize("dims,upsample", [(2, "interp"), (3, "transpose")])
def test_unet_onnx_matches(tmp_path, dims, upsample):
    torch.manual_seed(0)
    net = create_network("unet", 1, 2, dims, features=4, depth=2, upsample=upsample)
    if dims == 2:
        assert_onnx_matches(net, tmp_path, (1, 1, 32, 32), [(2, 1, 21, 35)])
    else:
        assert_onnx_matches(net, tmp_path, (1, 1, 16, 16, 16), [(1, 1, 9, 13, 16)])
