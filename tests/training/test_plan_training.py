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
    # coarser in-plane, in both configurations (each has its own grid): prediction must resample back
    for cfg in (plan, *plan["alternatives"].values()):
        cfg["target_spacing"] = [3.0, 2.0, 2.0]
    plan["patch_size"] = [12, 16, 16] if plan["configuration"] == "3d" else plan["patch_size"]
    return dataset, plan


def _config(**kw):
    return TrainingConfig(network_options={"features": 4}, batch_size=2, iterations=2, threads=1, **kw)


@pytest.mark.parametrize("configuration", ["3d", "2d"])
def test_plan_training_predicts_on_the_input_grid(organs_and_plan, tmp_path, configuration):
    dataset, plan = organs_and_plan
    context = 1 if configuration == "2d" else None
    result = train(dataset, tmp_path / "m", _config(val_every=2, slice_context=context), plan=plan,
                   configuration=configuration, val_cases=[dataset.cases[-1].name], progress=False)
    assert result.iterations == 2 and "val_dice" in result.last_metrics
    predictor = Predictor.from_folder(tmp_path / "m", backend="torch")
    cfg = predictor.config
    assert cfg.target_spacing == [3.0, 2.0, 2.0] and cfg.data_dims == 3
    assert cfg.spatial_dims == (3 if configuration == "3d" else 2)
    assert (cfg.slice_axis is None) == (configuration == "3d")
    # --slice-context 1: a 2D network sees each slice with one neighbour on each side (3 channels)
    steps = [s for s in cfg.preprocessing if s["name"] == "slice_context"]
    assert cfg.in_channels == (1 if configuration == "3d" else 3) and cfg.input_channels == 1
    assert steps == ([] if configuration == "3d" else [{"name": "slice_context", "axis": cfg.slice_axis,
                                                          "neighbours": 1}])
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


def test_sparse_annotation_trains_and_ignores_unlabelled_voxels(tmp_path):
    """A dataset with an ignore label (3 annotated slices per volume) trains end to end; the ignore
    value never reaches the loss as a class (it maps to the loss's ignore index)."""
    from medseg.datasets.sparsify import sparsify_dataset
    from medseg.losses import IGNORE_INDEX
    from medseg.training.data import LabelMapping, make_batch, prepare_case

    root = make_organs3d(tmp_path / "dense", cases=2, seed=2, shape=(10, 24, 24), num_organs=1)
    sparse = load_dataset(sparsify_dataset(load_dataset(root), tmp_path / "sparse", slices_per_volume=3))
    assert sparse.ignore_label is not None
    mapping = LabelMapping([v for v in sparse.label_values if v != sparse.ignore_label], sparse.ignore_label)
    case = prepare_case(sparse.cases[0], [{"name": "zscore"}], mapping)
    labelled_slices = np.flatnonzero((case.label[0] != IGNORE_INDEX).any(axis=(1, 2)))
    assert len(labelled_slices) == 3 and set(np.unique(case.label)) <= {IGNORE_INDEX, 0, 1}
    _, batch_label = make_batch([case], 0, seed=0, patch_size=(8, 16, 16), batch_size=2, foreground_share=0.5)
    assert (batch_label == IGNORE_INDEX).any()
    result = train(sparse, tmp_path / "m", TrainingConfig(network_options={"features": 4, "depth": 2},
                   patch_size=(8, 16, 16), batch_size=2, iterations=2, threads=1), progress=False)
    assert result.iterations == 2
    labels = Predictor.from_folder(tmp_path / "m", backend="torch").predict(sparse.cases[0].read_image())
    assert set(np.unique(labels.array)) <= {0, 1}  # the ignore value is never predicted
