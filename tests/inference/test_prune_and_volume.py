"""UNet++ pruning level selection and use, volumes.csv, and --fast prediction on a coarser grid."""

import csv
import json

import numpy as np
import pytest
import torch

from medseg.cli import main
from medseg.datasets import make_organs3d, make_vessels2d
from medseg.errors import MedsegError
from medseg.image import Image
from medseg.inference.predictor import Predictor, fast_spacing
from medseg.inference.volumes import label_volumes, write_volumes
from medseg.io import read_image
from medseg.model_folder import ModelConfig, load_config, load_pruning
from medseg.training.config import TrainingConfig
from medseg.training.loop import train


pytestmark = pytest.mark.usefixtures("one_thread")


def _config(net, **kw):
    base = dict(network=net, network_options={"features": 4, "depth": 3}, batch_size=2, iterations=4,
                val_every=100, checkpoint_every=100, threads=1, seed=0, warmup_iterations=1,
                augmentation={"enabled": False}, prefetch=1)
    base.update(kw)
    return TrainingConfig(**base)


@pytest.fixture(scope="module")
def vessels(tmp_path_factory):
    return make_vessels2d(tmp_path_factory.mktemp("d") / "vessels", cases=3, seed=0, size=48, test_cases=1)


@pytest.fixture(scope="module")
def unetpp(vessels, tmp_path_factory):
    folder = tmp_path_factory.mktemp("m") / "unetpp"
    train(vessels, folder, _config("unet_plus_plus", patch_size=(32, 32)), val_cases=["case_002"],
          progress=False, check=False)
    return folder


@pytest.fixture(scope="module")
def organs_model(tmp_path_factory):
    data = make_organs3d(tmp_path_factory.mktemp("d") / "organs", cases=2, seed=0, shape=(8, 32, 32),
                         spacing=(4.0, 1.0, 1.0), num_organs=2, test_cases=1)
    folder = tmp_path_factory.mktemp("m") / "organs"
    train(data, folder, _config("unet", network_options={"features": 4, "depth": 2}, patch_size=(8, 32, 32),
                                iterations=2), progress=False, check=False)
    return data, folder


# --- pruning --------------------------------------------------------------------------------------
def test_pruning_choice_is_recorded_and_follows_the_rule(unetpp):
    pruning = load_pruning(unetpp)
    rows = pruning["levels"]
    assert [r["level"] for r in rows] == [1, 2, 3]
    assert all(set(r) == {"level", "parameters", "seconds_per_case", "val_dice"} for r in rows)
    assert rows[0]["parameters"] < rows[1]["parameters"] < rows[2]["parameters"]
    assert all(r["seconds_per_case"] > 0 and 0.0 <= r["val_dice"] <= 1.0 for r in rows)
    best = max(r["val_dice"] for r in rows)
    expected = min(r["level"] for r in rows if r["val_dice"] >= best - 0.005)
    assert pruning["level"] == expected


def test_predictor_uses_the_recorded_level_unless_overridden(unetpp, vessels):
    chosen = load_pruning(unetpp)["level"]
    assert Predictor.from_folder(unetpp, backend="torch").models[0].prune_level == chosen
    image = read_image(next((vessels / "imagesTs").iterdir()))
    by_level = {}
    for level in (1, 3):
        predictor = Predictor.from_folder(unetpp, prune_level=level, backend="torch")
        model = predictor.models[0]
        assert model.prune_level == level and model.network.prune_level == level
        by_level[level] = predictor.predict_probabilities(image).array
    assert not np.allclose(by_level[1], by_level[3])  # really different sub-networks
    # ONNX: the pruned graph is exported separately and gives the pruned output
    onnx = Predictor.from_folder(unetpp, prune_level=1, backend="onnx").predict_probabilities(image).array
    assert (unetpp / "model_L1.onnx").is_file()
    assert np.allclose(onnx, by_level[1], atol=1e-4)
    with pytest.raises(MedsegError):
        Predictor.from_folder(unetpp, prune_level=4, backend="torch")  # depth 3


