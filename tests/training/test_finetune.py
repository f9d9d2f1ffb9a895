"""`medseg train NEW_DATA --init-from MODEL`: the source's weights, preprocessing, labels and FOV are kept, the
fine-tuning rules decide the rest, the lineage is recorded."""

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from medseg.cli import main
from medseg.datasets import make_vessels2d
from medseg.model_folder import config_sha256, load_config, load_model, weights_sha256

COMMON = ["--patch-size", "32", "--batch-size", "2", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    data = make_vessels2d(root / "old_camera", cases=3, seed=0, size=48)
    model = root / "source"
    torch.set_num_threads(1)
    assert main(["train", str(data), "--out", str(model), "--iterations", "4", "--features", "4", "--depth", "2",
                 *COMMON]) == 0
    return model


@pytest.fixture(scope="module")
def new_data(tmp_path_factory):
    return make_vessels2d(tmp_path_factory.mktemp("new") / "new_camera", cases=2, seed=1, size=64)


def test_starts_from_the_source_weights_and_keeps_a_frozen_encoder(source, new_data, tmp_path, monkeypatch, capsys,
                                                                   one_thread):
    import medseg.training.loop as loop

    _, reference = load_model(source)
    first = {}
    real_step = loop.train_step

    def recording_step(model, loss_fn, optimizer, image, label, *args):
        if not first:  # the network the first step starts from predicts what the source model predicts
            model.eval()
            with torch.no_grad():
                first["fine"], first["source"] = model(image).clone(), reference(image)
        return real_step(model, loss_fn, optimizer, image, label, *args)

    monkeypatch.setattr(loop, "train_step", recording_step)
    out = tmp_path / "tuned"
    assert main(["train", str(new_data), "--out", str(out), "--init-from", str(source), "--freeze-encoder",
                 "--iterations", "3", "--threads", "1", "--no-progress"]) == 0
    assert torch.allclose(first["fine"], first["source"], atol=1e-5)
    before, after = load_file(str(source / "model.safetensors")), load_file(str(out / "model.safetensors"))
    encoder = [k for k in before if k.startswith("encoder.")]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)  # weights and batch-norm statistics
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))

    # the model's network, preprocessing, labels, patch and FOV are the source's; the lineage is recorded
    src, tuned = load_config(source), load_config(out)
    for field in ("network", "network_options", "preprocessing", "labels", "patch_size", "fov_diameter"):
        assert getattr(tuned, field) == getattr(src, field), field
    relative = os.path.relpath(source.resolve(), out.resolve())
    assert tuned.lineage == {"path": relative, "weights_sha256": weights_sha256(source),
                             "config_sha256": config_sha256(source), "dataset": "vessels2d", "source_lineage": None}
    rules = {r["name"]: r for r in json.loads((out / "rules.json").read_text(encoding="utf-8"))}
    assert rules["init_from"]["value"]["weights_sha256"] == weights_sha256(source)
    assert rules["learning_rate"]["value"] == pytest.approx(2e-4) and not rules["learning_rate"]["overridden_by_user"]
    assert rules["validation"]["value"] == {"fold": "all"}  # two cases: both train
    assert tuned.decision_threshold == src.decision_threshold and "source model" in rules["decision_threshold"]["reason"]
    printed = " ".join(capsys.readouterr().err.split())
    assert f"Initial weights: {relative}" in printed and "fine-tuning: 0.1 × the from-scratch rate" in printed

    # a fine-tuned model is a source too: the lineage chains
    again = tmp_path / "again"
    assert main(["train", str(new_data), "--out", str(again), "--init-from", str(out), "--iterations", "1",
                 "--threads", "1", "--no-progress"]) == 0
    assert load_config(again).lineage["source_lineage"]["weights_sha256"] == weights_sha256(source)


