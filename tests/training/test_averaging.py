"""The weight average: its update rule, its warm-up, and that a model folder predicts with it."""

import pytest
import torch
from safetensors.torch import load_file

from medseg.datasets import make_vessels2d
from medseg.errors import MedsegError
from medseg.model_folder import load_model
from medseg.training.averaging import WeightAverage
from medseg.training.config import TrainingConfig
from medseg.training.loop import train


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))


def test_update_follows_the_warmed_up_decay():
    model = _net()
    average = WeightAverage(model, decay=0.99)
    start = average.model[0].weight.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model[1].num_batches_tracked.fill_(7)
    average.update(model)
    first = 2 / 11  # warm-up decay of update 1: (1 + 1) / (10 + 1)
    torch.testing.assert_close(average.model[0].weight, first * start + (1 - first) * model[0].weight)
    assert int(average.model[1].num_batches_tracked) == 7  # integer buffers are copied
    for _ in range(1000):
        average.update(model)
    assert average.current_decay() == 0.99  # the warm-up ends at the configured decay
    torch.testing.assert_close(average.model[0].weight, model[0].weight)  # a constant network is its own average
    assert not any(p.requires_grad for p in average.model.parameters())


def test_average_lags_behind_a_moving_network():
    model = _net()
    average = WeightAverage(model, decay=0.9)
    average.updates = 1000  # past the warm-up
    values = []
    for step in range(1, 4):
        with torch.no_grad():
            model[0].bias.fill_(float(step))
        average.update(model)
        values.append(float(average.model[0].bias[0]))
    start = float(_net()[0].bias[0].detach())
    expected, value = [], start
    for step in range(1, 4):
        value = 0.9 * value + 0.1 * step
        expected.append(value)
    assert values == pytest.approx(expected)


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_decay_outside_the_open_interval_is_an_error(decay):
    with pytest.raises(ValueError):
        WeightAverage(_net(), decay)
    with pytest.raises(MedsegError, match="weight-average"):
        TrainingConfig(iterations=1, weight_average=decay)


def test_model_folder_holds_the_average(tmp_path):
    dataset = make_vessels2d(tmp_path / "vessels", cases=3, seed=0, size=48)
    config = TrainingConfig(network_options={"features": 4, "depth": 2}, patch_size=(32, 32), batch_size=2,
                            iterations=5, val_every=5, threads=1, weight_average=0.5)
    train(dataset, tmp_path / "m", config, val_cases=["case_002"], progress=False)
    saved = load_file(tmp_path / "m" / "model.safetensors")
    checkpoint = torch.load(tmp_path / "m" / "checkpoint_last.pt", weights_only=True)
    assert checkpoint["extra"]["average_updates"] == 5
    for key, value in saved.items():
        torch.testing.assert_close(checkpoint["averaged_model"][key], value)
    trained = checkpoint["model"]
    assert any(not torch.equal(trained[k], saved[k]) for k in saved if saved[k].is_floating_point())
    # a checkpoint predicts with the average too (medseg predict --checkpoint best)
    _, network = load_model(tmp_path / "m", "best")
    best = torch.load(tmp_path / "m" / "checkpoint_best.pt", weights_only=True)["averaged_model"]
    for key, value in network.state_dict().items():
        torch.testing.assert_close(value, best[key])
