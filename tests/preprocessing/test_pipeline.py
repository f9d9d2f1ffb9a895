import json

import numpy as np
import pytest

from medseg import Image
from medseg.errors import MedsegError
from medseg.preprocessing import apply_pipeline, histogram_reference, validate_pipeline


def _fundus(rng):
    rgb = rng.integers(0, 255, (3, 48, 64)).astype(np.uint8)
    roi = np.zeros((48, 64), bool)
    roi[4:44, 6:58] = True
    rgb[:, ~roi] = 0
    return Image(rgb, spacing=(0.5, 0.5), origin=(3.0, 4.0), channel_names=("R", "G", "B")), roi


def test_fundus_pipeline_json_round_trip_identical(rng):
    img, roi = _fundus(rng)
    ref = histogram_reference([rng.normal(0.5, 0.1, (1, 32, 32))], n_quantiles=64, channel_axis=0)
    steps = [
        {"name": "green_channel"},
        {"name": "clahe", "clip_limit": 0.02, "mask": "roi"},
        {"name": "match_histograms", "reference": ref, "mask": "roi"},
        {"name": "gamma", "gamma": 1.2},
        {"name": "zscore", "mask": "roi"},
    ]
    recorded = json.loads(json.dumps(validate_pipeline(steps)))
    a = apply_pipeline(img, steps, roi=roi)
    b = apply_pipeline(img, recorded, roi=roi)
    assert a.array.dtype == np.float32 and a.array.shape == (1, 48, 64)
    assert np.array_equal(a.array, b.array)
    assert a.channel_names == ("green",)
    assert a.same_geometry(img)
    inside = a.array[0][roi]
    assert abs(inside.mean()) < 1e-4 and abs(inside.std() - 1) < 1e-3


def test_ct_pipeline_with_fixed_stats_and_nonzero_mask(rng):
    vol = rng.normal(40, 100, (1, 6, 12, 12)).astype(np.float32)
    img = Image(vol, spacing=(3.0, 1.0, 1.0))
    steps = [{"name": "clip", "low": -100, "high": 200}, {"name": "zscore", "mean": 40.0, "std": 80.0}]
    out = apply_pipeline(img, steps)
    assert np.allclose(out.array, (np.clip(vol, -100, 200) - 40) / 80, atol=1e-5)
    mr = np.zeros((1, 6, 12, 12), np.float32)
    mr[:, 1:5, 2:10, 2:10] = rng.normal(300, 30, (1, 4, 8, 8))
    out = apply_pipeline(Image(mr), [{"name": "zscore", "mask": "nonzero"}])
    body = mr[0] != 0
    assert abs(out.array[0][body].mean()) < 1e-4


def test_window_and_rescale_steps_multichannel(rng):
    img = Image(rng.normal(0, 200, (2, 10, 10)).astype(np.float32), channel_names=("ct", "pet"))
    out = apply_pipeline(img, [{"name": "window", "level": [40, 0], "width": [400, 100]}])
    assert out.channel_names == ("ct", "pet") and out.array.min() >= 0 and out.array.max() <= 1
    out = apply_pipeline(img, [{"name": "rescale", "out_range": [-1, 1]}])
    assert np.allclose(out.array.reshape(2, -1).min(1), -1) and np.allclose(out.array.reshape(2, -1).max(1), 1)


@pytest.mark.parametrize(
    "steps, message",
    [
        ({"name": "zscore"}, "must be a list"),
        ([{"clip_limit": 0.1}], "step 0 has no 'name'"),
        ([{"name": "zscore"}, {"name": "sharpen"}], "step 1: unknown step 'sharpen'"),
        ([{"name": "clahe", "cliplimit": 0.1}], "step 0 \\(clahe\\): unknown field 'cliplimit'"),
        ([{"name": "window", "level": 40}], "missing required field 'width'"),
        ([{"name": "clahe", "clip_limit": -1}], "field 'clip_limit' must be a positive number"),
        ([{"name": "zscore", "mask": "brain"}], "field 'mask'"),
        ([{"name": "rescale", "out_range": [1, 0]}], "field 'out_range'"),
        ([{"name": "match_histograms", "reference": [3, 2, 1]}], "field 'reference'"),
        ([{"name": "window", "level": 40, "width": 400, "output": "hu"}], "field 'output'"),
        ([{"name": "zscore", "channels": 0}], "field 'channels'"),
        ([{"name": "zscore", "channels": [1, 1]}], "field 'channels'"),
    ],
)
def test_validate_pipeline_names_bad_step_and_field(steps, message):
    with pytest.raises(MedsegError, match=message):
        validate_pipeline(steps)


