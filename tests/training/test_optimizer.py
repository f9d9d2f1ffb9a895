"""The run's optimiser: fused where the device has the kernel, and the same updates as PyTorch's per-tensor loop."""

import copy

import pytest
import torch

from medseg.nets import create_network
from medseg.planning.machine import fused_optimizer
from medseg.training import TrainingConfig
from medseg.training.step import build_optimizer


@pytest.mark.parametrize("device, fused", [("cpu", True), ("cuda", True), ("cuda:1", True), ("mps", False)])
def test_fused_where_pytorch_has_the_kernel(device, fused):
    assert fused_optimizer(device) is fused


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_the_fused_optimiser_updates_as_the_loop_does(optimizer):
    torch.manual_seed(0)
    model = create_network("unet", 1, 2, 2, features=4, depth=2)
    twin, start = copy.deepcopy(model), copy.deepcopy(model)
    config = TrainingConfig(optimizer=optimizer, learning_rate=1e-2, weight_decay=1e-2)
    fused = build_optimizer(model, config)
    assert fused.param_groups[0]["fused"]
    settings = ("lr", "weight_decay", "betas", "eps", "momentum", "nesterov")
    looped = type(fused)(twin.parameters(), **{k: v for k, v in fused.defaults.items() if k in settings})
    assert not looped.param_groups[0]["fused"]
    image = torch.randn(2, 1, 16, 16)
    for _ in range(3):
        for net, opt in ((model, fused), (twin, looped)):
            opt.zero_grad(set_to_none=True)
            net(image).square().mean().backward()
            opt.step()
    assert not all(torch.equal(a, b) for a, b in zip(model.parameters(), start.parameters()))
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
