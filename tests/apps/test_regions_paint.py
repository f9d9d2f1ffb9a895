"""Region outputs painted back to the dataset's own values (BraTS 0/1/2/4) on synthetic multi-modal data:
exactly from the region targets, and through the predictor (sigmoid heads, crop to non-zero, input grid)."""

import numpy as np

from medseg.datasets.synthetic import tumour3d_case
from medseg.inference.predictor import Predictor, labels_from_probabilities, region_label_values
from medseg.model_folder import load_config, save_config

REGIONS = {"whole_tumour": [1, 2, 4], "tumour_core": [1, 4], "enhancing": [4]}


def _model(tmp_path, crop=False):
    from tests.inference.test_predictor import make_model_folder

    folder = make_model_folder(tmp_path / "m", in_channels=4, num_classes=3, spatial_dims=3,
                               label_values=(0, 1, 2, 4), regions=REGIONS, preprocessing=[{"name": "zscore"}])
    config = load_config(folder)
    config.region_class_order = [2, 1, 4]
    config.crop_to_nonzero = crop
    save_config(folder, config)
    return folder


def test_targets_paint_back_exactly(tmp_path):
    _, label = tumour3d_case((12, 32, 32), seed=1, brats_values=True)
    values = label.array[0]
    assert set(np.unique(values).tolist()) == {0, 1, 2, 4}
    config = load_config(_model(tmp_path))
    assert region_label_values(config) == [2, 1, 4]
    targets = np.stack([np.isin(values, v) for v in REGIONS.values()]).astype(np.float32)
    np.testing.assert_array_equal(labels_from_probabilities(targets, config), values)


def test_predictor_outputs_brats_values_on_the_input_grid(tmp_path):
    image, _ = tumour3d_case((12, 32, 32), seed=2, brats_values=True, background_zero=True)
    predictor = Predictor.from_folder(_model(tmp_path, crop=True), backend="torch")
    labels, probs = predictor.predict_with_probabilities(image)
    assert labels.same_geometry(image) and probs.num_channels == 3
    assert set(np.unique(labels.array).tolist()) <= {0, 1, 2, 4}
    from medseg.preprocessing.crop import bounding_box

    box = bounding_box(image.array.max(0) != 0)  # outside the non-zero crop: background
    inside = np.zeros(image.spatial_shape, bool)
    inside[tuple(slice(a, b) for a, b in box)] = True
    assert not inside.all() and not labels.array[0][~inside].any()
    np.testing.assert_array_equal(predictor.predict(image).array, labels.array)
