"""The bad-input corpus (issue 16): each test builds one kind of bad input and checks that the command
refuses it cleanly (see conftest.py for what "cleanly" asserts)."""

from __future__ import annotations

import gzip
import os
import json
import shutil
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.cli import main
from medseg.image import Image
from medseg.io import write_image


# --- generators ---------------------------------------------------------------------------------
def rgb_nifti(path: Path, value: float | None = None) -> Path:
    """A 2D three-channel NIfTI the vessel model accepts; ``value`` is painted into one pixel."""
    array = np.random.default_rng(0).random((3, 32, 32)).astype(np.float32)
    if value is not None:
        array[1, 5, 5] = value
    write_image(Image(array), path)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A valid-looking PNG header declaring width × height RGB pixels, with a few bytes of data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) \
        + png_chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


def nifti_bomb(path: Path, shape=(1100, 1100, 1100)) -> Path:
    """A 1 KB .nii.gz whose header claims ``shape`` float32 voxels."""
    image = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4))
    image.header.set_data_shape(shape)
    path.write_bytes(gzip.compress(image.header.binaryblock + b"\0" * 4 + b"\0" * 256))
    return path


def truncated(source: Path, path: Path, keep: float = 0.5) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def volume(path: Path, value: float | None = None, shape=(6, 16, 16), spacing=(2.0, 1.0, 1.0), **kw) -> Path:
    array = np.random.default_rng(1).random((1, *shape)).astype(np.float32)
    if value is not None:
        array[0, 1, 2, 3] = value
    write_image(Image(array, spacing=spacing), path, **kw)
    return path


def copy_model(world, dst: Path) -> Path:
    shutil.copytree(world.model, dst)
    return dst


def copy_data(world, dst: Path) -> Path:
    shutil.copytree(world.data, dst)
    return dst


# --- predict ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_predict_non_finite_voxels(world, tmp_path, refused, value):
    src = rgb_nifti(tmp_path / "eye.nii.gz", value)
    refused(["predict", world.model, "-i", src, "-o", tmp_path / "out"], [src, "NaN/infinite"])


def test_predict_truncated_png(world, tmp_path, refused):
    src = truncated(world.test_image, tmp_path / "eye.png")
    refused(["predict", world.model, "-i", src, "-o", tmp_path / "out"], [src])


def test_predict_empty_file(world, tmp_path, refused):
    (tmp_path / "eye.png").write_bytes(b"")
    refused(["predict", world.model, "-i", tmp_path / "eye.png", "-o", tmp_path / "out"], [tmp_path / "eye.png", "empty"])


def test_predict_png_decompression_bomb(world, tmp_path, refused):
    src = png_bomb(tmp_path / "eye.png")
    refused(["predict", world.model, "-i", src, "-o", tmp_path / "out"], [src])


def test_predict_nifti_header_bomb(world, tmp_path, refused):
    src = nifti_bomb(tmp_path / "eye.nii.gz")
    refused(["predict", world.model, "-i", src, "-o", tmp_path / "out"], [src, "1100×1100×1100"])


def test_predict_unknown_extension(world, tmp_path, refused):
    (tmp_path / "eye.xyz").write_bytes(b"not an image")
    refused(["predict", world.model, "-i", tmp_path / "eye.xyz", "-o", tmp_path / "out"], [tmp_path / "eye.xyz"])


def test_predict_missing_input(world, tmp_path, refused):
    refused(["predict", world.model, "-i", tmp_path / "absent.png", "-o", tmp_path / "out"], [tmp_path / "absent.png"])


@pytest.mark.parametrize("option,value", [("--overlap", "1.5"), ("--overlap", "-0.1"), ("--batch-size", "0"),
                                          ("--threads", "0"), ("--fast", "0.5")])
def test_predict_option_out_of_range(world, tmp_path, refused, option, value):
    refused(["predict", world.model, "-i", world.test_image, "-o", tmp_path / "out", option, value], [option])


