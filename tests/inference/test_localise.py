"""Localise-then-segment: box and margin, the rule, pasting back onto the input grid, the whole-image
normalisation inside the box, the fall-back when the coarse model finds nothing, and a trained pair."""

from types import SimpleNamespace

import numpy as np
import pytest

from medseg.errors import MedsegError
from medseg.image import Image
from medseg.inference.localise import (
    LocaliseThenSegment,
    box_with_margin,
    coarse_plan,
    localise_rule,
)


def test_box_margin_and_minimum_size():
    fg = np.zeros((20, 30, 30), bool)
    fg[5:8, 10:12, 20:21] = True
    assert box_with_margin(fg, (2.0, 1.0, 1.0), 4.0) == [[3, 10], [6, 16], [16, 25]]
    # at least one fine patch, shifted inside the array at the border
    assert box_with_margin(fg, (1.0, 1.0, 1.0), 0.0, (8, 8, 16)) == [[3, 11], [7, 15], [13, 29]]
    edge = np.zeros((20, 30, 30), bool)
    edge[0, 0, 28] = True
    assert box_with_margin(edge, (1.0, 1.0, 1.0), 0.0, (8, 8, 16)) == [[0, 8], [0, 8], [14, 30]]
    assert box_with_margin(np.zeros((4, 5), bool), (1, 1), 3.0) == [[0, 4], [0, 5]]


def test_rule_decides_on_tiles_and_box_share():
    pays, why = localise_rule((155, 240, 240), (1, 1, 1), None, (64, 64, 64), 0.1)
    assert pays and "tiles" in why
    assert not localise_rule((155, 240, 240), (1, 1, 1), None, (64, 64, 64), 0.5)[0]
    assert not localise_rule((40, 60, 60), (1, 1, 1), None, (64, 64, 64), 0.05)[0]
    # BraTS planned (2.65 mm, crop keeps 37 %): 8 tiles, measured slower with localising -> not chosen
    assert not localise_rule((155, 240, 240), (1, 1, 1), (2.65, 2.65, 2.65), (48, 48, 56), 0.09, 0.37)[0]
    # BraTS at 1 mm with 64³ tiles (an unplanned model): a 9 % box pays
    assert localise_rule((155, 240, 240), (1, 1, 1), None, (64, 64, 64), 0.09, 0.37)[0]


def test_coarse_plan_records_rule():
    plan = coarse_plan({"target_spacing": [1.0, 1.0, 1.0], "rules_fired": [], "alternatives": {"2d": {}}}, 3)
    assert plan["target_spacing"] == [3.0, 3.0, 3.0] and plan["rules_fired"][-1]["rule"] == "localise.coarse_spacing"


class _Fixed:
    """A stand-in predictor returning a fixed label map (the coarse stage)."""

    def __init__(self, labels, channels=1):
        self.labels = labels
        self.config = SimpleNamespace(input_channels=channels)

    def predict(self, image, roi=None):
        return image.with_array(self.labels[None], ("label",))


def _fine_folder(tmp_path):
    from tests.inference.test_predictor import make_model_folder

    return make_model_folder(tmp_path / "fine", spatial_dims=3, preprocessing=[{"name": "zscore"}], patch=[8, 8, 8])


def test_fine_runs_in_box_on_whole_image_statistics(tmp_path):
    from medseg.inference.predictor import Predictor
    from medseg.preprocessing.crop import crop_image
    from medseg.preprocessing.grid import preprocess_image

    rng = np.random.default_rng(0)
    image = Image(rng.normal(5, 2, (1, 24, 40, 40)).astype(np.float32), spacing=(2.0, 1.0, 1.0),
                  origin=(3.0, -4.0, 5.0))
    coarse = np.zeros((24, 40, 40), np.uint8)
    coarse[10:13, 18:22, 18:22] = 1
    coarse[0, 0, 0] = 1  # a speck (< 10 % of the main component) does not stretch the box
    fine = Predictor.from_folder(_fine_folder(tmp_path), backend="torch")
    result = LocaliseThenSegment(_Fixed(coarse), fine, margin_mm=2.0).predict_localised(image)
    assert not result.fallback and result.labels.same_geometry(image)
    (z0, z1), (y0, y1), (x0, x1) = result.box
    assert (z0, z1, y0, y1, x0, x1) == (8, 16, 16, 24, 16, 24)  # margin 1 slice / 2 px, widened to 8³
    out = result.labels.array[0]
    assert not out[:z0].any() and not out[z1:].any() and not out[:, :y0].any() and not out[:, :, x1:].any()
    # inside the box: the fine network on the crop of the whole-image z-score (not a z-score of the crop)
    expected = Predictor.from_folder(tmp_path / "fine", backend="torch")
    expected.models[0].config.preprocessing = []
    normalised = preprocess_image(image, [{"name": "zscore"}])
    inside = expected.predict(crop_image(normalised, result.box)).array[0]
    np.testing.assert_array_equal(out[z0:z1, y0:y1, x0:x1], inside)


def test_coarse_pass_runs_unmirrored_without_changing_the_given_predictor(tmp_path):
    from medseg.inference.predictor import Predictor

    mirrored = Predictor.from_folder(_fine_folder(tmp_path), backend="torch", tta=True)
    pair = LocaliseThenSegment(mirrored, mirrored)
    assert pair.coarse.tta is False and mirrored.tta is True and pair.fine is mirrored


