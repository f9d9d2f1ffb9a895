"""Losses: values on easy cases, ignore label (zero gradient), deep supervision, VAE terms, regions."""

import pytest
import torch

from medseg.errors import MedsegError
from medseg.losses import (IGNORE_INDEX, LOSSES, NetworkLoss, build_loss, deep_supervision_weights,
                           downsample_target, region_targets, soft_dice)


def _perfect_logits(target: torch.Tensor, classes: int, scale: float = 30.0) -> torch.Tensor:
    onehot = torch.nn.functional.one_hot(target[:, 0].clamp_min(0), classes).movedim(-1, 1).float()
    return (onehot * 2 - 1) * scale


@pytest.mark.parametrize("name", ["dice", "dice_ce", "tversky_ce", "vnet_dice", "ce"])
def test_perfect_prediction_has_near_zero_loss(name):
    target = torch.randint(0, 3, (2, 1, 8, 8))
    loss = build_loss(name)(_perfect_logits(target, 3), target)
    assert float(loss) < 1e-3


def test_wrong_prediction_has_large_dice_loss():
    target = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    target[..., 2:6, 2:6] = 1
    logits = _perfect_logits(1 - target, 2)
    assert float(build_loss("dice")(logits, target)) > 0.99


@pytest.mark.parametrize("name,options,channels", [
    ("dice_ce", {}, 3), ("dice", {"batch_dice": True}, 3), ("vnet_dice", {}, 3), ("ce", {}, 3), ("tversky_ce", {}, 3),
    ("region", {"regions": [[1, 2], [2]]}, 2),
])
def test_ignored_voxels_get_exactly_zero_gradient(name, options, channels):
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 1, 6, 7, 5))
    ignored = torch.rand(target.shape) < 0.4
    target[ignored] = IGNORE_INDEX
    logits = torch.randn(2, channels, 6, 7, 5, requires_grad=True)
    loss = build_loss(name, **options)(logits, target)
    loss.backward()
    grad = logits.grad
    mask = ignored.expand_as(grad)
    assert torch.count_nonzero(grad[mask]) == 0
    assert torch.count_nonzero(grad[~mask]) > 0
    # and changing the logits at ignored voxels does not change the loss
    other = logits.detach().clone()
    other[mask] = torch.randn(int(mask.sum()))
    assert torch.allclose(build_loss(name, **options)(other, target), loss.detach(), atol=1e-6)


def test_fully_ignored_batch_gives_zero_ce():
    target = torch.full((1, 1, 4, 4), IGNORE_INDEX)
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    loss = build_loss("ce")(logits, target)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.count_nonzero(logits.grad) == 0


def test_tversky_index_is_the_dice_at_equal_weights_and_charges_missed_voxels_more_above():
    torch.manual_seed(0)
    probabilities, truth = torch.rand(2, 1, 6, 6), (torch.rand(2, 1, 6, 6) > 0.5).float()
    assert torch.allclose(soft_dice(probabilities, truth, false_negative_weight=0.5), soft_dice(probabilities, truth))
    truth = torch.zeros(1, 1, 1, 10)
    truth[..., 2:8] = 1
    missed, extra = truth.clone(), truth.clone()
    missed[..., 2:4] = 0  # two voxels missed
    extra[..., 0:2] = 1  # two voxels too many
    dice = [float(soft_dice(p, truth)) for p in (missed, extra)]
    tversky = [float(soft_dice(p, truth, false_negative_weight=0.7)) for p in (missed, extra)]
    assert tversky[1] - tversky[0] > dice[1] - dice[0] + 0.1  # 0.168 against Dice's 0.057


def test_vnet_dice_uses_squared_denominator():
    p = torch.full((1, 1, 4), 0.5)
    g = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
    plain = soft_dice(p, g, smooth=0.0)
    squared = soft_dice(p, g, smooth=0.0, squared=True)
    assert torch.isclose(plain, torch.tensor(2 * 1.0 / (2.0 + 2.0))).all()
    assert torch.isclose(squared, torch.tensor(2 * 1.0 / (1.0 + 2.0))).all()


def test_deep_supervision_weights_halve_and_sum_to_one():
    w = deep_supervision_weights(4)
    assert abs(sum(w) - 1) < 1e-12
    assert all(abs(a / b - 2) < 1e-12 for a, b in zip(w, w[1:]))


def test_deep_supervision_combines_levels_with_downsampled_targets():
    target = torch.randint(0, 2, (2, 1, 16, 16))
    base = build_loss("dice_ce")
    logits = torch.randn(2, 2, 16, 16)
    coarse = torch.randn(2, 2, 8, 8)
    out = {"logits": logits, "deep_supervision": [coarse]}
    w = deep_supervision_weights(2)
    expected = w[0] * base.base(logits, target) + w[1] * base.base(coarse, downsample_target(target, (8, 8)))
    assert torch.isclose(base(out, target), expected)


def test_max_downsampling_keeps_thin_foreground():
    target = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    target[0, 0, 3, :] = 1  # a one-pixel line
    assert downsample_target(target, (4, 4), "max").sum() == 4
    with pytest.raises(MedsegError):
        downsample_target(target, (4, 4), "bogus")


def test_vae_terms_follow_myronenko_weights():
    image = torch.randn(1, 1, 8, 8)
    target = torch.randint(0, 2, (1, 1, 8, 8))
    logits = torch.randn(1, 2, 8, 8)
    out = {"logits": logits, "reconstruction": torch.zeros_like(image),
           "mu": torch.ones(1, 4), "logvar": torch.zeros(1, 4)}
    loss = build_loss("dice_ce")
    seg = loss.base(logits, target)
    # Myronenko: L_KL = mean(mu² + sigma² - log sigma² - 1) = 1 + 1 - 0 - 1 = 1 here
    expected = seg + 0.1 * (image ** 2).mean() + 0.1 * 1.0
    assert torch.isclose(loss(out, target, image), expected)
    with pytest.raises(MedsegError):
        loss(out, target)


def test_region_targets_are_nested():
    target = torch.tensor([[[[0, 1, 2, 3]]]])
    maps = region_targets(target, [[1, 2, 3], [2, 3], [3]])
    assert maps[0, :, 0, 0].tolist() == [0, 0, 0]
    assert maps[0, :, 0, 3].tolist() == [1, 1, 1]
    assert maps[0, :, 0, 1].tolist() == [1, 0, 0]


def test_registry_lists_losses_and_rejects_unknown():
    assert {"dice", "dice_ce", "tversky_ce", "vnet_dice", "region", "ce"} <= set(LOSSES.names())
    with pytest.raises(MedsegError, match="unknown loss"):
        build_loss("nope")
    assert isinstance(build_loss("dice"), NetworkLoss)