@pytest.mark.parametrize("overwrite", [False, True], ids=["first-run", "overwrite"])
def test_predict_output_folder_is_input_folder(world, tmp_path, refused, overwrite):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(world.test_image, images / "eye.png")
    refused(["predict", world.model, "-i", images, "-o", images] + (["--overwrite"] if overwrite else []),
            [images, "input"])


def test_predict_output_inside_input_folder(world, tmp_path, refused):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(world.test_image, images / "eye.png")
    refused(["predict", world.model, "-i", images, "-o", images / "pred"], [images / "pred", "inside"])


def test_predict_output_is_a_file(world, tmp_path, refused):
    (tmp_path / "out").write_text("a file", encoding="utf-8")
    refused(["predict", world.model, "-i", world.test_image, "-o", tmp_path / "out"], [tmp_path / "out"])


def test_predict_existing_output_needs_overwrite(world, tmp_path, refused):
    (tmp_path / "out").mkdir()
    existing = tmp_path / "out" / f"{world.test_image.name.split('_0000')[0]}.png"
    existing.write_bytes(b"earlier result")
    refused(["predict", world.model, "-i", world.test_image, "-o", tmp_path / "out"], [existing, "--overwrite"])


def test_predict_config_with_wrong_types(world, tmp_path, refused):
    model = copy_model(world, tmp_path / "m")
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    config["num_classes"] = "two"
    config["patch_size"] = "big"
    (model / "config.json").write_text(json.dumps(config), encoding="utf-8")
    refused(["predict", model, "-i", world.test_image, "-o", tmp_path / "out"], [model / "config.json"])


def test_predict_config_not_json(world, tmp_path, refused):
    model = copy_model(world, tmp_path / "m")
    (model / "config.json").write_text("{not json", encoding="utf-8")
    refused(["predict", model, "-i", world.test_image, "-o", tmp_path / "out"], [model / "config.json", "JSON"])


def test_predict_corrupt_weights(world, tmp_path, refused):
    model = copy_model(world, tmp_path / "m")
    (model / "model.safetensors").write_bytes(b"\x00" * 64)
    refused(["predict", model, "-i", world.test_image, "-o", tmp_path / "out"], [model])


def evil_pickle(path: Path) -> Path:
    import os
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.getpid, ())  # harmless, but code: weights_only refuses it

    path.write_bytes(pickle.dumps({"model": Payload()}))
    return path


def test_predict_weights_of_another_network(world, tmp_path, refused):
    import torch
    from safetensors.torch import save_file

    model = copy_model(world, tmp_path / "m")
    save_file({"encoder.0.0.0.weight": torch.zeros(3, 3)}, str(model / "model.safetensors"))
    refused(["predict", model, "-i", world.test_image, "-o", tmp_path / "out"],
            [model / "model.safetensors", "another network"])


def test_predict_pickled_code_in_checkpoint(world, tmp_path, refused):
    model = copy_model(world, tmp_path / "m")
    evil_pickle(model / "checkpoint_best.pt")
    message = refused(["predict", model, "-i", world.test_image, "-o", tmp_path / "out", "--checkpoint", "best"],
                      [model / "checkpoint_best.pt", "refused"])
    assert "weights_only=False" not in message


def test_train_resume_from_pickled_code(world, tmp_path, refused):
    model = copy_model(world, tmp_path / "m")
    evil_pickle(model / "checkpoint_last.pt")
    refused(["train", world.data, "--out", model, "--resume", "--iterations", "3"], [model / "checkpoint_last.pt",
                                                                                     "refused"])


def test_predict_not_a_model_folder(world, tmp_path, refused):
    (tmp_path / "m").mkdir()
    refused(["predict", tmp_path / "m", "-i", world.test_image, "-o", tmp_path / "out"], [tmp_path / "m"])


def test_predict_3d_image_into_2d_model(world, tmp_path, refused):
    src = volume(tmp_path / "ct.nii.gz")
    refused(["predict", world.model, "-i", src, "-o", tmp_path / "out"], [src])


# --- segment ------------------------------------------------------------------------------------
def test_segment_output_is_input(tmp_path, refused):
    src = volume(tmp_path / "ct.nii.gz")
    refused(["segment", "otsu", src, "-o", src], [src, "input"])


