import numpy as np
import pytest

from medseg.planning.cost import unet_step_cost
from medseg.planning.topology import divisibility, network_topology


def test_isotropic_pools_all_axes_down_to_min_feature_map():
    strides, kernels = network_topology((1.0, 1.0, 1.0), (64, 64, 64))
    assert strides == [[1, 1, 1]] + [[2, 2, 2]] * 4  # 64 -> 4
    assert all(k == [3, 3, 3] for k in kernels)
    assert divisibility(strides) == [16, 16, 16]


def test_thick_axis_waits_until_spacing_comparable():
    # 4 mm slices, 1 mm in-plane: in-plane pooled twice (1 -> 2 -> 4 mm) before the slice axis joins
    strides, kernels = network_topology((4.0, 1.0, 1.0), (32, 128, 128))
    assert strides[1] == [1, 2, 2] and strides[2] == [1, 2, 2]
    assert strides[3] == [2, 2, 2]
    assert kernels[0] == [1, 3, 3] and kernels[1] == [1, 3, 3]
    assert kernels[2] == [3, 3, 3]  # spacing now 4, 4, 4


def test_short_axis_stops_pooling_but_others_continue():
    strides, _ = network_topology((1.0, 1.0, 1.0), (8, 128, 128))
    assert [s[0] for s in strides] == [1, 2] + [1] * (len(strides) - 2)
    assert np.prod([s[1] for s in strides]) == 32


def test_max_levels_respected():
    strides, kernels = network_topology((1.0, 1.0), (4096, 4096))
    assert len(strides) == 7 and len(kernels) == 7


def test_cost_grows_with_patch_batch_and_width():
    s, k = network_topology((1.0, 1.0, 1.0), (32, 32, 32))
    base = unet_step_cost((32, 32, 32), 2, 16, s, k)
    assert unet_step_cost((32, 32, 32), 4, 16, s, k)["flops"] == pytest.approx(2 * base["flops"])
    wide = unet_step_cost((32, 32, 32), 2, 32, s, k)
    assert 3.5 < wide["flops"] / base["flops"] < 4.1  # ~quadratic in width
    assert wide["activation_bytes"] == pytest.approx(2 * base["activation_bytes"], rel=0.05)


def test_cost_counts_a_single_conv_exactly():
    # one level, 1 -> 4 -> 4 channels, 3x3: forward = 2*9*1*4 + 2*9*4*4 per voxel (+ head 2*4*2)
    c = unet_step_cost((10, 10), 1, 4, [[1, 1]], [[3, 3]], in_channels=1, num_classes=2)
    assert c["flops"] == pytest.approx(3 * 100 * (2 * 9 * 4 + 2 * 9 * 16 + 2 * 4 * 2))
