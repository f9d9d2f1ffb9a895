"""FOV-diameter normalised prediction: the network sees the training camera's FOV size, the output has the
input's size."""

import numpy as np
import pytest

from medseg.errors import MedsegError
from medseg.image import Image
from medseg.inference.fov import FovNormalisedPredictor, training_fov_diameter
from medseg.model_folder import ModelConfig
from medseg.preprocessing.fov import fov_diameter, find_fov


class ThresholdPredictor:
    """Stands in for a network: 'vessel' where the green channel is dark; records what it was shown."""

    config = ModelConfig(network="unet", network_options={}, in_channels=3, num_classes=2, spatial_dims=2,
                         channel_names=["R", "G", "B"], labels={"background": 0, "vessel": 1}, label_values=[0, 1],
                         patch_size=[32, 32])

    def predict_with_probabilities(self, image, roi=None, probabilities=True):
        self.seen = image
        fg = (image.array[1] < 40).astype(np.float32) * (roi.array[0] > 0)
        return None, image.with_array(np.stack([1 - fg, fg]), ["background", "vessel"])


def photograph(radius):
    size = int(radius * 2.4)
    yy, xx = np.mgrid[:size, :size]
    fov = np.hypot(yy - size / 2, xx - size / 2) < radius
    rgb = np.stack([fov * 180.0, fov * 90.0, fov * 40.0])
    rgb[1, np.abs(yy - size // 2) < radius // 10] = 20  # a horizontal "vessel"
    return Image(rgb.astype(np.uint8)), fov


def test_network_sees_the_training_diameter_output_has_input_size():
    image, fov = photograph(100)
    inner = ThresholdPredictor()
    labels, probs = FovNormalisedPredictor(inner, fov_diameter=100).predict_with_probabilities(image)
    assert fov_diameter(find_fov(inner.seen.array)) == pytest.approx(100, abs=4)
    assert inner.seen.spacing == image.spacing
    assert labels.spatial_shape == image.spatial_shape and probs.array.shape == (2,) + image.spatial_shape
    vessel = (image.array[1] < 40) & fov
    assert (labels.array[0][vessel] == 1).mean() > 0.9 and (labels.array[0][~fov] == 0).all()


def test_training_diameter_and_errors():
    images = [photograph(r)[0].array for r in (50, 60, 70)]
    assert training_fov_diameter(images) == pytest.approx(120, abs=3)
    with pytest.raises(MedsegError, match="no field of view"):
        FovNormalisedPredictor(ThresholdPredictor(), 100).predict(Image(np.zeros((3, 40, 40), np.uint8)))
    with pytest.raises(MedsegError, match="positive"):
        FovNormalisedPredictor(ThresholdPredictor(), 0)


def test_fov_record_in_a_model_folder(tmp_path):
    from medseg.inference.fov import load_fov_diameter, save_fov_diameter

    assert load_fov_diameter(tmp_path) is None
    with pytest.raises(MedsegError, match="not recorded"):
        FovNormalisedPredictor.from_folder(tmp_path)
    save_fov_diameter(tmp_path, 537.7, "median of the training FOV masks")
    assert load_fov_diameter(tmp_path) == pytest.approx(537.7)
    (tmp_path / "fov.json").write_text('{"fov_diameter": "wide"}')
    with pytest.raises(MedsegError, match="fov.json"):
        load_fov_diameter(tmp_path)


def test_cli_fov_record_and_predict(tmp_path, capsys, one_thread):
    """`medseg fov-record` + `medseg predict-fov` on fundus-like photographs of two 'cameras'."""
    from medseg.cli import main
    from medseg.datasets.dataset import write_dataset_json
    from medseg.inference.fov import load_fov_diameter
    from medseg.io import read_image, write_image

    data = tmp_path / "small_camera"
    for i, radius in enumerate((20, 21, 22)):
        image, fov = photograph(radius)
        write_image(image, data / "imagesTr" / f"c{i}_0000.png")
        write_image(image.with_array(((image.array[1] < 40) & fov)[None].astype(np.uint8)), data / "labelsTr" / f"c{i}.png")
        write_image(image.with_array(fov[None].astype(np.uint8)), data / "roisTr" / f"c{i}.png")
    write_dataset_json(data, name="small", channel_names=["R", "G", "B"], labels={"background": 0, "vessel": 1},
                       file_ending=".png", num_training=3)
    model = tmp_path / "model"
    assert main(["train", str(data), "--out", str(model), "--iterations", "1", "--patch-size", "32", "--batch-size",
                 "2", "--features", "4", "--depth", "2", "--threads", "1", "--no-progress"]) == 0
    assert main(["predict-fov", str(model), "-i", str(data / "imagesTr"), "-o", str(tmp_path / "x")]) == 1
    assert "fov-record" in capsys.readouterr().err
    assert main(["fov-record", str(model), str(data)]) == 0
    assert load_fov_diameter(model) == pytest.approx(2 * 21, abs=2)
    big = tmp_path / "big_camera"
    image, fov = photograph(60)
    write_image(image, big / "eye.png")
    out = tmp_path / "out"
    assert main(["predict-fov", str(model), "-i", str(big), "-o", str(out), "--probabilities"]) == 0
    assert read_image(out / "eye.png").spatial_shape == image.spatial_shape
    assert (out / "probabilities" / "eye.tif").is_file()
    assert np.mean((read_image(out / "fov" / "eye.png").array[0] > 0) == fov) > 0.99
    write_image(Image(np.zeros((3, 40, 40), np.uint8)), tmp_path / "black" / "black.png")
    capsys.readouterr()
    assert main(["predict-fov", str(model), "-i", str(tmp_path / "black"), "-o", str(tmp_path / "o2")]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "no field of view found" in err and "black.png" in err and not (tmp_path / "o2" / "black.png").exists()