def test_segment_output_exists(tmp_path, refused):
    src = volume(tmp_path / "ct.nii.gz")
    (tmp_path / "seg.nii.gz").write_bytes(b"earlier")
    refused(["segment", "otsu", src, "-o", tmp_path / "seg.nii.gz"], [tmp_path / "seg.nii.gz", "--overwrite"])


def test_segment_lossy_output(world, tmp_path, refused):
    refused(["segment", "otsu", world.test_image, "-o", tmp_path / "seg.jpg", "--channel", "G"], [tmp_path / "seg.jpg", "lossy"])


def test_segment_region_growing_without_seed(tmp_path, refused):
    src = volume(tmp_path / "ct.nii.gz")
    refused(["segment", "connected_threshold", src, "-o", tmp_path / "seg.nii.gz", "-O", "lower=0", "-O", "upper=1"],
            ["--seed"])


def test_segment_nan_input(tmp_path, refused):
    src = volume(tmp_path / "ct.nii.gz", np.nan)
    refused(["segment", "otsu", src, "-o", tmp_path / "seg.nii.gz"], [src, "NaN"])


def test_segment_truncated_mha(tmp_path, refused):
    full = volume(tmp_path / "full.mha")
    src = truncated(full, tmp_path / "ct.mha")
    full.unlink()
    refused(["segment", "otsu", src, "-o", tmp_path / "seg.nii.gz"], [src, "truncated"])


def test_segment_truncated_uncompressed_nifti(tmp_path, refused):
    full = volume(tmp_path / "full.nii")
    src = truncated(full, tmp_path / "ct.nii", 0.6)
    full.unlink()
    refused(["segment", "otsu", src, "-o", tmp_path / "seg.nii.gz"], [src, "truncated"])


def test_segment_garbage_nifti(tmp_path, refused):
    src = tmp_path / "ct.nii.gz"
    src.write_bytes(np.random.default_rng(0).integers(0, 256, 700, dtype=np.uint8).tobytes())
    refused(["segment", "otsu", src, "-o", tmp_path / "seg.nii.gz"], [src])


def test_segment_roi_of_another_shape(tmp_path, refused):
    src = volume(tmp_path / "ct.nii.gz")
    roi = tmp_path / "roi.nii.gz"
    write_image(Image(np.ones((1, 6, 8, 8), np.uint8), spacing=(2.0, 1.0, 1.0)), roi)
    refused(["segment", "otsu", src, "-o", tmp_path / "seg.nii.gz", "--roi", roi], [roi])


def test_segment_roi_with_fractions(tmp_path, refused):
    src = volume(tmp_path / "ct.nii.gz")
    roi = volume(tmp_path / "roi.nii.gz")  # random floats in [0, 1): not a label map
    refused(["segment", "otsu", src, "-o", tmp_path / "seg.nii.gz", "--roi", roi], [roi, "whole numbers"])


def test_segment_nrrd_header_bomb(tmp_path, refused):
    src = tmp_path / "ct.nrrd"
    src.write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nsizes: 2000 2000 2000\nencoding: gzip\n\n"
                    + gzip.compress(b"\0" * 100))
    refused(["segment", "otsu", src, "-o", tmp_path / "seg.nii.gz"], [src])


# --- evaluate -----------------------------------------------------------------------------------
def _labels(folder: Path, array: np.ndarray, name: str = "case.nii.gz") -> Path:
    folder.mkdir(exist_ok=True)
    write_image(Image(array, spacing=(2.0, 1.0, 1.0)), folder / name)
    return folder / name


def _gt(tmp_path: Path) -> Path:
    array = np.zeros((1, 6, 16, 16), np.uint8)
    array[0, 2:4, 4:10, 4:10] = 1
    _labels(tmp_path / "gt", array)
    return tmp_path / "gt"


def test_evaluate_empty_prediction_folder(tmp_path, refused):
    gt = _gt(tmp_path)
    (tmp_path / "pred").mkdir()
    refused(["evaluate", tmp_path / "pred", gt, "--out", tmp_path / "ev", "--workers", "1"], [tmp_path / "pred"])


