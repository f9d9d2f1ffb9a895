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
