"""Which model segments each case of a cascade's training table (`train-classifier --out-of-fold`)."""

from pathlib import Path

import pytest

from medseg.cascade.train import _tissue_map_models
from medseg.errors import MedsegError
from medseg.model_folder import ModelConfig, save_config

LABELS = {"background": 0, "fluid": 1}


def _config(labels=LABELS, train=(), val=()) -> ModelConfig:
    return ModelConfig(network="unet", network_options={}, in_channels=1, num_classes=2, spatial_dims=2,
                       patch_size=[16, 16], channel_names=["OCT"], labels=dict(labels), label_values=[0, 1],
                       train_cases=list(train), val_cases=list(val))


def _model(folder: Path, train, val, labels=LABELS) -> Path:
    folder.mkdir()
    save_config(folder, _config(labels, train, val))
    return folder


def test_a_model_that_never_saw_the_case_is_preferred_to_one_that_validated_on_it(tmp_path):
    seg = _model(tmp_path / "seg", ["a", "b", "c"], [])
    m1 = _model(tmp_path / "m1", ["a"], ["b"])
    m2 = _model(tmp_path / "m2", ["b"], ["c"])
    config = _config()
    model_of, rule = _tissue_map_models(seg, config, ["a", "b", "c", "d"], [m1, m2])
    # a: m1 trained on it -> m2; b: m2 trained on it, m1 only validated -> m1; c: m1 never saw it; d: the first
    assert model_of == {"a": m2, "b": m1, "c": m1, "d": m1}
    assert rule["decision"] == "out of fold (2 models)"
    without, rule = _tissue_map_models(seg, config, ["a"], [])
    assert without == {"a": seg} and rule["decision"] == "the segmentation model's"
    with pytest.raises(MedsegError, match="trained on 1 labelled case"):
        _tissue_map_models(seg, config, ["a"], [m1])
    other = _model(tmp_path / "other", ["x"], [], labels={"background": 0, "lesion": 1})
    with pytest.raises(MedsegError, match="differ from the segmentation model"):
        _tissue_map_models(seg, config, ["a"], [other])