def test_evaluate_undeclared_prediction_values(tmp_path, refused):
    gt = _gt(tmp_path)
    array = np.zeros((1, 6, 16, 16), np.uint8)
    array[0, 1, 1, 1] = 7
    pred = _labels(tmp_path / "pred", array)
    refused(["evaluate", tmp_path / "pred", gt, "--out", tmp_path / "ev", "--workers", "1", "--labels", "organ=1"],
            [pred, "7"])


def test_evaluate_fractional_prediction(tmp_path, refused):
    gt = _gt(tmp_path)
    pred = _labels(tmp_path / "pred", np.full((1, 6, 16, 16), 0.5, np.float32))
    refused(["evaluate", tmp_path / "pred", gt, "--out", tmp_path / "ev", "--workers", "1"], [pred, "whole numbers"])


def test_evaluate_fractional_ground_truth(tmp_path, refused):
    gt = _labels(tmp_path / "gt", np.full((1, 6, 16, 16), 0.25, np.float32))
    _labels(tmp_path / "pred", np.zeros((1, 6, 16, 16), np.uint8))
    refused(["evaluate", tmp_path / "pred", tmp_path / "gt", "--out", tmp_path / "ev", "--workers", "1",
             "--labels", "organ=1"], [gt, "whole numbers"])


def test_evaluate_missing_ground_truth_folder(tmp_path, refused):
    _labels(tmp_path / "pred", np.zeros((1, 6, 16, 16), np.uint8))
    refused(["evaluate", tmp_path / "pred", tmp_path / "nogt", "--out", tmp_path / "ev"], [tmp_path / "nogt"])


def test_evaluate_output_inside_predictions(tmp_path, refused):
    gt = _gt(tmp_path)
    _labels(tmp_path / "pred", np.zeros((1, 6, 16, 16), np.uint8))
    refused(["evaluate", tmp_path / "pred", gt, "--out", tmp_path / "pred" / "ev"], [tmp_path / "pred" / "ev", "inside"])


def test_evaluate_no_matching_case_names(tmp_path, refused):
    gt = _gt(tmp_path)
    _labels(tmp_path / "pred", np.zeros((1, 6, 16, 16), np.uint8), "other.nii.gz")
    refused(["evaluate", tmp_path / "pred", gt, "--out", tmp_path / "ev", "--workers", "1"], [tmp_path / "pred", "other"])


def test_evaluate_prediction_on_another_grid(tmp_path, refused):
    gt = _gt(tmp_path)
    pred = _labels(tmp_path / "pred", np.zeros((1, 6, 8, 8), np.uint8))
    refused(["evaluate", tmp_path / "pred", gt, "--out", tmp_path / "ev", "--workers", "1", "--labels", "organ=1"],
            [pred])


def test_evaluate_corrupt_probabilities(tmp_path, refused):
    gt = _gt(tmp_path)
    _labels(tmp_path / "pred", np.zeros((1, 6, 16, 16), np.uint8))
    (tmp_path / "prob").mkdir()
    (tmp_path / "prob" / "case.npz").write_bytes(b"PK\x03\x04 not really a zip")
    refused(["evaluate", tmp_path / "pred", gt, "--out", tmp_path / "ev", "--workers", "1", "--probabilities",
             tmp_path / "prob"], [tmp_path / "prob" / "case.npz"])


def test_evaluate_probabilities_outside_0_1(tmp_path, refused):
    gt = _gt(tmp_path)
    _labels(tmp_path / "pred", np.zeros((1, 6, 16, 16), np.uint8))
    (tmp_path / "prob").mkdir()
    np.savez(tmp_path / "prob" / "case.npz", probabilities=np.full((1, 6, 16, 16), 3.0, np.float32))
    refused(["evaluate", tmp_path / "pred", gt, "--out", tmp_path / "ev", "--workers", "1", "--probabilities",
             tmp_path / "prob"], [tmp_path / "prob" / "case.npz", "[0, 1]"])