def test_refusals_are_one_line_and_write_nothing(source, tmp_path, capsys, one_thread):
    from medseg.datasets.dataset import write_dataset_json

    other = make_vessels2d(tmp_path / "other_labels", cases=2, seed=2, size=48)
    write_dataset_json(other, name="other", channel_names=["R", "G", "B"], labels={"background": 0, "artery": 1},
                       file_ending=".png", num_training=2)
    out = tmp_path / "never"
    capsys.readouterr()
    assert main(["train", str(other), "--out", str(out), "--init-from", str(source), "--iterations", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "dataset.json" in err and "labels" in err and not out.exists()
    same = make_vessels2d(tmp_path / "same", cases=2, seed=3, size=48)
    assert main(["train", str(same), "--out", str(out), "--init-from", str(source), "--preprocessing", "none",
                 "--iterations", "1"]) == 1
    assert "keeps the source model's plan and preprocessing" in capsys.readouterr().err and not out.exists()
    assert main(["train", str(same), "--out", str(out), "--init-from", str(source), "--net", "unet",
                 "--iterations", "1"]) == 1
    assert "keeps the source model's network" in capsys.readouterr().err and not out.exists()
    assert main(["train", str(same), "--out", str(out), "--init-from", str(tmp_path / "nowhere"),
                 "--iterations", "1"]) == 1
    assert "nowhere" in capsys.readouterr().err and not out.exists()


def test_a_photograph_without_field_of_view_is_named(source, tmp_path, capsys, one_thread):
    """Fine-tuning a model with a recorded FOV on ROI-less photographs: an all-black one is one line naming
    its file, and nothing is written."""
    from medseg.datasets.dataset import write_dataset_json
    from medseg.image import Image
    from medseg.io import write_image

    data = tmp_path / "black_camera"
    write_image(Image(np.zeros((3, 48, 48), np.uint8)), data / "imagesTr" / "dark_0000.png")
    label = np.zeros((1, 48, 48), np.uint8)
    label[0, 24, 10:40] = 1
    write_image(Image(label), data / "labelsTr" / "dark.png")
    write_dataset_json(data, name="dark", channel_names=["R", "G", "B"], labels={"background": 0, "vessel": 1},
                       file_ending=".png", num_training=1)
    out = tmp_path / "never"
    capsys.readouterr()
    assert main(["train", str(data), "--out", str(out), "--init-from", str(source), "--iterations", "1",
                 "--threads", "1", "--no-progress"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "dark_0000.png" in err and "no field of view found" in err and not out.exists()


@pytest.mark.parametrize("source_dice, kept", [(1.0, "source"), (0.0, "fine-tuned")])
def test_fine_tuning_that_loses_to_its_source_keeps_the_source(source, tmp_path, monkeypatch, one_thread,
                                                              source_dice, kept):
    """With validation cases (6 new cases: a held-out fifth), the fine-tuned weights are compared with the
    source's on them; the source's validation score is set here so that each outcome is certain."""
    import medseg.training.validation as validation
    from medseg.planning.device_rules import rule_finetune_outcome

    assert rule_finetune_outcome(0.5, 0.5).value == "fine-tuned" and rule_finetune_outcome(0.6, 0.5).value == "source"
    real = validation.validate
    scored = []

    def source_scored(model, cases, config, overlap=0.5):  # only the comparison calls it through the module
        scored.append(real(model, cases, config, overlap)["val_dice"])
        return {"val_dice": source_dice}

    monkeypatch.setattr(validation, "validate", source_scored)
    data = make_vessels2d(tmp_path / "six", cases=6, seed=4, size=48)
    out = tmp_path / "tuned"
    assert main(["train", str(data), "--out", str(out), "--init-from", str(source), "--iterations", "2",
                 *COMMON]) == 0
    rules = {r["name"]: r for r in json.loads((out / "rules.json").read_text(encoding="utf-8"))}
    assert rules["validation"]["value"] == {"fold": 0} and len(scored) == 1
    assert rules["finetune_outcome"]["value"] == kept
    # 1-2 validation cases are too few to choose a threshold on: the source's stays
    assert "too few to choose on" in rules["decision_threshold"]["reason"]
    assert rules["decision_threshold"]["value"] == load_config(source).decision_threshold
    assert "too few to judge it on" in rules["tta"]["reason"] and rules["tta"]["value"] == load_config(source).tta_axes
    assert rules["finetune_outcome"]["inputs"]["source_dice"] == source_dice
    before, after = load_file(str(source / "model.safetensors")), load_file(str(out / "model.safetensors"))
    same = all(torch.equal(before[k], after[k]) for k in before)
    assert same == (kept == "source")
