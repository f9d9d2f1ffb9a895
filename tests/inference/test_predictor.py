"""Predictor: output geometry equals input geometry (NIfTI with a non-trivial direction, PNG), channel
checks, ensembling, regions, ONNX Runtime backend equals eager PyTorch, CLI errors."""

from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.errors import MedsegError
from medseg.image import Image
from medseg.inference.predictor import Predictor, labels_from_probabilities, region_label_values
from medseg.io import read_image, write_image
from medseg.model_folder import ModelConfig, build_network, load_config, save_config, save_weights


def make_model_folder(path: Path, *, in_channels=1, input_channels=None, num_classes=2, spatial_dims=2,
                      label_values=(0, 1), preprocessing=(), regions=None, patch=None, seed=0) -> Path:
    torch.manual_seed(seed)
    labels = {"background": 0, **{f"l{v}": v for v in label_values if v}}
    config = ModelConfig(
        network="unet", network_options={"features": 4, "depth": 2}, in_channels=in_channels,
        input_channels=input_channels or in_channels, num_classes=num_classes, spatial_dims=spatial_dims,
        channel_names=[str(c) for c in range(input_channels or in_channels)], labels=labels,
        label_values=list(label_values), patch_size=list(patch or ([16] * spatial_dims)),
        regions=regions, preprocessing=list(preprocessing),
    )
    path.mkdir(parents=True)
    save_config(path, config)
    net = build_network(config)
    with torch.no_grad():  # make outputs depend strongly on the input so labels are not constant
        net.head.bias.copy_(torch.linspace(-0.2, 0.2, num_classes))
    save_weights(net, path / "model.safetensors")
    return path


