"""A volume too large for memory at the planned settings stops before the work, saying what to change."""

import numpy as np
import pytest

from medseg.cli import main
from medseg.datasets import load_dataset
from medseg.datasets.synthetic import make_organs3d
from medseg.errors import MedsegError
from medseg.image import Image
from medseg.inference.predictor import Predictor
from medseg.io import write_image
from medseg import resources
from medseg.preprocessing.resample import resampled_shape
from medseg.training.data import LabelMapping, prepare_case
from tests.inference.test_predictor import make_model_folder


@pytest.fixture
def little_memory(monkeypatch):
    monkeypatch.setattr(resources, "available_ram", lambda: 64 * 2**10)  # 64 KiB


def test_resampled_shape_keeps_the_extent():
    assert resampled_shape((9, 100), (10.0, 1.0), (5.0, 0.5)) == (18, 200)


def test_training_case_too_large_at_target_spacing(tmp_path, little_memory):
    data = load_dataset(make_organs3d(tmp_path / "o", cases=1, shape=(8, 16, 16)))
    case = data.cases[0]
    with pytest.raises(MedsegError, match="coarser target_spacing") as info:
        prepare_case(case, [], LabelMapping([0, 1, 2, 3]), target_spacing=(1.0, 0.5, 0.5))
    assert case.name in str(info.value) and str(case.image_paths[0]) in str(info.value)


def test_training_case_at_its_own_spacing_needs_no_resampling_memory(tmp_path, little_memory):
    data = load_dataset(make_organs3d(tmp_path / "o", cases=1, shape=(8, 16, 16)))
    prepared = prepare_case(data.cases[0], [], LabelMapping([0, 1, 2, 3]), target_spacing=(3.0, 1.0, 1.0))
    assert prepared.image.shape == (1, 8, 16, 16)


def test_prediction_too_large_is_refused_before_work(tmp_path, monkeypatch, capsys):
    folder = make_model_folder(tmp_path / "m", spatial_dims=3)
    image = Image(np.zeros((1, 12, 20, 20), np.float32))
    write_image(image, tmp_path / "big.nii.gz")
    monkeypatch.setattr(resources, "available_ram", lambda: 64 * 2**10)
    with pytest.raises(MedsegError, match="--fast 2"):
        Predictor.from_folder(folder, backend="torch").predict(image)
    out = tmp_path / "out"
    assert main(["predict", str(folder), "-i", str(tmp_path / "big.nii.gz"), "-o", str(out), "--backend", "torch"]) == 1
    assert not list(out.glob("*.nii.gz"))
    assert "big.nii.gz" in capsys.readouterr().err  # the error names the input
