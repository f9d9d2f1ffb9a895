import pytest
import torch

from medseg.errors import MedsegError
from medseg.nets import create_network
from medseg.nets.unet_plus_plus import UNetPlusPlus, pruning_report

from _netcheck import assert_gradient_flow, assert_onnx_matches, count_params


@pytest.mark.parametrize("dims,shape", [(2, (2, 1, 32, 32)), (2, (1, 1, 19, 27)), (3, (1, 1, 16, 16, 16)),
                                        (3, (1, 1, 9, 11, 16))])
def test_output_shape_every_level(dims, shape):
    net = create_network("unet_plus_plus", 1, 3, dims, features=4, depth=3).eval()
    with torch.no_grad():
        for level in (1, 2, 3):
            net.set_prune_level(level)
            assert net(torch.randn(shape)).shape == (shape[0], 3, *shape[2:])


def test_train_mode_deep_supervision_full_resolution():
    net = UNetPlusPlus(1, 2, 2, features=4, depth=3).train()
    out = net(torch.randn(2, 1, 17, 24))
    assert out["logits"].shape == (2, 2, 17, 24)
    assert len(out["deep_supervision"]) == 2
    assert all(t.shape == (2, 2, 17, 24) for t in out["deep_supervision"])


def test_pruned_output_equals_branch_of_full_network():
    # Instance norm and no dropout: train and eval compute the same function, so the pruned network's
    # output must equal the corresponding X^{0,L} branch of the full network.
    torch.manual_seed(0)
    net = UNetPlusPlus(1, 2, 2, features=4, depth=3)
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        full = net.train()(x)
        net.eval()
        branches = {3: full["logits"], 2: full["deep_supervision"][0], 1: full["deep_supervision"][1]}
        for level, expected in branches.items():
            net.set_prune_level(level)
            torch.testing.assert_close(net(x), expected)


def test_pruned_inference_computes_only_the_subnetwork():
    net = UNetPlusPlus(1, 2, 2, features=4, depth=3).eval()
    called = set()
    for key, module in net.nodes.items():
        module.register_forward_hook(lambda m, i, o, key=key: called.add(key))
    net.set_prune_level(1)
    with torch.no_grad():
        net(torch.randn(1, 1, 16, 16))
    assert called == {"x0_0", "x1_0", "x0_1"}


def test_ensemble_mode_averages_branches():
    torch.manual_seed(0)
    net = UNetPlusPlus(1, 2, 2, features=4, depth=2)
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        full = net.train()(x)
        net.ensemble = True
        net.eval()
        torch.testing.assert_close(net(x), (full["logits"] + full["deep_supervision"][0]) / 2)


def test_prune_level_errors():
    net = UNetPlusPlus(1, 2, 2, features=4, depth=2)
    with pytest.raises(MedsegError):
        net.set_prune_level(3)
    with pytest.raises(MedsegError):
        UNetPlusPlus(1, 2, 2, features=4, depth=2, deep_supervision=False).set_prune_level(1)


def test_parameter_count_of_the_paper_configuration():
    # Zhou et al., DLMIA 2018, Table 1 (and TMI 2020, Table): UNet++ with filters 32, 64, 128, 256, 512,
    # two 3x3 conv + ReLU per node, 2x2 transposed convs, 1 input / 1 output channel: 9.04M parameters
    # (U-Net 7.76M on the same settings). Pruned sub-networks (TMI 2020, pruning figure): L1 0.1M,
    # L2 0.5M, L3 2.2M, L4 9.0M.
    net = UNetPlusPlus(1, 1, 2, features=32, depth=4, norm="none", activation="relu")
    assert count_params(net) == 9_041_700  # with the 4 deep-supervision heads (3 x 33 more than without)
    assert [round(net.parameters_used(level) / 1e6, 1) for level in (1, 2, 3, 4)] == [0.1, 0.5, 2.2, 9.0]
    unet = create_network("unet", 1, 1, 2, features=32, depth=4, norm="none", activation="relu")
    assert round(count_params(unet) / 1e6, 2) == 7.76


def test_pruning_report_levels():
    rows = pruning_report(UNetPlusPlus(1, 2, 2, features=8, depth=3), (1, 1, 64, 64), repeats=3)
    assert [r["level"] for r in rows] == [1, 2, 3]
    params = [r["params"] for r in rows]
    assert params == sorted(params) and params[0] < params[-1] / 5
    assert all(r["seconds"] > 0 for r in rows)


def test_gradient_flow_2d_3d():
    assert_gradient_flow(UNetPlusPlus(1, 2, 2, features=4, depth=2), torch.randn(2, 1, 16, 16))
    assert_gradient_flow(UNetPlusPlus(1, 2, 3, features=4, depth=2, norm="batch"), torch.randn(2, 1, 8, 8, 8))


def test_onnx_full_and_pruned(tmp_path):
    torch.manual_seed(0)
    net = UNetPlusPlus(1, 2, 2, features=4, depth=2)
    assert_onnx_matches(net, tmp_path, (1, 1, 32, 32), [(2, 1, 21, 19)])
    net.set_prune_level(1)
    (tmp_path / "pruned").mkdir()
    assert_onnx_matches(net, tmp_path / "pruned", (1, 1, 32, 32), [(1, 1, 13, 30)])
    assert (tmp_path / "pruned" / "net.onnx").stat().st_size < (tmp_path / "net.onnx").stat().st_size
