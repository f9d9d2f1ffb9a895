"""Prompt training through the ordinary trainer: a promptable network declared in the registry only.

Fast tests use a tiny promptable network registered here (as a plug-in would: the trainer never names
it); the slow test fine-tunes the real LiteMedSAM from its released weights.
"""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medseg.cli import main
from medseg.datasets import make_organs3d
from medseg.errors import MedsegError
from medseg.image import Image
from medseg.inference.boxes import BoxPrompt
from medseg.inference.prompt import Prompter, load_prompt_model
from medseg.model_folder import load_config, load_rules
from medseg.nets import NETWORKS
from medseg.training.config import TrainingConfig
from medseg.training.loop import train
from medseg.training.prompted import PromptData, jittered_box, make_prompt_batch, prompt_structures

pytestmark = pytest.mark.usefixtures("one_thread")


class TinyPromptable(nn.Module):
    """The promptable contract (``encode_image``, ``decode``) at a few thousand parameters."""

    size_divisor = 1

    def __init__(self, in_channels=3, num_classes=2, spatial_dims=2):
        super().__init__()
        assert num_classes == 2 and spatial_dims == 2
        self.image_encoder = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.BatchNorm2d(8), nn.GELU())
        self.mask_decoder = nn.Conv2d(9, 1, 3, padding=1)
        self.iou_head = nn.Linear(8, 1)

    def encode_image(self, x):
        return self.image_encoder(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)

    def decode(self, embedding, boxes=None, points=None, masks=None, multimask=False):
        n = boxes.shape[0]
        embedding = embedding.expand(n, -1, -1, -1) if embedding.shape[0] == 1 else embedding
        xs = torch.arange(64, dtype=torch.float32) * 4
        b = boxes[:, :, None]
        inside_x = (xs[None] >= b[:, 0]) & (xs[None] <= b[:, 2])
        inside_y = (xs[None] >= b[:, 1]) & (xs[None] <= b[:, 3])
        box_map = (inside_y[:, :, None] & inside_x[:, None, :]).float()[:, None]
        low = self.mask_decoder(torch.cat([embedding, box_map], 1))
        iou = torch.sigmoid(self.iou_head(embedding.mean((2, 3))))
        return F.interpolate(low, size=(256, 256), mode="bilinear", align_corners=False), iou

    def forward(self, x):  # the network contract (whole image as the box)
        raise NotImplementedError


RELEASED = {}


def _released(path=None):
    if path is not None:
        return torch.load(path, weights_only=True)
    if not RELEASED:
        with torch.random.fork_rng():
            torch.manual_seed(123)
            RELEASED.update(TinyPromptable().state_dict())
    return {k: v.clone() for k, v in RELEASED.items()}


if "tiny_promptable" not in NETWORKS:
    NETWORKS.add("tiny_promptable", TinyPromptable, dims=(2,), promptable=True, input_size=256,
                 encoder="image_encoder", released_weights=_released, learning_rate=1e-2, citation="test")


@pytest.fixture(scope="module")
def organs(tmp_path_factory):
    return make_organs3d(tmp_path_factory.mktemp("d") / "organs", cases=3, seed=0, shape=(6, 40, 32), num_organs=2)


def _train(organs, out, fold=None, **options):
    config = TrainingConfig(network="tiny_promptable", iterations=options.pop("iterations", 4), threads=1,
                            **options)
    return train(organs, out, config, fold=fold, progress=False, check=False)


def _changed(before, after, prefix):
    return [k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])]