def test_evaluate_negative_nsd_tolerance(tmp_path, refused):
    gt = _gt(tmp_path)
    _labels(tmp_path / "pred", np.zeros((1, 6, 16, 16), np.uint8))
    refused(["evaluate", tmp_path / "pred", gt, "--out", tmp_path / "ev", "--nsd-tolerance", "-1"], ["--nsd-tolerance"])


# --- check --------------------------------------------------------------------------------------
def test_check_dataset_json_not_json(world, tmp_path, refused):
    data = copy_data(world, tmp_path / "d")
    (data / "dataset.json").write_text("{\"labels\": ", encoding="utf-8")
    refused(["check", data], [data / "dataset.json", "line 1"])


def test_check_dataset_json_is_a_list(world, tmp_path, refused):
    data = copy_data(world, tmp_path / "d")
    (data / "dataset.json").write_text("[1, 2]", encoding="utf-8")
    refused(["check", data], [data / "dataset.json", "JSON object"])


def test_check_missing_dataset_json(tmp_path, refused):
    (tmp_path / "d").mkdir()
    refused(["check", tmp_path / "d"], [tmp_path / "d", "dataset.json"])


def test_check_label_without_image(world, tmp_path, refused):
    data = copy_data(world, tmp_path / "d")
    shutil.copy(data / "labelsTr" / "case_000.png", data / "labelsTr" / "case_999.png")
    text = refused(["check", data], ["case_999"], error_line=False)
    assert "has no image" in text


