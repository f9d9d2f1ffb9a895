"""Training from a plan: resampling to the plan's spacing and back, crop to non-zero, and a 2D network
on 3D data (the plan's "2d" configuration, slice by slice)."""

import numpy as np
import pytest

from medseg.datasets import load_dataset, make_organs3d
from medseg.inference.predictor import Predictor
from medseg.training.config import TrainingConfig
from medseg.training.loop import train


@pytest.fixture(scope="module")
def organs_and_plan(tmp_path_factory):
    from medseg.planning import compute_fingerprint, make_plan

    root = make_organs3d(tmp_path_factory.mktemp("o") / "organs", cases=3, seed=1, shape=(12, 32, 32),
                         num_organs=2, test_cases=1)
    dataset = load_dataset(root)
    plan = make_plan(compute_fingerprint(dataset), step_seconds=0.1).to_dict()
    plan["target_spacing"] = [3.0, 2.0, 2.0]  # coarser in-plane: prediction must resample back
    plan["patch_size"] = [12, 16, 16] if plan["configuration"] == "3d" else plan["patch_size"]
    return dataset, plan


def _config(**kw):
    return TrainingConfig(network_options={"features": 4}, batch_size=2, iterations=2, threads=1, **kw)


@pytest.mark.parametrize("configuration", ["3d", "2d"])
def test_plan_training_predicts_on_the_input_grid(organs_and_plan, tmp_path, configuration):
    dataset, plan = organs_and_plan
    result = train(dataset, tmp_path / "m", _config(val_every=2), plan=plan, configuration=configuration,
                   val_cases=[dataset.cases[-1].name], progress=False)
    assert result.iterations == 2 and "val_dice" in result.last_metrics
    predictor = Predictor.from_folder(tmp_path / "m")
    cfg = predictor.config
    assert cfg.target_spacing == [3.0, 2.0, 2.0] and cfg.data_dims == 3
    assert cfg.spatial_dims == (3 if configuration == "3d" else 2)
    assert (cfg.slice_axis is None) == (configuration == "3d")
    assert (tmp_path / "m" / "plan.json").is_file()
    image = dataset.test_cases[0].read_image()
    labels, probs = predictor.predict_with_probabilities(image)
    assert labels.same_geometry(image) and probs.same_geometry(image)
    assert set(np.unique(labels.array)) <= {0, 1, 2}
    np.testing.assert_allclose(probs.array.sum(0), 1, atol=1e-4)
    # the memory-light labels-only path (float16 tiles, per-channel resampling + running argmax) agrees
    labels_only = predictor.predict(image)
    assert labels_only.same_geometry(image)
    assert np.mean(labels_only.array != labels.array) < 0.01