def test_empty_coarse_falls_back_to_whole_volume(tmp_path):
    from medseg.inference.predictor import Predictor

    image = Image(np.random.default_rng(1).normal(size=(1, 12, 20, 20)).astype(np.float32))
    fine = Predictor.from_folder(_fine_folder(tmp_path), backend="torch")
    result = LocaliseThenSegment(_Fixed(np.zeros((12, 20, 20), np.uint8)), fine).predict_localised(image)
    assert result.fallback and result.box == [[0, 12], [0, 20], [0, 20]]
    np.testing.assert_array_equal(result.labels.array, fine.predict(image).array)


def _organs(tmp_path):
    from medseg.datasets.synthetic import make_organs3d

    return make_organs3d(tmp_path / "o", cases=3, test_cases=1, seed=0, shape=(12, 48, 48), num_organs=1,
                         spacing=(2.0, 1.0, 1.0))


_TINY = ["--iterations", "2", "--threads", "1", "--no-progress"]


def _train_fine(data, out):
    from medseg.cli import main

    assert main(["train", str(data), "--out", str(out), "--patch-size", "8,16,16", "--batch-size", "1",
                 "--features", "4", "--depth", "2", *_TINY]) == 0
    return out


def test_dataset_rule_reads_the_labels_box(tmp_path):
    from medseg.datasets import load_dataset
    from medseg.inference.localise import dataset_localise_rule

    data = load_dataset(_organs(tmp_path))
    config = SimpleNamespace(crop_to_nonzero=False, target_spacing=[2.0, 1.0, 1.0], data_patch_size=(4, 8, 8))
    names = [c.name for c in data.cases]
    pays, why = dataset_localise_rule(data, config, names, margin_mm=0.0)
    assert pays and "tiles" in why
    # a margin that makes every box the whole image: localising cannot pay
    assert not dataset_localise_rule(data, config, names, margin_mm=100.0)[0]
    with pytest.raises(MedsegError, match="no labelled cases"):
        dataset_localise_rule(data, config, [], 0.0)


@pytest.mark.usefixtures("one_thread")
def test_localise_refuses_where_the_rule_says_no(tmp_path):
    """A margin of 100 mm puts every box over the whole image: one line, nothing trained or written."""
    from medseg.cli import main

    data = _organs(tmp_path)
    fine = _train_fine(data, tmp_path / "fine")
    pair = tmp_path / "pair"
    assert main(["localise", str(data), "--fine", str(fine), "--out", str(pair), "--margin-mm", "100", *_TINY]) == 1
    assert not pair.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["fine", "o"]


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_trained_pair_through_the_cli(tmp_path):
    """`medseg localise` trains the coarse model (3× grid) beside a copy of the fine one and records the rule;
    `medseg predict` of the pair writes labels on the input's exact grid."""
    import json

    from medseg.cli import main
    from medseg.io import read_image

    data = _organs(tmp_path)
    fine = _train_fine(data, tmp_path / "fine")
    pair = tmp_path / "pair"
    assert main(["localise", str(data), "--fine", str(fine), "--out", str(pair), "--factor", "3", "--margin-mm", "4",
                 "--force", *_TINY]) == 0
    spec = json.loads((pair / "localise.json").read_text(encoding="utf-8"))
    assert spec["rule"]["name"] == "localise_then_segment" and "tiles" in spec["rule"]["reason"]
    coarse = json.loads((pair / "coarse" / "config.json").read_text(encoding="utf-8"))
    assert coarse["target_spacing"] == [6.0, 3.0, 3.0]
    assert not list((pair / "fine").glob("checkpoint_*.pt")) and (pair / "fine" / "model.safetensors").is_file()
    assert main(["predict", str(pair), "-i", str(data / "imagesTs"), "-o", str(tmp_path / "pred"), "--report"]) == 0
    name = sorted(p.name for p in (data / "imagesTs").iterdir())[0].replace("_0000.nii.gz", "")
    report = (tmp_path / "pred" / f"{name}_report.html").read_text(encoding="utf-8")
    assert "localise with a coarse model" in report
    out = read_image(tmp_path / "pred" / f"{name}.nii.gz")
    assert out.same_geometry(read_image(data / "imagesTs" / f"{name}_0000.nii.gz"))
    assert set(np.unique(out.array).tolist()) <= {0, 1}


def test_the_fine_models_close_calls_are_noted_and_its_postprocessing_follows_the_predictor(tmp_path):
    from dataclasses import replace

    import torch

    from medseg.inference.predictor import LoadedModel, Predictor
    from medseg.model_folder import load_config

    folder = _fine_folder(tmp_path)
    config = replace(load_config(folder), postprocessing=[{"step": "largest", "label": 1}])
    marks_positive = LoadedModel(folder, config, lambda x: torch.cat([-x, x], dim=1) * 10)
    array = np.zeros((1, 24, 40, 40), np.float32)
    array[0, 10:14, 16:22, 16:22] = 5  # 144 voxels, kept
    array[0, 10:14, 26:31, 16:22] = 5  # 120 voxels, removed: 83 % of the kept one
    image = Image(array)
    coarse = np.zeros((24, 40, 40), np.uint8)
    coarse[10:14, 16:31, 16:22] = 1
    notes = []
    labels, _ = LocaliseThenSegment(_Fixed(coarse), Predictor([marks_positive])).predict_with_probabilities(
        image, notes=notes)
    assert int((labels.array == 1).sum()) == 144
    assert len(notes) == 1 and "kept 144 voxels and removed 120 (83% of it)" in notes[0]
    notes = []
    labels, _ = LocaliseThenSegment(_Fixed(coarse), Predictor([marks_positive], postprocessing=False)
                                    ).predict_with_probabilities(image, notes=notes)
    assert int((labels.array == 1).sum()) == 264 and notes == []  # --no-postprocessing reaches the box's pass