def test_pruned_level_equals_the_sub_network_output(unetpp):
    from medseg.model_folder import load_model

    _, model = load_model(unetpp)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        model.set_prune_level(1)
        pruned = model(x)
        top = model._columns(x, 1)
        direct = model.heads["x0_1"](top[0])
    assert torch.allclose(pruned, direct, atol=1e-6)


def test_cli_prune_level_and_non_prunable_model(unetpp, organs_model, vessels, tmp_path, capsys):
    out = tmp_path / "pred"
    assert main(["predict", str(unetpp), "-i", str(vessels / "imagesTs"), "-o", str(out), "--prune-level", "1"]) == 0
    assert "prune level(s): 1" in capsys.readouterr().err
    data, folder = organs_model
    assert main(["predict", str(folder), "-i", str(data / "imagesTs"), "-o", str(tmp_path / "p3"), "--backend", "torch",
                 "--prune-level", "2"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot be pruned" in errors[0]  # the message, on one line, not the layout


# --- volumes --------------------------------------------------------------------------------------
def _cfg(dims, labels=None, regions=None):
    labels = labels or {"background": 0, "prostate": 1, "bladder": 2}
    return ModelConfig("unet", {}, 1, len(labels), dims, ["0"], labels, sorted(labels.values()), [8] * dims,
                       regions=regions)


def test_volumes_of_known_shapes(tmp_path):
    array = np.zeros((1, 20, 30, 30), np.uint8)
    array[0, 2:12, 5:15, 5:25] = 1   # 10 × 10 × 20 voxels
    array[0, 15:17, 0:5, 0:5] = 2    # 2 × 5 × 5
    labels = Image(array, spacing=(3.0, 0.5, 0.5))  # 0.75 mm³ per voxel
    rows = label_volumes(labels, _cfg(3), "p1")
    assert [(r["label"], r["voxels"], r["unit"]) for r in rows] == [("prostate", 2000, "mL"), ("bladder", 50, "mL")]
    assert rows[0]["volume"] == pytest.approx(2000 * 0.75 / 1000)
    assert rows[1]["volume"] == pytest.approx(50 * 0.75 / 1000)

    flat = Image(np.pad(np.ones((1, 4, 5), np.uint8), ((0, 0), (1, 1), (1, 1))), spacing=(0.2, 0.5))
    rows2d = label_volumes(flat, _cfg(2, {"background": 0, "vessel": 1}), "v")
    assert rows2d == [{"case": "v", "label": "vessel", "value": "1", "voxels": 20, "volume": pytest.approx(2.0),
                       "unit": "mm2"}]

    regions = {"whole": [1, 2], "core": [2]}
    rrows = label_volumes(labels, _cfg(3, regions=regions), "p1")
    assert {r["label"]: r["voxels"] for r in rrows}["whole"] == 2050

    path = tmp_path / "volumes.csv"
    write_volumes(rows, path)
    write_volumes(rows2d, path)
    write_volumes([dict(rows[0], voxels=1)], path)  # re-predicting p1 replaces its rows, keeps v's
    read = list(csv.DictReader(path.open(encoding="utf-8")))
    assert [(r["case"], r["label"], r["voxels"]) for r in read] == [("v", "vessel", "20"), ("p1", "prostate", "1")]
    assert not list(tmp_path.glob("*.tmp*"))


def test_cli_writes_volumes_matching_the_prediction(organs_model, tmp_path, capsys):
    data, folder = organs_model
    out = tmp_path / "pred"
    assert main(["predict", str(folder), "-i", str(data / "imagesTs"), "-o", str(out), "--backend", "torch"]) == 0
    err = capsys.readouterr().err
    assert " mL" in err
    rows = list(csv.DictReader((out / "volumes.csv").open(encoding="utf-8")))
    pred = read_image(next(out.glob("*.nii.gz")))
    voxel_ml = float(np.prod(pred.spacing)) / 1000
    for row in rows:
        n = int((pred.array[0] == int(row["value"])).sum())
        assert int(row["voxels"]) == n and float(row["volume"]) == pytest.approx(n * voxel_ml, abs=1e-6)
    labels = json.loads((folder / "config.json").read_text(encoding="utf-8"))["labels"]
    assert {r["label"] for r in rows} == set(labels) - {"background"}


# --- fast mode ------------------------------------------------------------------------------------
def test_fast_spacing_keeps_thick_and_slice_axes():
    assert fast_spacing((4.0, 1.0, 1.0), 2) == (4.0, 2.0, 2.0)
    assert fast_spacing((1.0, 1.0, 1.0), 2, slice_axis=0) == (1.0, 2.0, 2.0)
    with pytest.raises(MedsegError):
        fast_spacing((1.0, 1.0), 0)


def test_fast_prediction_keeps_the_input_geometry(unetpp, organs_model, vessels, tmp_path, monkeypatch):
    import medseg.inference.predictor as predictor_module

    seen = []
    original = predictor_module.sliding_window_inference

    def spy(array, *args, **kwargs):
        seen.append(tuple(np.asarray(array).shape[1:]))
        return original(array, *args, **kwargs)

    monkeypatch.setattr(predictor_module, "sliding_window_inference", spy)
    src = read_image(next((vessels / "imagesTs").iterdir()))
    odd = Image(np.ascontiguousarray(src.array[:, :47, :45]), spacing=(0.5, 0.5), origin=(2.0, 3.0),
                channel_names=src.channel_names)  # odd sizes, non-unit spacing
    # the spacing grid itself (a fundus-like model's field-of-view rescaling would set the grid instead)
    normal = Predictor.from_folder(unetpp, backend="torch", fov_normalisation=False).predict(odd)
    fast = Predictor.from_folder(unetpp, fast=2, backend="torch", fov_normalisation=False).predict(odd)
    assert fast.spatial_shape == odd.spatial_shape == normal.spatial_shape
    assert np.allclose(fast.spacing, odd.spacing) and np.allclose(fast.origin, odd.origin)
    # normally the network sees the model's grid (the plan's target spacing), with --fast 2 a grid 2x coarser
    target = load_config(unetpp).target_spacing or odd.spacing
    grid = [n * s / t for n, s, t in zip((47, 45), odd.spacing, target)]
    assert all(abs(c - n) <= 1 for c, n in zip(seen[0], grid))
    assert all(abs(c - n / 2) <= 1 for c, n in zip(seen[1], grid))

    data, folder = organs_model
    image = read_image(next((data / "imagesTs").iterdir()))
    image = Image(image.array, spacing=image.spacing, origin=(5.0, -3.0, 2.0), direction=image.direction)
    fast3d = Predictor.from_folder(folder, fast=2, backend="torch").predict(image)
    assert seen[-1] == (8, 16, 16)  # the 4 mm slice axis keeps its spacing
    assert fast3d.spatial_shape == image.spatial_shape
    assert np.allclose(fast3d.origin, image.origin) and np.allclose(fast3d.direction, image.direction)

    out = tmp_path / "fast"
    assert main(["predict", str(folder), "-i", str(data / "imagesTs"), "-o", str(out), "--fast", "2",
                 "--backend", "torch"]) == 0
    written = read_image(next(out.glob("*.nii.gz")))
    assert written.spatial_shape == image.spatial_shape


def test_predictor_mirrors_as_the_model_records_unless_told():
    from types import SimpleNamespace

    from medseg.inference.predictor import _mirror_axes

    cfg = SimpleNamespace(tta_axes=[1, 2], mirror_axes=[0, 1, 2])
    assert _mirror_axes(None, cfg) == (1, 2)          # default: the recorded choice
    assert _mirror_axes(True, cfg) == (0, 1, 2)       # --tta: every mirror axis
    assert _mirror_axes(False, cfg) == ()             # --no-tta
    assert _mirror_axes((2,), cfg) == (2,)            # --tta-axes 2
    assert _mirror_axes(None, SimpleNamespace(tta_axes=[], mirror_axes=[0, 1])) == ()  # older models: none