def test_frozen_encoder_stays_decoder_learns(organs, tmp_path):
    from safetensors.torch import load_file

    _train(organs, tmp_path / "m", batch_size=2)
    after = load_file(str(tmp_path / "m" / "model.safetensors"))
    before = _released()
    assert _changed(before, after, "mask_decoder") and _changed(before, after, "iou_head")
    # frozen by the rule: weights and batch-norm running statistics untouched
    assert not _changed(before, after, "image_encoder")
    rules = {r["name"]: r for r in load_rules(tmp_path / "m")}
    assert rules["freeze_encoder"]["value"] is True and not rules["freeze_encoder"]["overridden_by_user"]
    assert rules["initial_weights"]["value"] == "released"
    assert rules["learning_rate"]["value"] == 1e-2  # the rate the registry entry declares
    assert rules["preprocessing"]["value"] == [] and rules["slice_axis"]["value"] == 0
    assert rules["prompt_training"]["value"]["structures"] == ["organ1", "organ2"]
    config = load_config(tmp_path / "m")
    assert (config.network, config.num_classes, config.spatial_dims, config.slice_axis) == ("tiny_promptable", 2, 2, 0)
    log = (tmp_path / "m" / "training_log.csv").read_text(encoding="utf-8")
    assert "val_dice_organ1" in log and "val_dice_organ2" in log


def test_train_encoder_changes_it(organs, tmp_path):
    from safetensors.torch import load_file

    _train(organs, tmp_path / "m", freeze_encoder=False, iterations=2)
    after = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert _changed(_released(), after, "image_encoder.0")
    rules = {r["name"]: r for r in load_rules(tmp_path / "m")}
    assert rules["freeze_encoder"]["value"] is False and rules["freeze_encoder"]["overridden_by_user"]


def test_model_folder_round_trip_and_prompt_cli(organs, tmp_path):
    from safetensors.torch import load_file

    _train(organs, tmp_path / "m", iterations=2)
    model = load_prompt_model(tmp_path / "m")
    saved = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items() if k in saved)
    image = Image(np.random.default_rng(0).random((1, 4, 40, 32), dtype=np.float32))
    result = Prompter(model).segment(image, [BoxPrompt((1, 5, 5), (2, 30, 25), label=3)])
    assert result.label_map.array.shape == (1, 4, 40, 32) and result.structures[0]["slices"] == 2
    out = tmp_path / "p.nii.gz"
    case = organs / "imagesTr" / "case_000_0000.nii.gz"
    assert main(["prompt", case, "--box", "5,5,1,25,30,3", "--model", tmp_path / "m", "-o", out]) == 0
    assert out.is_file()
    # a folder that does not hold a promptable network, and --model with --weights
    assert main(["prompt", case, "--box", "5,5,1,25,30,3", "--model", organs, "-o", tmp_path / "q.nii.gz"]) != 0
    assert main(["prompt", case, "--box", "5,5,1,25,30,3", "--model", tmp_path / "m", "--weights", case,
                 "-o", tmp_path / "q.nii.gz"]) != 0
    assert not (tmp_path / "q.nii.gz").exists()
    # medseg predict refuses a promptable model folder (it means nothing without prompts)
    from medseg.inference import Predictor

    with pytest.raises(MedsegError, match="medseg prompt --model"):
        Predictor.from_folder(tmp_path / "m")


def test_init_from_weights_file_and_bad_input(organs, tmp_path):
    state = {k: torch.zeros_like(v) if k.startswith("mask_decoder") else v for k, v in _released().items()}
    torch.save(state, tmp_path / "w.pt")
    _train(organs, tmp_path / "m", init_weights=str(tmp_path / "w.pt"), iterations=1, fold="all")
    rules = {r["name"]: r for r in load_rules(tmp_path / "m")}
    assert rules["initial_weights"]["overridden_by_user"]
    with pytest.raises(MedsegError, match="not found"):
        _train(organs, tmp_path / "m2", init_weights=str(tmp_path / "missing.pt"), iterations=1)
    with pytest.raises(MedsegError, match="ships no weights"):
        train(organs, tmp_path / "m3", TrainingConfig(network="unet", init_weights="released", iterations=1,
                                                      network_options={"features": 4, "depth": 2}),
              progress=False, check=False)
    with pytest.raises(MedsegError, match="patch-size"):
        _train(organs, tmp_path / "m4", patch_size=(64, 64), iterations=1)
    from medseg.planning.training_rules import rule_preprocessing
    from medseg.training.spec import _promptable_preprocessing

    steps = rule_preprocessing(None, None, ["MR"], ".nii.gz", False, 3)
    assert _promptable_preprocessing("tiny_promptable", steps, None).value == []
    with pytest.raises(MedsegError, match="drop --plan"):  # a plan's grid is not the one prompted
        _promptable_preprocessing("tiny_promptable", steps, {"target_spacing": [1, 1, 1]})


