import pytest
import torch

from medseg.errors import MedsegError
from medseg.nets import create_network
from medseg.nets.patch_cnn import PatchCNN

from _netcheck import assert_gradient_flow, assert_onnx_matches, count_params


@pytest.mark.parametrize("patch_size,features,kernel", [(25, (8, 8), 4), (27, (4, 8), 4), (13, (4,), 3)])
def test_dense_map_equals_naive_patch_by_patch(patch_size, features, kernel):
    torch.manual_seed(0)
    net = PatchCNN(2, 3, patch_size=patch_size, features=features, kernel_size=kernel, fc_features=16).eval()
    image = torch.randn(2, 2, 19, 14)
    with torch.no_grad():
        dense = net(image)
    naive = net.predict_naive(image, batch_size=50)
    assert dense.shape == naive.shape == (2, 3, 19, 14)
    torch.testing.assert_close(dense, naive, rtol=1e-5, atol=1e-5)


def test_tiny_image_smaller_than_half_patch():
    net = PatchCNN(1, 2, patch_size=13, features=(4,), kernel_size=3, fc_features=8).eval()
    image = torch.randn(1, 1, 5, 4)
    with torch.no_grad():
        torch.testing.assert_close(net(image), net.predict_naive(image), rtol=1e-5, atol=1e-5)


def test_naive_centre_pixel_is_the_patch_classification():
    torch.manual_seed(0)
    net = PatchCNN(1, 2, patch_size=13, features=(4,), kernel_size=3, fc_features=8).eval()
    image = torch.randn(1, 1, 30, 30)
    with torch.no_grad():
        patch = image[:, :, 10:23, 5:18]  # centred on (16, 11)
        torch.testing.assert_close(net.classify_patches(patch)[0], net(image)[0, :, 16, 11], rtol=1e-5, atol=1e-5)


def test_default_configuration_dense_equals_naive():
    """The default network (25² window) too; benchmarks/patch_cnn_speed.py times both forms."""
    torch.manual_seed(0)
    net = create_network("patch_cnn", 1, 2, 2).eval()
    image = torch.randn(1, 1, 40, 36)
    with torch.no_grad():
        dense = net(image)
    torch.testing.assert_close(dense, net.predict_naive(image), rtol=1e-4, atol=1e-5)


def test_parameter_count():
    # Default configuration, computed layer by layer: conv 4x4 1->32, pool, conv 4x4 32->64, pool
    # (25 -> 22 -> 11 -> 8 -> 4), fully connected 64*4*4 -> 128 written as a 4x4 conv, classifier 128 -> 2.
    expected = (16 * 1 * 32 + 32) + (16 * 32 * 64 + 64) + (16 * 64 * 128 + 128) + (128 * 2 + 2)
    net = create_network("patch_cnn", 1, 2, 2)
    assert net.fc_kernel == 4
    assert count_params(net) == expected == 164_834


def test_bad_options():
    with pytest.raises(MedsegError):
        PatchCNN(1, 2, patch_size=24)
    with pytest.raises(MedsegError):
        PatchCNN(1, 2, patch_size=9, features=(8, 8, 8))
    with pytest.raises(MedsegError):
        create_network("patch_cnn", 1, 2, 3)


def test_gradient_flow():
    assert_gradient_flow(PatchCNN(1, 2, patch_size=13, features=(4, 4), kernel_size=2, fc_features=8),
                         torch.randn(2, 1, 16, 16))


def test_onnx(tmp_path):
    torch.manual_seed(0)
    net = PatchCNN(1, 2, patch_size=13, features=(4, 4), kernel_size=2, fc_features=8)
    assert_onnx_matches(net, tmp_path, (1, 1, 32, 32), [(2, 1, 17, 25)])
