"""Resuming after an interruption continues exactly: N iterations in one go == N/2, interrupt, resume."""

import functools

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from medseg.datasets import make_vessels2d
from medseg.errors import MedsegError
from medseg.training.config import TrainingConfig
from medseg.training.loop import train


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    return make_vessels2d(tmp_path_factory.mktemp("d") / "vessels", cases=3, seed=0, size=48)


def _config(**kw):
    base = dict(network_options={"features": 4, "depth": 2}, patch_size=(32, 32), batch_size=2, iterations=6,
                checkpoint_every=100, log_every=1, threads=1, seed=3, warmup_iterations=2)
    base.update(kw)
    return TrainingConfig(**base)


@pytest.mark.parametrize("weight_average", [None, 0.9])
def test_resume_matches_uninterrupted_run(tiny_dataset, tmp_path, weight_average):
    threads = torch.get_num_threads()
    config = functools.partial(_config, weight_average=weight_average)
    try:
        train(tiny_dataset, tmp_path / "full", config(), progress=False)

        def interrupt(iteration, loss):
            if iteration == 3:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            train(tiny_dataset, tmp_path / "split", config(), progress=False, on_iteration=interrupt)
        assert not (tmp_path / "split" / "model.safetensors").exists()
        ckpt = torch.load(tmp_path / "split" / "checkpoint_last.pt", weights_only=True)
        assert ckpt["iteration"] == 3
        # disturb the global RNGs: resume must restore them
        torch.manual_seed(12345)
        np.random.seed(999)
        result = train(tiny_dataset, tmp_path / "split", config(), resume=True, progress=False)
        assert result.iterations == 6
    finally:
        torch.set_num_threads(threads)
    full = load_file(tmp_path / "full" / "model.safetensors")
    split = load_file(tmp_path / "split" / "model.safetensors")
    assert full.keys() == split.keys()
    for key in full:
        assert torch.equal(full[key], split[key]), key
    log = (tmp_path / "split" / "training_log.csv").read_text(encoding="utf-8").splitlines()
    assert [int(r.split(",")[0]) for r in log[1:]] == [1, 2, 3, 4, 5, 6]


def test_existing_folder_needs_resume_or_overwrite(tiny_dataset, tmp_path):
    train(tiny_dataset, tmp_path / "m", _config(iterations=1), progress=False)
    with pytest.raises(MedsegError, match="--resume"):
        train(tiny_dataset, tmp_path / "m", _config(iterations=1), progress=False)
    train(tiny_dataset, tmp_path / "m", _config(iterations=1), progress=False, overwrite=True)
    with pytest.raises(MedsegError, match="nothing to resume"):
        train(tiny_dataset, tmp_path / "other", _config(iterations=1), resume=True, progress=False)


def test_model_folder_contents(tiny_dataset, tmp_path):
    import json

    result = train(tiny_dataset, tmp_path / "m", _config(iterations=4, val_every=2), val_cases=["case_002"],
                   progress=False)
    names = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"config.json", "model.safetensors", "checkpoint_last.pt", "checkpoint_best.pt",
            "training_log.csv", "training_curve.png"} <= names
    config = json.loads((tmp_path / "m" / "config.json").read_text(encoding="utf-8"))
    assert config["preprocessing"][0]["name"] == "green_channel"
    assert config["input_channels"] == 3 and config["in_channels"] == 1
    assert config["val_cases"] == ["case_002"] and config["labels"] == {"background": 0, "vessel": 1}
    assert str(tmp_path) not in (tmp_path / "m" / "config.json").read_text(encoding="utf-8")  # relocatable
    assert 0.0 <= result.best_metric <= 1.0
    assert "val_dice" in (tmp_path / "m" / "training_log.csv").read_text(encoding="utf-8")
