"""bfloat16 training: autocast in the forward pass of a training network only, float32 outside it, the probe."""

import copy
import json

import pytest
import torch

from medseg.datasets.synthetic import make_vessels2d
from medseg.errors import MedsegError
from medseg.losses import build_loss
from medseg.nets import create_network
from medseg.training import TrainingConfig, train
from medseg.training.precision import BFloat16Forward, as_float, choose_precision


def _net():
    torch.manual_seed(0)
    return create_network("unet", 1, 2, 2, features=4, depth=2, norm="batch")


def _conv_dtypes(model, image):
    seen = []
    handles = [m.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
               for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    output = model(image)
    for handle in handles:
        handle.remove()
    return set(seen), output


def test_training_passes_compute_in_bfloat16_and_hand_back_float32():
    model = _net()
    hooks = BFloat16Forward(model)
    image = torch.randn(2, 1, 32, 32)
    inside, output = _conv_dtypes(model.train(), image)
    assert inside == {torch.bfloat16} and output.dtype == torch.float32
    output.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
    inside, output = _conv_dtypes(model.eval(), image)  # validation and prediction: float32 throughout
    assert inside == {torch.float32} and output.dtype == torch.float32
    teacher = copy.deepcopy(model).train()  # an EMA teacher is a deep copy: it computes in bfloat16 too
    assert _conv_dtypes(teacher, image)[0] == {torch.bfloat16}
    hooks.remove()
    assert _conv_dtypes(model.train(), image)[0] == {torch.float32}
    assert not torch.is_autocast_enabled("cpu")


def test_a_failing_forward_pass_leaves_autocast():
    model = _net().train()
    BFloat16Forward(model)
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 3, 32, 32))  # wrong channel count
    assert not torch.is_autocast_enabled("cpu")


def test_as_float_converts_nested_outputs_and_keeps_integers():
    out = as_float({"logits": [torch.ones(2, dtype=torch.bfloat16)], "index": torch.ones(2, dtype=torch.long)})
    assert out["logits"][0].dtype == torch.float32 and out["index"].dtype == torch.long


def test_probe_restores_the_model_and_is_skipped_for_short_runs():
    model = _net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    image, label = torch.randn(2, 1, 32, 32), torch.randint(0, 2, (2, 1, 32, 32))
    name, seconds = choose_precision(model, build_loss("dice_ce"), image, label, time_limit=1e6)
    assert name in ("float32", "bfloat16") and set(seconds) == {"float32", "bfloat16"}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert _conv_dtypes(model.train(), image)[0] == {torch.float32}  # the probe's hooks are gone
    assert choose_precision(model, build_loss("dice_ce"), image, label, iterations=5) == ("float32", {})


def test_bfloat16_training_is_recorded_and_tracks_float32(tmp_path):
    data = tmp_path / "data"
    make_vessels2d(data, cases=3, size=48, seed=0)
    losses = {}
    for name in ("float32", "bfloat16"):
        config = TrainingConfig(iterations=3, patch_size=(32, 32), batch_size=2, precision=name,
                                network_options={"features": 4, "depth": 2})
        out = tmp_path / name
        seen = []
        train(data, out, config, val_cases=["case_002"], progress=False, on_iteration=lambda i, loss: seen.append(loss))
        losses[name] = seen
        assert json.loads((out / "config.json").read_text(encoding="utf-8"))["training"]["precision"] == name
    # the same batches and initial weights: the first loss agrees to bfloat16's ~3 significant digits
    assert losses["bfloat16"][0] == pytest.approx(losses["float32"][0], rel=2e-2)
    assert losses["bfloat16"][0] != losses["float32"][0]


def test_auto_keeps_float32_untimed_on_a_device_without_bfloat16_units(tmp_path, monkeypatch):
    from medseg.training import loop

    data = tmp_path / "data"
    make_vessels2d(data, cases=3, size=48, seed=0)
    probed = []
    monkeypatch.setattr(loop, "choose_precision", lambda *args, **kwargs: probed.append(1) or (
        "bfloat16", {"float32": 1.0, "bfloat16": 0.5}))
    for hardware, expected in ((False, "float32"), (True, "bfloat16")):
        monkeypatch.setattr(loop, "computes_bfloat16", lambda device: hardware)
        out = tmp_path / expected
        config = TrainingConfig(iterations=2, patch_size=(32, 32), batch_size=2,
                                network_options={"features": 4, "depth": 2})
        train(data, out, config, val_cases=["case_002"], progress=False)
        assert json.loads((out / "config.json").read_text(encoding="utf-8"))["training"]["precision"] == expected
    assert len(probed) == 1  # timed only where the device has the units


def test_unknown_precision_is_rejected():
    with pytest.raises(MedsegError, match="precision"):
        TrainingConfig(iterations=1, precision="float16")
