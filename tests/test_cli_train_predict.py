"""End to end through the command line: train a few iterations, predict, evaluate; and the CLI's errors."""

import json

import numpy as np
import pytest
from rich.console import Console

from medseg.cli import main
from medseg.cli.train import prepare_backend
from medseg.datasets import make_organs3d, make_vessels2d
from medseg.image import Image
from medseg.io import read_image, write_image
from medseg.model_folder import load_rules


@pytest.fixture(scope="module")
def vessels(tmp_path_factory):
    return make_vessels2d(tmp_path_factory.mktemp("d") / "vessels", cases=3, seed=0, size=48, test_cases=2)


def _train_args(dataset, out, *extra):
    return ["train", str(dataset), "--out", str(out), "--iterations", "3", "--patch-size", "32",
            "--batch-size", "2", "--features", "4", "--depth", "2", "--threads", "1", "--no-progress", *extra]


def test_train_predict_evaluate_2d(vessels, tmp_path, capsys):
    model = tmp_path / "model"
    assert main(_train_args(vessels, model, "--val-cases", "case_002", "--val-every", "2")) == 0
    assert (model / "model.safetensors").is_file()
    pred = tmp_path / "pred"
    assert main(["predict", str(model), "-i", str(vessels / "imagesTs"), "-o", str(pred), "--probabilities",
                 "--roi", str(vessels / "roisTs")]) == 0
    for name in ("case_003", "case_004"):
        out = read_image(pred / f"{name}.png")
        src = read_image(vessels / "imagesTs" / f"{name}_0000.png")
        assert out.spatial_shape == src.spatial_shape and out.num_channels == 1
        assert (pred / "probabilities" / f"{name}.tif").is_file()
    report = tmp_path / "eval"
    assert main(["evaluate", str(pred), str(vessels / "labelsTs"), "--out", str(report), "--roi",
                 str(vessels / "roisTs"), "--probabilities", str(pred / "probabilities")]) == 0
    summary = json.loads((report / "summary.json").read_text(encoding="utf-8"))
    text = json.dumps(summary)
    assert "dice" in text and "roc_auc" in text

    # an existing output without --overwrite: clear error, nothing rewritten
    before = (pred / "case_003.png").stat().st_mtime_ns
    assert main(["predict", str(model), "-i", str(vessels / "imagesTs"), "-o", str(pred)]) == 1
    assert "--overwrite" in capsys.readouterr().err.replace("\n", "")
    assert (pred / "case_003.png").stat().st_mtime_ns == before
    assert main(["predict", str(model), "-i", str(vessels / "imagesTs"), "-o", str(pred), "--overwrite"]) == 0

    # several inputs after one -i; a grey image has the wrong channel count
    one = tmp_path / "one"
    assert main(["predict", str(model), "-i", str(vessels / "imagesTs" / "case_003_0000.png"),
                 str(vessels / "imagesTs" / "case_004_0000.png"), "-o", str(one)]) == 0
    assert sorted(p.name for p in one.glob("*.png")) == ["case_003.png", "case_004.png"]
    assert (one / "volumes.csv").is_file()
    grey = tmp_path / "grey.png"
    write_image(Image(np.zeros((1, 48, 48), np.uint8)), grey)
    capsys.readouterr()
    assert main(["predict", str(model), "-i", str(grey), "-o", str(tmp_path / "g")]) == 1
    assert "channel" in capsys.readouterr().err
    assert not (tmp_path / "g" / "grey.png").exists()

    # an ensemble of model folders (here the same one twice) and the ONNX Runtime backend agree
    ens = tmp_path / "ens"
    assert main(["predict", str(model), str(model), "-i", str(vessels / "imagesTs"), "-o", str(ens),
                 "--roi", str(vessels / "roisTs"), "--backend", "onnx"]) == 0
    for name in ("case_003", "case_004"):
        a, b = read_image(pred / f"{name}.png").array, read_image(ens / f"{name}.png").array
        assert np.mean(a != b) < 0.005  # float differences of the backend may flip exact ties only
    whole = tmp_path / "whole"
    assert main(["predict", str(model), "-i", str(vessels / "imagesTs"), "-o", str(whole), "--tile-size", "48"]) == 0
    assert read_image(whole / "case_003.png").spatial_shape == (48, 48)

    # resume extends the run
    assert main(["train", str(vessels), "--out", str(model), "--iterations", "5", "--resume", "--no-progress"]) == 0
    assert (model / "training_log.csv").read_text(encoding="utf-8").splitlines()[-1].startswith("5,")


def test_train_3d_and_predict_nifti(tmp_path):
    data = make_organs3d(tmp_path / "organs", cases=2, seed=0, shape=(8, 24, 24), num_organs=2, test_cases=1)
    model = tmp_path / "m3"
    assert main(["train", str(data), "--out", str(model), "--iterations", "2", "--patch-size", "8,16,16",
                 "--batch-size", "1", "--features", "4", "--depth", "2", "--threads", "1", "--no-progress"]) == 0
    rule = next(r for r in load_rules(model) if r["name"] == "prepare_backend")
    assert rule["value"] is False and not list(model.glob("*.pt2"))  # a trial run: the first prediction compiles
    prepare_backend(model, 3600.0, Console(quiet=True))  # what a run of an hour does after training
    assert next(r for r in load_rules(model) if r["name"] == "prepare_backend")["value"] is True
    packages = list(model.glob("*.pt2"))
    assert len(packages) == 1
    stamp = packages[0].stat().st_mtime_ns
    pred = tmp_path / "p3"
    assert main(["predict", str(model), "-i", str(data / "imagesTs"), "-o", str(pred)]) == 0
    assert list(model.glob("*.pt2")) == packages and packages[0].stat().st_mtime_ns == stamp  # used, not rebuilt
    src = read_image(data / "imagesTs" / "case_002_0000.nii.gz")
    out = read_image(pred / "case_002.nii.gz")
    assert out.same_geometry(src)
    assert set(np.unique(out.array)) <= {0, 1, 2}


def test_dataset_with_problems_stops_before_training(vessels, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(vessels, broken)
    (broken / "labelsTr" / "case_001.png").write_bytes(b"not a png")
    assert main(_train_args(broken, tmp_path / "m")) == 1
    err = capsys.readouterr().err
    assert "problem" in err and "case_001" in err
    assert not (tmp_path / "m" / "model.safetensors").exists()