def test_channels_field_restricts_a_step(rng):
    """The planner's multi-modal form: CT clip + dataset z-score on channel 0, per-case z-score on 1."""
    ct = rng.normal(40, 300, (8, 8))
    mr = rng.normal(500, 50, (8, 8))
    img = Image(np.stack([ct, mr]).astype(np.float32), channel_names=("CT", "MR"))
    steps = [
        {"name": "clip", "low": -100.0, "high": 300.0, "channels": [0]},
        {"name": "zscore", "mean": 50.0, "std": 100.0, "channels": [0]},
        {"name": "zscore", "mask": None, "channels": [1]},
    ]
    recorded = json.loads(json.dumps(validate_pipeline(steps)))
    assert recorded[0]["channels"] == [0]
    out = apply_pipeline(img, recorded)
    assert out.channel_names == ("CT", "MR")
    assert np.allclose(out.array[0], (np.clip(ct, -100, 300) - 50) / 100, atol=1e-5)
    assert abs(out.array[1].mean()) < 1e-4 and abs(out.array[1].std() - 1) < 1e-3
    partial = apply_pipeline(img, [{"name": "rescale", "channels": [1]}])
    assert np.array_equal(partial.array[0], img.array[0])  # untouched channel
    with pytest.raises(MedsegError, match="channels \\[2\\] but the image has 2"):
        apply_pipeline(img, [{"name": "zscore", "channels": [2]}])
    rgb = Image(rng.integers(0, 255, (3, 4, 4)).astype(np.uint8))
    with pytest.raises(MedsegError, match="cannot take 'channels'"):
        apply_pipeline(rgb, [{"name": "green_channel", "channels": [0, 1, 2]}])


def test_slice_context_stacks_each_channel_with_its_neighbouring_slices(rng):
    """2.5D: each channel followed by its slices at offsets -1, 0, +1 along the named axis; the ends repeat."""
    volume = rng.normal(0, 1, (2, 5, 4, 3)).astype(np.float32)
    img = Image(volume, channel_names=("T2", "ADC"))
    out = apply_pipeline(img, [{"name": "slice_context", "axis": 1}])
    assert out.channel_names == ("T2[-1]", "T2", "T2[+1]", "ADC[-1]", "ADC", "ADC[+1]")
    assert out.spatial_shape == img.spatial_shape
    assert np.array_equal(out.array[1], volume[0]) and np.array_equal(out.array[4], volume[1])
    assert np.array_equal(out.array[2][:, :3], volume[0][:, 1:])   # +1: the next slice along axis 1
    assert np.array_equal(out.array[2][:, 3], volume[0][:, 3])     # past the end: the last slice again
    assert np.array_equal(out.array[3][:, 1:], volume[1][:, :3])   # -1: the previous slice
    wide = apply_pipeline(img, [{"name": "slice_context", "axis": 0, "neighbours": 2}])
    assert wide.num_channels == 10 and np.array_equal(wide.array[0][2], volume[0][0])
    with pytest.raises(MedsegError, match="slice axis 2 but the image has 2 spatial axes"):
        apply_pipeline(Image(volume[:, 0]), [{"name": "slice_context", "axis": 2}])
    with pytest.raises(MedsegError, match="cannot take 'channels'"):
        apply_pipeline(img, [{"name": "slice_context", "axis": 0, "channels": [0]}])


def test_validate_fills_defaults():
    (step,) = validate_pipeline([{"name": "clahe"}])
    assert step == {"name": "clahe", "clip_limit": 0.01, "kernel_size": None, "nbins": 256, "mask": None}


def test_apply_errors_name_the_step(rng):
    img = Image(rng.normal(0, 1, (1, 8, 8)))
    with pytest.raises(MedsegError, match="step 0 \\(zscore\\).*no ROI"):
        apply_pipeline(img, [{"name": "zscore", "mask": "roi"}])
    with pytest.raises(MedsegError, match="step 1 \\(green_channel\\).*colour image"):
        apply_pipeline(img, [{"name": "rescale"}, {"name": "green_channel"}])
    with pytest.raises(MedsegError, match="roi of shape"):
        apply_pipeline(img, [{"name": "zscore", "mask": "roi"}], roi=np.ones((4, 4), bool))
    with pytest.raises(MedsegError, match="2 values for 1 channels"):
        apply_pipeline(img, [{"name": "clip", "low": [0, 0], "high": [1, 1]}])


def test_roi_as_image_on_same_grid(rng):
    img = Image(rng.normal(3, 2, (1, 8, 8)), spacing=(2.0, 2.0))
    roi = img.with_array(np.ones((1, 8, 8), np.uint8))
    out = apply_pipeline(img, [{"name": "zscore", "mask": "roi"}], roi=roi)
    assert abs(out.array.mean()) < 1e-5
