"""The validation scoring behind the after-training rules: label models by label, region models by region."""

import numpy as np

from medseg.model_folder import ModelConfig
from medseg.preprocessing.grid import LabelMapping
from medseg.training.selection import _Predicted, _structures


def _config(**kw) -> ModelConfig:
    return ModelConfig(network="unet", network_options={}, in_channels=1, spatial_dims=3, channel_names=["MRI"],
                       labels={}, patch_size=[1, 4, 8], **kw)


def test_a_region_model_is_scored_by_region_on_its_painted_predictions():
    config = _config(num_classes=3, label_values=[0, 1, 2, 4],
                     regions={"whole": [1, 2, 4], "core": [2, 4], "enhancing": [4]}, region_class_order=[1, 2, 4])
    reference = np.zeros((1, 4, 8), np.uint8)
    reference[0, :, :4] = 1
    reference[0, :, 4:6] = 4                    # whole = 24 voxels, core = enhancing = 8 voxels
    probs = np.zeros((3, 1, 4, 8), np.float32)
    probs[0, :, :, :6] = 0.9                    # whole tumour exact
    probs[1, :, :, 4:6] = 0.9                   # core exact
    probs[2, :, :, 4:5] = 0.9                   # enhancing: half of it
    predicted = _Predicted()
    predicted.add(probs, 1.0, config, LabelMapping(config.label_values))
    assert set(np.unique(predicted.labels[0]).tolist()) == {0, 1, 2, 4}
    [score] = predicted.dice([reference], [np.ones_like(reference, bool)], _structures(config))
    assert np.isclose(score, (1 + 1 + 2 * 4 / (4 + 8)) / 3)
    assert predicted.foreground == []           # no threshold to choose for sigmoid regions


def test_a_label_model_is_scored_per_label_present_and_keeps_its_foreground():
    config = _config(num_classes=2, label_values=[0, 255])
    reference = np.zeros((1, 4, 4), np.uint8)
    reference[0, :2] = 255
    probs = np.zeros((2, 1, 4, 4), np.float32)
    probs[0] = 1.0
    probs[0, 0, :2], probs[1, 0, :2] = 0.0, 1.0
    predicted = _Predicted()
    predicted.add(probs, 1.0, config, LabelMapping(config.label_values))
    assert set(np.unique(predicted.labels[0]).tolist()) == {0, 255}
    assert predicted.dice([reference], [np.ones_like(reference, bool)], _structures(config)) == [1.0]
    assert len(predicted.foreground) == 1


def test_the_threshold_is_scored_on_the_input_grid_of_a_resampled_case(tmp_path):
    """A validation case resampled to a coarser network grid keeps its own label and ROI; the threshold rule
    sees the probabilities brought back onto that grid (as the predictor delivers them), the network grid
    otherwise."""
    from medseg.datasets import load_dataset, make_vessels2d
    from medseg.training.data import prepare_case
    from medseg.training.selection import _on_input_grid

    case = load_dataset(make_vessels2d(tmp_path / "v", cases=1, seed=0, size=40)).cases[0]
    mapping = LabelMapping([0, 1])
    coarse = prepare_case(case, [], mapping, target_spacing=(2.0, 2.0), keep_input_reference=True)
    same = prepare_case(case, [], mapping, keep_input_reference=True)
    training = prepare_case(case, [], mapping, target_spacing=(2.0, 2.0))
    assert coarse.image.shape[1:] == (20, 20) and same.input_reference is None and training.input_reference is None
    reference = coarse.input_reference
    native = np.asarray(case.read_label().array[0]) != 0
    assert reference.label.shape == (40, 40) and np.array_equal(reference.label == 1, native)
    assert not any(reference.grid.image.array.strides)  # geometry only: broadcast zeros

    fg = (np.asarray(coarse.label[0]) == 1).astype(np.float32)
    truth = np.asarray(coarse.label[0]) == 1
    valid = np.ones_like(truth)
    [probs], [target], [mask] = _on_input_grid([coarse], [fg], [truth], [valid])
    assert probs.shape == target.shape == mask.shape == (40, 40)
    assert np.array_equal(target, native & mask) and 0.0 <= probs.min() and probs.max() <= 1.0
    [probs], [target], _ = _on_input_grid([same], [fg], [truth], [valid])
    assert probs is fg and target is truth