def test_check_file_ending_mismatch(world, tmp_path, refused):
    data = copy_data(world, tmp_path / "d")
    meta = json.loads((data / "dataset.json").read_text(encoding="utf-8"))
    meta["file_ending"] = ".nii.gz"
    (data / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    text = refused(["check", data], [".png"], error_line=False)
    assert "file_ending" in text


def test_check_nan_image(world, tmp_path, refused):
    data = copy_data(world, tmp_path / "d")
    meta = json.loads((data / "dataset.json").read_text(encoding="utf-8"))
    meta["file_ending"] = ".nii.gz"
    meta["channel_names"] = {"0": "grey"}
    for folder in ("imagesTr", "labelsTr", "roisTr", "imagesTs", "labelsTs", "roisTs"):
        shutil.rmtree(data / folder, ignore_errors=True)
    volume(data / "imagesTr" / "c_0000.nii.gz", np.nan)
    write_image(Image(np.zeros((1, 6, 16, 16), np.uint8), spacing=(2.0, 1.0, 1.0)), data / "labelsTr" / "c.nii.gz")
    (data / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    text = refused(["check", data], ["c_0000.nii.gz"], error_line=False)
    assert "NaN" in text


# --- convert ------------------------------------------------------------------------------------
def test_convert_destination_inside_source(tmp_path, refused):
    (tmp_path / "src").mkdir()
    refused(["convert", "drive", tmp_path / "src", tmp_path / "src" / "out"], [tmp_path / "src" / "out", "inside"])


def test_convert_destination_exists(tmp_path, refused):
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    refused(["convert", "drive", tmp_path / "src", tmp_path / "dst"], [tmp_path / "dst", "exists"])


def test_convert_unknown_layout(tmp_path, refused):
    (tmp_path / "src").mkdir()
    refused(["convert", "nosuch", tmp_path / "src", tmp_path / "dst"], ["nosuch"])


def test_convert_source_without_images(tmp_path, refused):
    (tmp_path / "src").mkdir()
    refused(["convert", "drive", tmp_path / "src", tmp_path / "dst"], [tmp_path / "src"])


# --- train --------------------------------------------------------------------------------------
@pytest.mark.parametrize("option,value", [("--lr", "-1"), ("--batch-size", "-2"), ("--iterations", "0"),
                                          ("--foreground-share", "1.5"), ("--threads", "0")])
def test_train_bad_option_creates_nothing(world, tmp_path, refused, option, value):
    refused(["train", world.data, "--out", tmp_path / "m", "--iterations", "1", option, value], [option])


def test_train_patch_beyond_memory(world, tmp_path, refused):
    refused(["train", world.data, "--out", tmp_path / "m", "--patch-size", "512,512,512", "--iterations", "1"],
            ["--patch-size", "memory"])


def test_train_model_folder_inside_dataset(world, tmp_path, refused):
    data = copy_data(world, tmp_path / "d")
    refused(["train", data, "--out", data / "model", "--iterations", "1"], [data / "model", "inside"])


def test_train_dataset_json_not_json(world, tmp_path, refused):
    data = copy_data(world, tmp_path / "d")
    (data / "dataset.json").write_text("{", encoding="utf-8")
    refused(["train", data, "--out", tmp_path / "m", "--iterations", "1"], [data / "dataset.json"])


def test_train_plan_not_json(world, tmp_path, refused):
    (tmp_path / "plan.json").write_text("nope", encoding="utf-8")
    refused(["train", world.data, "--out", tmp_path / "m", "--plan", tmp_path / "plan.json", "--iterations", "1"],
            [tmp_path / "plan.json"])



def test_train_plan_of_3d_data_on_2d_data(world, tmp_path, refused):
    from medseg.datasets.synthetic import make_organs3d

    volumes = make_organs3d(tmp_path / "volumes", cases=2, seed=0, shape=(8, 16, 16))
    plan = tmp_path / "plan3d.json"
    assert main(["plan", str(volumes), "--out", str(plan)]) == 0
    refused(["train", world.data, "--out", tmp_path / "m", "--plan", plan, "--iterations", "1"], [plan, "3D", "2D"])


# --- plan and threshold ---------------------------------------------------------------------------
def test_plan_dataset_json_wrong_type(world, tmp_path, refused):
    data = copy_data(world, tmp_path / "d")
    (data / "dataset.json").write_text("\"just a string\"", encoding="utf-8")
    refused(["plan", data, "--out", tmp_path / "plan.json"], [data / "dataset.json"])


def test_plan_missing_dataset(tmp_path, refused):
    refused(["plan", tmp_path / "nothing", "--out", tmp_path / "plan.json"], [tmp_path / "nothing"])


def test_threshold_model_config_not_json(world, tmp_path, refused):
    model = copy_model(world, tmp_path / "m")
    (model / "config.json").write_text("[", encoding="utf-8")
    refused(["threshold", model, world.data], [model / "config.json"])


def test_threshold_dataset_without_json(world, tmp_path, refused):
    (tmp_path / "d").mkdir()
    refused(["threshold", world.model, tmp_path / "d"], [tmp_path / "d"])


# --- usage ----------------------------------------------------------------------------------------
def test_unknown_option_is_a_usage_error(world, tmp_path, refused):
    refused(["predict", world.model, "-i", world.test_image, "-o", tmp_path / "out", "--no-such-option"],
            ["--no-such-option"], code=2, error_line=False)


def test_train_augmentation_file_not_json(world, tmp_path, refused):
    (tmp_path / "aug.json").write_text("{'single': 'quotes'}", encoding="utf-8")
    refused(["train", world.data, "--out", tmp_path / "m", "--iterations", "1", "--augmentation", tmp_path / "aug.json"],
            [tmp_path / "aug.json", "JSON"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders: nothing to refuse")
def test_predict_into_read_only_folder(world, tmp_path, refused):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        refused(["predict", world.model, "-i", world.test_image, "-o", folder / "out"], [folder])
    finally:
        folder.chmod(0o755)


def test_plan_output_inside_dataset(world, tmp_path, refused):
    data = copy_data(world, tmp_path / "d")
    refused(["plan", data, "--out", data / "plan.json"], [data / "plan.json", "inside"])


def test_predict_roi_with_fractions(world, tmp_path, refused):
    roi = tmp_path / "roi.tif"
    write_image(Image(np.full((1, 32, 32), 0.5, np.float32)), roi)
    refused(["predict", world.model, "-i", world.test_image, "-o", tmp_path / "out", "--roi", roi], [roi, "whole numbers"])
