"""A run with no options: every default is a recorded rule, the caller's options and process state are left
untouched, the decision threshold and postprocessing are chosen on the held-out cases and applied by the
predictor."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.datasets import make_vessels2d
from medseg.inference.predictor import Predictor, ensemble_postprocessing
from medseg.model_folder import load_config, load_rules, save_config
from medseg.training.config import TrainingConfig
from medseg.training.loop import train
from medseg.training.networks import network_needs

TRAINING = Path(__file__).resolve().parents[2] / "src" / "medseg" / "training"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = make_vessels2d(tmp_path_factory.mktemp("d") / "vessels", cases=6, seed=0, size=48, test_cases=1)
    options = TrainingConfig(network_options={"features": 4, "depth": 2}, iterations=3, threads=1,
                             foreground_share=0.7)
    before = copy.deepcopy(options)
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    folder = tmp_path_factory.mktemp("m") / "model"
    train(data, folder, options, progress=False)
    return data, folder, options, before, threads, rng, np_state


def test_every_default_is_a_recorded_rule(run):
    data, folder, *_ = run
    recorded = {r["name"]: r for r in load_rules(folder)}
    for name in ("validation", "budget", "learning_rate", "preprocessing", "structure", "patch_size", "batch_size",
                 "inference_tile", "normalisation_layer", "foreground_share", "augmentation", "validation_interval",
                 "decision_threshold", "postprocessing", "loss", "tta", "one_piece"):
        assert name in recorded, name
        assert set(recorded[name]) >= {"name", "inputs", "value", "reason", "overridden_by_user"}
    assert recorded["structure"]["value"] == "thin"
    assert recorded["foreground_share"]["overridden_by_user"] and recorded["foreground_share"]["value"] == 0.7
    assert not recorded["augmentation"]["overridden_by_user"]
    config = load_config(folder)
    assert config.val_cases and not set(config.val_cases) & set(config.train_cases)  # never "validating on 0"
    assert config.network_options["norm"] == "batch" and config.tile_size == [48, 48]
    assert config.training["foreground_share"] == 0.7
    assert config.postprocessing == recorded["postprocessing"]["value"]
    assert config.decision_threshold == recorded["decision_threshold"]["value"]
    assert config.tta_axes == recorded["tta"]["value"] and recorded["tta"]["inputs"]["axes"] == [0, 1]


def test_caller_options_and_process_state_are_untouched(run):
    _, _, options, before, threads, rng, np_state = run
    assert options == before
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng)
    assert np.array_equal(np.random.get_state()[1], np_state)


def test_trainer_names_no_network():
    for path in TRAINING.glob("*.py"):
        if path.name == "config.py":  # the default of the --net option, not a decision about a network
            continue
        text = path.read_text(encoding="utf-8")
        for name in ('"unet"', '"segresnet_vae"', '"vnet"', '"unet_plus_plus"', '"dunet"'):
            assert name not in text, f"{path.name} names {name}"
    assert network_needs("segresnet_vae").needs_input_size
    assert network_needs("segresnet_vae").training_defaults == {"features": 16}
    assert network_needs("unet").training_defaults["features"] == 16 and network_needs("unet").norm_option == "norm"


def test_recorded_postprocessing_is_applied_by_the_predictor(run):
    data, folder, *_ = run
    config = load_config(folder)
    case = sorted((data / "imagesTs").iterdir())[0]
    from medseg.io import read_image

    image = read_image(case)
    save_config(folder, type(config)(**{**config.to_dict(), "postprocessing": [{"step": "largest", "label": 1}],
                                        "decision_threshold": 0.3}))
    try:
        labels = Predictor.from_folder(folder, backend="torch").predict(image).array[0]
        raw = Predictor.from_folder(folder, postprocessing=False, backend="torch").predict(image).array[0]
        from medseg.postprocessing import keep_largest_component

        assert np.array_equal(labels, keep_largest_component(raw))
        ensemble = Predictor.from_folders([folder, folder], backend="torch")
        assert ensemble.postprocessing == [{"step": "largest", "label": 1}]
    finally:
        save_config(folder, config)
    other = type(config)(**{**config.to_dict(), "postprocessing": [{"step": "fill_holes", "label": 1}]})
    mixed = type(config)(**{**config.to_dict(), "postprocessing": [{"step": "fill_holes", "label": 1},
                                                                   {"step": "largest", "label": 1}]})
    assert ensemble_postprocessing([mixed, other]) == [{"step": "fill_holes", "label": 1}]


def test_model_folder_rules_round_trip_as_json(run):
    _, folder, *_ = run
    text = (folder / "rules.json").read_text(encoding="utf-8")
    assert json.loads(text) == load_rules(folder)


def test_cli_and_python_train_the_same_model(tmp_path):
    from safetensors.torch import load_file

    from medseg.cli import main

    data = make_vessels2d(tmp_path / "v", cases=3, seed=1, size=40)
    assert main(["train", str(data), "--out", str(tmp_path / "cli"), "--iterations", "2", "--features", "4",
                 "--depth", "2", "--threads", "1", "--memory-format", "contiguous", "--no-progress"]) == 0
    options = TrainingConfig(network_options={"features": 4, "depth": 2}, iterations=2, threads=1,
                             memory_format="contiguous")
    train(data, tmp_path / "py", options, progress=False)
    cli, py = load_rules(tmp_path / "cli"), load_rules(tmp_path / "py")
    # the one difference: the command decides whether to build the inference backend (Predictor.warm_up)
    assert cli[-1]["name"] == "prepare_backend" and cli[-1]["value"] is False
    assert [(r["name"], r["value"], r["overridden_by_user"]) for r in cli[:-1]] == \
        [(r["name"], r["value"], r["overridden_by_user"]) for r in py]
    a, b = load_file(tmp_path / "cli" / "model.safetensors"), load_file(tmp_path / "py" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert load_config(tmp_path / "cli").training == load_config(tmp_path / "py").training


def test_ensembles_of_folds_with_their_own_thresholds(run):
    import shutil

    from medseg.io import read_image

    data, folder, *_ = run
    config = load_config(folder)
    other = folder.parent / "other_fold"
    shutil.copytree(folder, other, dirs_exist_ok=True)
    save_config(folder, type(config)(**{**config.to_dict(), "decision_threshold": 0.4}))
    save_config(other, type(config)(**{**config.to_dict(), "decision_threshold": 0.6}))
    try:
        # each fold chose its own threshold: no error
        ensemble = Predictor.from_folders([folder, other], backend="torch")
        assert ensemble.ensemble_config.decision_threshold == pytest.approx(0.5)
        image = read_image(sorted((data / "imagesTs").iterdir())[0])
        labels, probs = Predictor.from_folders([folder, other], postprocessing=False,
                                               backend="torch").predict_with_probabilities(image)
        assert np.array_equal(labels.array[0] != 0, probs.array[1] >= 0.5)
    finally:
        save_config(folder, config)


def test_a_users_depth_replaces_the_plans_per_level_lists():
    """`--depth 2` on an automatic 5-level plan: the plan's strides and kernel sizes (one entry per level)
    give way instead of contradicting the depth; given with the depth, the user's lists stay."""
    from medseg.training.spec import _merge_network_options

    plan = {"features": 16, "depth": 4, "strides": [[2, 2]] * 4, "kernel_sizes": [[3, 3]] * 5}
    assert _merge_network_options(plan, {"depth": 2}) == {"features": 16, "depth": 2}
    assert _merge_network_options(plan, {"features": 8}) == {**plan, "features": 8}
    mine = {"depth": 1, "strides": [[2, 2]]}
    assert _merge_network_options(plan, mine) == {"features": 16, **mine}
