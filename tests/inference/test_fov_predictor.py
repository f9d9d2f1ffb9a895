"""Field-of-view normalisation in the predictor: the network sees the training camera's FOV diameter, the
outputs have the input's size; recorded by training, applied by `medseg predict`, overridable."""

import json

import numpy as np
import pytest
import torch

from medseg.cli import main
from medseg.errors import MedsegError
from medseg.image import Image
from medseg.inference.predictor import LoadedModel, Predictor
from medseg.io import read_image, write_image
from medseg.model_folder import ModelConfig, load_config


def photograph(radius):
    size = int(radius * 2.4)
    yy, xx = np.mgrid[:size, :size]
    fov = np.hypot(yy - size / 2, xx - size / 2) < radius
    rgb = np.stack([fov * 180.0, fov * 90.0, fov * 40.0])
    rgb[1, (np.abs(yy - size // 2) < max(radius // 10, 1)) & fov] = 20  # a horizontal "vessel"
    return Image(rgb.astype(np.uint8)), fov


class DarkGreenNetwork:
    """Stands in for a network: 'vessel' where the green channel is dark; records what it was shown."""

    def __init__(self):
        self.seen = []

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.seen.append(batch[0].numpy().copy())
        vessel = (batch[:, 1] < 40) & (batch[:, 0] > 100)
        return torch.stack([(~vessel).float() * 10, vessel.float() * 10], 1)


def width(tile):
    """The widest row of the red disc in a network input tile (padded beyond the image)."""
    return int((tile[0] > 90).sum(1).max())


def predictor(fov_diameter, **options):
    config = ModelConfig(network="unet", network_options={}, in_channels=3, num_classes=2, spatial_dims=2,
                         channel_names=["R", "G", "B"], labels={"background": 0, "vessel": 1}, label_values=[0, 1],
                         patch_size=[512, 512], fov_diameter=fov_diameter)
    network = DarkGreenNetwork()
    return Predictor([LoadedModel(None, config, network)], **options), network


def test_network_sees_the_training_diameter_output_has_input_size():
    image, fov = photograph(100)
    p, network = predictor(100.0)
    labels, probs = p.predict_with_probabilities(image)
    seen = network.seen[0]
    assert width(seen) == pytest.approx(100, abs=4)  # the FOV of 200 px was halved
    assert labels.spatial_shape == image.spatial_shape and probs.array.shape == (2,) + image.spatial_shape
    assert labels.spacing == image.spacing
    vessel = (image.array[1] < 40) & fov
    assert (labels.array[0][vessel] == 1).mean() > 0.9 and (labels.array[0][~fov] == 0).all()
    # switched off: the network sees the native size
    p, network = predictor(100.0, fov_normalisation=False)
    p.predict(image)
    assert width(network.seen[0]) == pytest.approx(200, abs=4)
    # an all-black photograph: one line, no FOV
    with pytest.raises(MedsegError, match="no field of view found"):
        predictor(100.0)[0].predict(Image(np.zeros((3, 40, 40), np.uint8)))


def small_camera(root, radii=(20, 21, 22)):
    from medseg.datasets.dataset import write_dataset_json

    for i, radius in enumerate(radii):
        image, fov = photograph(radius)
        write_image(image, root / "imagesTr" / f"c{i}_0000.png")
        write_image(image.with_array(((image.array[1] < 40) & fov)[None].astype(np.uint8)), root / "labelsTr" / f"c{i}.png")
        write_image(image.with_array(fov[None].astype(np.uint8)), root / "roisTr" / f"c{i}.png")
    write_dataset_json(root, name="small", channel_names=["R", "G", "B"], labels={"background": 0, "vessel": 1},
                       file_ending=".png", num_training=len(radii))
    return root


TRAIN = ["--iterations", "1", "--patch-size", "32", "--batch-size", "2", "--features", "4", "--depth", "2",
         "--threads", "1", "--no-progress"]


def test_cli_records_and_applies_the_fov(tmp_path, capsys, one_thread):
    """`medseg train` records the training camera's FOV diameter (a rule), `medseg predict` applies it to
    another camera's photographs (FOV found), outputs at the input's size; black input: one line, nothing written."""
    data = small_camera(tmp_path / "small_camera")
    model = tmp_path / "model"
    assert main(["train", str(data), "--out", str(model), *TRAIN]) == 0
    assert "Field-of-view normalisation: FOV rescaled to" in " ".join(capsys.readouterr().err.split())
    assert load_config(model).fov_diameter == pytest.approx(42, abs=2)
    rule = next(r for r in json.loads((model / "rules.json").read_text()) if r["name"] == "fov_diameter")
    assert rule["inputs"]["cases_with_roi"] == 2  # the training cases (one is held out for validation)
    big = tmp_path / "big_camera"
    image, fov = photograph(60)
    write_image(image, big / "eye.png")
    out = tmp_path / "out"
    assert main(["predict", str(model), "-i", str(big), "-o", str(out), "--probabilities", "--threads", "1"]) == 0
    assert "Field-of-view normalisation: FOV rescaled to" in " ".join(capsys.readouterr().err.split())
    assert read_image(out / "eye.png").spatial_shape == image.spatial_shape
    assert (out / "probabilities" / "eye.tif").is_file()
    assert (read_image(out / "eye.png").array[0][~fov] == 0).all()
    assert np.mean((read_image(out / "roi" / "eye.png").array[0] > 0) == fov) > 0.99  # the found FOV, for evaluate
    write_image(Image(np.zeros((3, 40, 40), np.uint8)), tmp_path / "black" / "black.png")
    assert main(["predict", str(model), "-i", str(tmp_path / "black"), "-o", str(tmp_path / "o2")]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "no field of view found" in err and "black.png" in err and not (tmp_path / "o2").exists()
    assert main(["predict", str(model), "-i", str(big), "-o", str(tmp_path / "o3"), "--no-fov-normalisation"]) == 0
    assert "off (native size)" in capsys.readouterr().err
    assert (read_image(tmp_path / "o3" / "eye.png").array[0][~fov] == 0).all()  # the FOV is still found


def test_fov_record_for_a_model_without_it(tmp_path, capsys, one_thread):
    data = small_camera(tmp_path / "small_camera")
    model = tmp_path / "model"
    assert main(["train", str(data), "--out", str(model), "--fov-diameter", "none", *TRAIN]) == 0
    assert load_config(model).fov_diameter is None
    assert main(["fov-record", str(model), str(data)]) == 0
    assert load_config(model).fov_diameter == pytest.approx(42, abs=2)
    assert "Field-of-view normalisation" in capsys.readouterr().err
    grey = tmp_path / "grey"
    from medseg.datasets import make_organs3d

    make_organs3d(grey, cases=2, seed=0, shape=(8, 24, 24))
    assert main(["fov-record", str(model), str(grey)]) == 1