def test_prompt_batches_box_each_structure(organs):
    from medseg.datasets import load_dataset
    from medseg.training.data import prepare_case
    from medseg.preprocessing.grid import LabelMapping

    ds = load_dataset(organs)
    mapping = LabelMapping(ds.label_values)
    cases = [prepare_case(ds.case(c.name), [], mapping) for c in ds.cases]
    structures = prompt_structures(ds.label_values, ds.labels, None)
    data = PromptData(cases, structures, slice_axis=0)
    frames, (boxes, owner, targets, valid) = make_prompt_batch(data, 3, seed=1, batch_size=3)
    again = make_prompt_batch(data, 3, seed=1, batch_size=3)
    assert torch.equal(frames, again[0]) and torch.equal(boxes, again[1][0])  # a pure function of (seed, iteration)
    assert frames.shape == (3, 3, 256, 256) and float(frames.min()) >= 0 and float(frames.max()) <= 1
    assert owner.tolist() == sorted(owner.tolist()) and boxes.shape[0] == targets.shape[0] >= 3
    for box, target in zip(boxes, targets[:, 0]):
        ys, xs = torch.nonzero(target, as_tuple=True)
        x0, y0, x1, y1 = box.tolist()
        # the box holds the structure, each side at most 5 frame pixels out
        assert 0 <= xs.min() - x0 <= 5 and 0 <= ys.min() - y0 <= 5
        assert 0 <= x1 - xs.max() <= 5 and 0 <= y1 - ys.max() <= 5


def test_jittered_box_stays_in_the_slice():
    roi = torch.zeros(256, 256, dtype=torch.bool)
    roi[0:10, 250:256] = True
    box = jittered_box(roi, (200, 256), 5, np.random.default_rng(0))
    assert box[0] >= 245 and box[1] == 0 and box[2] == 255 and box[3] <= 14


@pytest.mark.slow
def test_litemedsam_fine_tunes_from_released_weights(organs, tmp_path):
    """The real network: 2 steps from the released weights, frozen encoder, then medseg prompt --model."""
    from medseg.nets.litemedsam import released_weights_path
    from safetensors.torch import load_file

    try:
        released_weights_path()
    except MedsegError as exc:
        pytest.skip(str(exc))
    assert main(["train", organs, "--out", tmp_path / "m", "--net", "litemedsam", "--iterations", "2",
                 "--batch-size", "1", "--threads", "1", "--no-progress", "--init-from-weights", "released"]) == 0
    from medseg.nets.litemedsam import released_state

    before, after = released_state(), load_file(str(tmp_path / "m" / "model.safetensors"))
    assert _changed(before, after, "mask_decoder") and not _changed(before, after, "image_encoder")
    rows = (tmp_path / "m" / "training_log.csv").read_text(encoding="utf-8")
    assert "val_dice" in rows
    out = tmp_path / "p.nii.gz"
    assert main(["prompt", organs / "imagesTr" / "case_002_0000.nii.gz", "--box", "5,5,2,25,30,3", "--model",
                 tmp_path / "m", "-o", out]) == 0
    assert json.loads((tmp_path / "m" / "config.json").read_text(encoding="utf-8"))["network"] == "litemedsam"


def test_resumed_prompt_training_is_exact(organs, tmp_path):
    from safetensors.torch import load_file

    _train(organs, tmp_path / "whole", iterations=4, fold="all")

    def stop(iteration, loss):
        if iteration == 2:
            raise KeyboardInterrupt

    config = TrainingConfig(network="tiny_promptable", iterations=4, threads=1)
    with pytest.raises(KeyboardInterrupt):
        train(organs, tmp_path / "cut", config, fold="all", progress=False, check=False, on_iteration=stop)
    train(organs, tmp_path / "cut", None, resume=True, progress=False, check=False)
    a = load_file(str(tmp_path / "whole" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
