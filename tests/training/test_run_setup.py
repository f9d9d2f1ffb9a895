"""Run set-up decisions: the memory format and the probe that chooses it (the model restored, the choice recorded, a
clear margin), and patch fitting."""

import json

import pytest
import torch

from medseg.datasets.synthetic import make_vessels2d
from medseg.errors import MedsegError
from medseg.losses import build_loss
from medseg.nets import create_network
from medseg.training import TrainingConfig, probe, train
from medseg.training.memory_format import choose_memory_format


def _batch_norm_unet():
    torch.manual_seed(0)
    return create_network("unet", 1, 2, 2, features=4, depth=2, norm="batch")


def test_probe_restores_parameters_and_batchnorm_statistics():
    model = _batch_norm_unet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    image, label = torch.randn(2, 1, 32, 32), torch.randint(0, 2, (2, 1, 32, 32))
    name, seconds = choose_memory_format(model, build_loss("dice_ce"), image, label, 2, time_limit=1e6)
    assert name in ("contiguous", "channels_last") and set(seconds) == {"contiguous", "channels_last"}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert all(p.is_contiguous() for p in model.parameters())


def test_probe_is_skipped_for_short_runs():
    model = _batch_norm_unet()
    image, label = torch.randn(2, 1, 32, 32), torch.randint(0, 2, (2, 1, 32, 32))
    assert choose_memory_format(model, build_loss("dice_ce"), image, label, 2, iterations=5) == ("contiguous", {})


def test_channels_last_training_matches_the_loss_path_and_saves_weights(tmp_path):
    data = tmp_path / "data"
    make_vessels2d(data, cases=3, size=48, seed=0)
    losses = {}  # validation runs too (at the end), through the channels-last model
    for name in ("contiguous", "channels_last"):
        config = TrainingConfig(iterations=3, patch_size=(32, 32), batch_size=2, memory_format=name,
                                network_options={"features": 4, "depth": 2})
        out = tmp_path / name
        seen = []
        train(data, out, config, val_cases=["case_002"], progress=False,
              on_iteration=lambda i, loss: seen.append(loss))
        losses[name] = seen
        assert json.loads((out / "config.json").read_text(encoding="utf-8"))["training"]["memory_format"] == name
        assert (out / "model.safetensors").is_file()
    # the same batches and initial weights: the first loss agrees up to floating-point reordering
    assert losses["contiguous"][0] == pytest.approx(losses["channels_last"][0], rel=1e-4)


def test_unknown_memory_format_is_rejected():
    with pytest.raises(MedsegError, match="memory format"):
        TrainingConfig(iterations=1, memory_format="nhwc")


def test_a_patch_is_rounded_up_to_the_network_divisor(tmp_path):
    data = tmp_path / "data"
    make_vessels2d(data, cases=2, size=48, seed=0)
    config = TrainingConfig(iterations=1, patch_size=(36, 30), batch_size=1,
                            network_options={"features": 4, "depth": 3})  # divisor 8
    train(data, tmp_path / "model", config, progress=False)
    config_json = json.loads((tmp_path / "model" / "config.json").read_text(encoding="utf-8"))
    assert config_json["patch_size"] == [40, 32]


def test_a_diverging_loss_is_reported_once():
    from rich.console import Console

    from medseg.training.loop import DivergenceCheck

    console = Console(record=True, width=200)
    warning = DivergenceCheck()
    seen = [warning.check(loss, i, console) for i, loss in enumerate([17.0, 50.0, 1.5e6, 6e10])]
    assert seen == [False, False, True, False]
    text = console.export_text()
    assert "diverging" in text and "--lr" in text


def test_probe_keeps_the_reference_unless_another_variant_is_clearly_faster(monkeypatch):
    model = _batch_norm_unet()
    image, label = torch.randn(2, 1, 32, 32), torch.randint(0, 2, (2, 1, 32, 32))

    def choice(first, second):  # passes timed as given (real timings would make the margin a matter of load)
        batches = {"reference": image.clone(), "other": image.clone()}
        seconds = {id(image): first, id(batches["reference"]): first, id(batches["other"]): second}
        monkeypatch.setattr(probe, "pass_seconds", lambda model, loss_fn, batch, label: seconds[id(batch)])
        variants = {name: (lambda batch=batch: (batch, lambda: None)) for name, batch in batches.items()}
        return probe.fastest_variant(model, build_loss("dice_ce"), image, label, variants, time_limit=1e6)[0]

    assert choice(0.2, 0.195) == "reference"  # 2.5 % faster: within the probe's noise
    assert choice(0.2, 0.17) == "other"  # 1.18x faster


def test_the_probe_line_says_why_a_slower_format_was_kept():
    from rich.console import Console

    from medseg.training.loop import _timed

    console = Console(record=True, width=200)
    for chosen, other in (("contiguous", 0.95), ("channels_last", 0.8)):
        assert _timed(console, "memory format", chosen, {"contiguous": 1.0, "channels_last": other}) == chosen
    first, second = console.export_text().splitlines()
    assert first.endswith("-> contiguous (kept: channels_last is 1.05x faster, less than the 1.1x a switch needs)")
    assert second.endswith("-> channels_last")
