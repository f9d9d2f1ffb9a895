import json

import numpy as np
import pytest

import medseg
from medseg.preprocessing import apply_pipeline, histogram_reference


@pytest.mark.data
def test_fundus_pipeline_on_drive(shared_data):
    train = shared_data / "DRIVE" / "training"
    img = medseg.read_image(train / "images" / "21_training.tif")
    roi = medseg.read_image(train / "mask" / "21_training_mask.gif")
    other = medseg.read_image(train / "images" / "22_training.tif")
    other_roi = medseg.read_image(train / "mask" / "22_training_mask.gif").array[0] > 0
    ref = histogram_reference([other.array[1]], n_quantiles=128, masks=[other_roi])
    steps = [
        {"name": "green_channel"},
        {"name": "match_histograms", "reference": ref, "mask": "roi"},
        {"name": "clahe", "clip_limit": 0.01, "mask": "roi"},
        {"name": "zscore", "mask": "roi"},
    ]
    out = apply_pipeline(img, steps, roi=roi)
    again = apply_pipeline(img, json.loads(json.dumps(steps)), roi=roi)
    assert np.array_equal(out.array, again.array)
    assert out.array.shape == (1, 584, 565) and out.channel_names == ("green",)
    inside = out.array[0][roi.array[0] > 0]
    assert abs(float(inside.mean())) < 1e-4 and abs(float(inside.std()) - 1) < 1e-3
    # vessels are dark in green: the manual vessel pixels stay darker than the rest of the FOV
    vessels = medseg.read_image(train / "1st_manual" / "21_manual1.gif").array[0] > 0
    assert out.array[0][vessels].mean() < inside.mean() - 0.5