def _rotation(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def test_nifti_prediction_keeps_geometry(tmp_path):
    folder = make_model_folder(tmp_path / "m3", spatial_dims=3, num_classes=3, label_values=(0, 1, 2),
                               preprocessing=[{"name": "zscore"}])
    rng = np.random.default_rng(0)
    image = Image(rng.normal(size=(1, 11, 20, 17)).astype(np.float32), spacing=(3.0, 0.8, 0.7),
                  origin=(10.0, -20.0, 5.5), direction=_rotation(0.3))
    path = tmp_path / "case.nii.gz"
    write_image(image, path)
    original = read_image(path)
    pred = Predictor.from_folder(folder, backend="torch").predict(original)
    out = tmp_path / "pred.nii.gz"
    write_image(pred, out)
    back = read_image(out)
    assert back.spatial_shape == original.spatial_shape
    np.testing.assert_allclose(back.spacing, original.spacing, rtol=1e-6)
    np.testing.assert_allclose(back.origin, original.origin, atol=1e-5)
    np.testing.assert_allclose(back.direction, original.direction, atol=1e-6)
    assert back.array.dtype.kind in "iu" and set(np.unique(back.array)) <= {0, 1, 2}


def test_png_prediction_keeps_size_and_rgb_preprocessing(tmp_path):
    folder = make_model_folder(tmp_path / "m", in_channels=1, input_channels=3,
                               preprocessing=[{"name": "green_channel"}, {"name": "zscore"}])
    rng = np.random.default_rng(1)
    image = Image(rng.integers(0, 255, (3, 37, 45), dtype=np.uint8))
    write_image(image, tmp_path / "img.png")
    pred = Predictor.from_folder(folder, backend="torch").predict(read_image(tmp_path / "img.png"))
    write_image(pred, tmp_path / "pred.png")
    back = read_image(tmp_path / "pred.png")
    assert back.spatial_shape == (37, 45) and back.num_channels == 1


def test_wrong_channel_count_is_a_clear_error(tmp_path):
    folder = make_model_folder(tmp_path / "m", in_channels=2)
    with pytest.raises(MedsegError, match="expects 2 channel"):
        Predictor.from_folder(folder, backend="torch").predict(Image(np.zeros((1, 20, 20), np.float32)))
    with pytest.raises(MedsegError, match="2D"):
        Predictor.from_folder(folder, backend="torch").predict(Image(np.zeros((2, 4, 20, 20), np.float32)))


def test_grey_picture_stored_as_rgb_is_one_channel_and_colour_is_refused(tmp_path):
    from PIL import Image as PILImage

    folder = make_model_folder(tmp_path / "m", in_channels=1, preprocessing=[{"name": "zscore"}])
    predictor = Predictor.from_folder(folder, backend="torch")
    yy, xx = np.mgrid[:40, :52]
    grey = (120 + 100 * np.sin(xx / 5.0) * np.cos(yy / 7.0)).astype(np.uint8)
    expected = predictor.predict_probabilities(Image(grey[None])).array
    as_rgb = predictor.predict_probabilities(Image(np.stack([grey] * 3), channel_names=("R", "G", "B"))).array
    np.testing.assert_allclose(as_rgb, expected, atol=1e-5)
    PILImage.fromarray(grey).convert("RGB").save(tmp_path / "bscan.jpg", quality=90)  # how OCT exports arrive
    jpeg = read_image(tmp_path / "bscan.jpg")
    assert jpeg.num_channels == 3 and predictor.predict(jpeg).spatial_shape == (40, 52)
    colour = np.stack([grey, grey // 2, 255 - grey])
    with pytest.raises(MedsegError, match="expects 1 channel.*has 3 .a colour picture"):
        predictor.predict(Image(colour, channel_names=("R", "G", "B")))


def test_probabilities_roi_and_label_values(tmp_path):
    folder = make_model_folder(tmp_path / "m", num_classes=3, label_values=(0, 2, 5))
    image = Image(np.random.default_rng(2).normal(size=(1, 30, 30)).astype(np.float32), spacing=(0.5, 0.25))
    roi = image.with_array(np.zeros((1, 30, 30), np.uint8))
    roi.array[0, 5:25, 5:25] = 1
    labels, probs = Predictor.from_folder(folder, backend="torch").predict_with_probabilities(image, roi)
    assert probs.num_channels == 3 and probs.spacing == image.spacing
    np.testing.assert_allclose(probs.array.sum(0), 1, atol=1e-5)
    assert set(np.unique(labels.array)) <= {0, 2, 5}
    assert np.all(labels.array[0][roi.array[0] == 0] == 0)
    inside = roi.array[0] == 1
    expected = np.array([0, 2, 5])[probs.array.argmax(0)]
    np.testing.assert_array_equal(labels.array[0][inside], expected[inside])


def test_ensemble_averages_probabilities(tmp_path):
    a = make_model_folder(tmp_path / "a", seed=1)
    b = make_model_folder(tmp_path / "b", seed=2)
    image = Image(np.random.default_rng(3).normal(size=(1, 24, 24)).astype(np.float32))
    pa = Predictor.from_folder(a, backend="torch").predict_probabilities(image).array
    pb = Predictor.from_folder(b, backend="torch").predict_probabilities(image).array
    ens = Predictor.from_folders([a, b], backend="torch").predict_probabilities(image).array
    np.testing.assert_allclose(ens, (pa + pb) / 2, atol=1e-6)


def test_region_outputs_paint_nested_labels(tmp_path):
    regions = {"whole": [1, 2, 3], "core": [2, 3], "enhancing": [3]}
    config = load_config(make_model_folder(tmp_path / "r", num_classes=3, label_values=(0, 1, 2, 3), regions=regions))
    assert region_label_values(config) == [1, 2, 3]
    probs = np.zeros((3, 1, 4))
    probs[0, 0, 1:] = 0.9
    probs[1, 0, 2:] = 0.9
    probs[2, 0, 3] = 0.9
    assert labels_from_probabilities(probs, config).tolist() == [[0, 1, 2, 3]]
    image = Image(np.random.default_rng(4).normal(size=(1, 20, 20)).astype(np.float32))
    labels, probs = Predictor.from_folder(tmp_path / "r", backend="torch").predict_with_probabilities(image)
    assert probs.num_channels == 3 and set(np.unique(labels.array)) <= {0, 1, 2, 3}


def test_largest_component(tmp_path):
    from medseg.postprocessing import keep_largest_component

    lab = np.zeros((20, 20), np.uint8)
    lab[1:5, 1:5] = 1
    lab[10:12, 10:12] = 1
    lab[15:19, 2:4] = 2
    out = keep_largest_component(lab, connectivity=lab.ndim)  # as Predictor(largest_component=True)
    assert out[10, 10] == 0 and out[2, 2] == 1 and out[16, 3] == 2


def test_onnx_backend_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    folder = make_model_folder(tmp_path / "m", num_classes=3, label_values=(0, 1, 2))
    image = Image(np.random.default_rng(5).normal(size=(1, 40, 33)).astype(np.float32))
    ref = Predictor.from_folder(folder, backend="torch").predict_probabilities(image).array
    onnx = Predictor.from_folder(folder, backend="onnx").predict_probabilities(image).array
    assert (folder / "model.onnx").is_file()
    np.testing.assert_allclose(onnx, ref, atol=1e-4)


def test_tta_axes_make_the_prediction_mirror_equivariant_along_those_axes(tmp_path):
    folder = make_model_folder(tmp_path / "m", seed=6)
    config = load_config(folder)
    config.mirror_axes = [0, 1]  # as training writes for 2D data
    save_config(folder, config)
    image = Image(np.random.default_rng(6).normal(size=(1, 24, 24)).astype(np.float32))
    flipped = {axis: image.with_array(np.flip(image.array, 1 + axis).copy()) for axis in (0, 1)}

    def equivariant(tta, axis):
        # one tile: a symmetric window
        predictor = Predictor.from_folder(folder, tta=tta, tile_size=(24, 24), backend="torch")
        direct = predictor.predict_probabilities(image).array
        mirrored = predictor.predict_probabilities(flipped[axis]).array
        return np.allclose(np.flip(mirrored, 1 + axis), direct, atol=1e-5)

    assert not equivariant(False, 0) and not equivariant(False, 1)  # the random network is not symmetric
    assert equivariant((1,), 1) and not equivariant((1,), 0)
    assert equivariant(True, 0) and equivariant(True, 1)  # the model's mirror axes: both in 2D


def test_python_and_cli_share_the_default_backend():
    """One owner of the default: ``Predictor.from_folder(s)`` and ``medseg predict --backend`` both use
    ``medseg.constants.DEFAULT_BACKEND`` (``auto``, the backend rule)."""
    import inspect

    from medseg.cli.predict import predict
    from medseg.constants import DEFAULT_BACKEND

    assert DEFAULT_BACKEND == "auto"
    for method in (Predictor.from_folder, Predictor.from_folders):
        assert inspect.signature(method).parameters["backend"].default == DEFAULT_BACKEND
    assert inspect.signature(predict).parameters["backend"].default.default == DEFAULT_BACKEND


def rival_blobs(tmp_path: Path):
    """A model that marks label 1 wherever its input is positive, and an image of two blobs of 36 and 25
    pixels: keeping the largest component removes a rival of 69 % of its size."""
    from medseg.inference.predictor import LoadedModel

    folder = make_model_folder(tmp_path / "m")
    model = LoadedModel(folder, load_config(folder), lambda x: torch.cat([-x, x], dim=1) * 10)
    blobs = -np.ones((1, 24, 24), np.float32)
    blobs[0, 2:8, 2:8] = 1
    blobs[0, 14:19, 14:19] = 1
    return model, blobs


def test_a_largest_component_step_that_removes_a_rival_of_comparable_size_is_noted(tmp_path):
    from dataclasses import replace

    from medseg.inference.predictor import LoadedModel

    model, blobs = rival_blobs(tmp_path)
    image = Image(blobs)
    notes = []
    labels, _ = Predictor([model], largest_component=True).predict_with_probabilities(
        image, probabilities=False, notes=notes)
    assert int((labels.array == 1).sum()) == 36
    assert len(notes) == 1 and "'largest component' of l1 kept 36 voxels and removed 25 (69% of it)" in notes[0]
    recorded = LoadedModel(model.folder, replace(model.config, postprocessing=[{"step": "largest", "label": 1}]),
                           model.network)
    notes = []
    Predictor([recorded]).predict_with_probabilities(image, probabilities=False, notes=notes)
    assert len(notes) == 1  # the model folder's recorded step is watched too
    blobs[0, 14:19, 14:19] = -1
    blobs[0, 14:16, 14:16] = 1  # 4 pixels: noise, removed without a note
    notes = []
    Predictor([model], largest_component=True).predict_with_probabilities(Image(blobs), probabilities=False,
                                                                          notes=notes)
    assert notes == []


def test_medseg_predict_prints_and_reports_the_close_call(tmp_path):
    from medseg.cli.predict import CaseJob, predict_case

    model, blobs = rival_blobs(tmp_path)
    write_image(Image(blobs), tmp_path / "case.nii.gz")
    report = tmp_path / "out" / "case_report.html"
    report.parent.mkdir()
    job = CaseJob("case", [tmp_path / "case.nii.gz"], tmp_path / "out" / "case.nii.gz", None, None, False, None,
                  report, None, False, [model.folder])
    _, line, _ = predict_case(Predictor([model], largest_component=True), job)
    assert "\n  warning: 'largest component' of l1 kept 36 voxels and removed 25 (69% of it)" in line
    assert "kept 36 voxels and removed 25" in report.read_text(encoding="utf-8")
