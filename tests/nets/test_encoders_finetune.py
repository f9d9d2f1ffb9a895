"""Fine-tuning helpers: freezing, unfreezing and staged unfreezing (requires_grad flags)."""

import pytest
import torch

from medseg.errors import MedsegError
from medseg.nets import create_network
from medseg.nets.finetune import StagedUnfreezing, freeze, freeze_encoder, set_frozen_batchnorm_eval, unfreeze


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def net():
    return create_network("encoder_unet", 1, 2, 2, encoder="resnet18", decoder_channels=(16, 8, 8, 8, 8))


def _trainable(model, prefix=""):
    return {n for n, p in model.named_parameters() if p.requires_grad and n.startswith(prefix)}


def test_freeze_encoder_and_unfreeze(net):
    everything = {n for n, _ in net.named_parameters()}
    changed = freeze_encoder(net)
    assert set(changed) == {n for n in everything if n.startswith("encoder.")}
    assert _trainable(net) == {n for n in everything if not n.startswith("encoder.")}
    # a frozen encoder gets no gradient, the decoder does
    net(torch.randn(2, 1, 32, 32)).sum().backward()
    assert all(p.grad is None for p in net.encoder.parameters())
    assert all(p.grad is not None for p in net.decoder.parameters())
    unfreeze(net)
    assert _trainable(net) == everything
    freeze(net)
    assert not _trainable(net)


def test_frozen_batchnorm_keeps_statistics(net):
    freeze_encoder(net)
    net.train()
    assert set_frozen_batchnorm_eval(net) == 20  # resnet18 has 20 BN layers
    before = net.encoder.bn1.running_mean.clone()
    net(torch.randn(2, 1, 32, 32))
    assert torch.equal(net.encoder.bn1.running_mean, before)
    assert net.decoder.blocks[0].conv1[1].training


def test_staged_unfreezing_schedule(net):
    schedule = StagedUnfreezing(net, [(0, "decoder"), (500, "encoder.layer4"), (1000, "all")])
    decoder = {n for n, _ in net.named_parameters() if not n.startswith("encoder.")}
    assert _trainable(net) == decoder
    assert schedule(499) == []
    newly = schedule(500)
    assert newly and all(n.startswith("encoder.layer4.") for n in newly)
    assert _trainable(net) == decoder | _trainable(net, "encoder.layer4.")
    assert not _trainable(net, "encoder.layer3.")
    assert schedule(750) == []
    schedule(1200)
    assert _trainable(net) == {n for n, _ in net.named_parameters()}


def test_staged_unfreezing_in_a_training_loop(net):
    # torch.optim skips parameters whose .grad is None; the update below follows that rule (plain SGD,
    # written out because the first torch.optim step imports TorchDynamo, seconds on these machines)
    schedule = StagedUnfreezing(net, [(0, "decoder"), (1, "all")])
    w = net.encoder.conv1.weight.detach().clone()
    for it in range(2):
        schedule(it)
        net.zero_grad(set_to_none=True)
        net(torch.randn(2, 1, 32, 32)).square().mean().backward()
        with torch.no_grad():
            for p in net.parameters():
                if p.grad is not None:
                    p -= 0.1 * p.grad
        assert torch.equal(net.encoder.conv1.weight, w) == (it == 0)


def test_bad_targets(net):
    with pytest.raises(MedsegError, match="encoder.layer9"):
        StagedUnfreezing(net, [(0, "decoder"), (10, "encoder.layer9")])
    with pytest.raises(MedsegError, match="at least one"):
        StagedUnfreezing(net, [])
    with pytest.raises(MedsegError, match="no 'encoder'"):
        freeze_encoder(torch.nn.Linear(2, 2))
