"""Field-of-view finder and FOV-diameter rescaling on synthetic fundus-like discs."""

import numpy as np
import pytest

from medseg.errors import MedsegError
from medseg.metrics import dice
from medseg.preprocessing.fov import find_fov, fit_fov_circle, fov_diameter, rescale_to_diameter, restore_size


def fundus(shape=(180, 220), centre=(90, 110), radius=100, seed=0):
    """A reddish disc (cut off at the top and bottom like DRIVE/STARE) with darker vessels, a bright
    optic disc, vignetting towards the rim, and camera noise on the dark surround."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    r = np.hypot(yy - centre[0], xx - centre[1])
    fov = r < radius
    shade = np.where(fov, 1.0 - 0.5 * (r / radius) ** 2, 0)
    rgb = np.stack([170 * shade, 80 * shade, 30 * shade])
    for k in range(6):  # vessels: dark lines
        rows = (centre[0] + (xx - centre[1]) * np.tan(k * 0.5)).astype(int)
        rgb[:, np.abs(yy - rows) < 2] *= 0.6
    rgb[:, np.hypot(yy - centre[0], xx - centre[1] - 40) < 12] = 240  # optic disc
    rgb += rng.normal(0, 3, rgb.shape) + 4
    return np.clip(rgb, 0, 255).astype(np.uint8), fov


def test_finds_the_disc_and_its_diameter():
    rgb, fov = fundus()
    roi = find_fov(rgb)
    assert dice(roi, fov) > 0.99
    cy, cx, radius = fit_fov_circle(roi)
    assert abs(cy - 90) < 1.5 and abs(cx - 110) < 1.5 and abs(radius - 100) < 1.5
    assert fov_diameter(roi) == pytest.approx(200, abs=3)
    # float images in [0, 1] and grey images work the same
    assert dice(find_fov(rgb / 255.0), fov) > 0.99
    assert dice(find_fov(rgb[0]), fov) > 0.99


def test_diameter_survives_a_circle_cut_at_the_sides():
    rgb, _ = fundus(shape=(180, 180), centre=(90, 90), radius=100)  # wider than the image
    assert fov_diameter(find_fov(rgb)) == pytest.approx(200, abs=4)


def test_rescale_to_the_training_diameter_and_back():
    rgb, fov = fundus()
    roi = find_fov(rgb)
    out, out_roi, scale = rescale_to_diameter(rgb, roi, target_diameter=100)
    assert scale == pytest.approx(0.5, abs=0.01)
    assert out.shape == (3, round(180 * scale), round(220 * scale))
    assert fov_diameter(out_roi) == pytest.approx(100, abs=3)
    back = restore_size(out_roi.astype(np.uint8), roi.shape, order=0)
    assert back.shape == roi.shape and back.dtype == np.uint8 and dice(back > 0, roi) > 0.98
    probs = restore_size(np.stack([1 - out_roi, out_roi]).astype(np.float32), roi.shape)
    assert probs.shape == (2,) + roi.shape and probs.dtype == np.float32


def test_blank_image_is_one_line_error():
    with pytest.raises(MedsegError, match="no field of view found"):
        find_fov(np.zeros((3, 50, 60), np.uint8), name="black.png")
    with pytest.raises(MedsegError, match="black.png"):
        find_fov(np.full((3, 50, 60), 200, np.uint8), name="black.png")
    with pytest.raises(MedsegError, match="2D photograph"):
        find_fov(np.zeros((2, 3, 5, 5)))


@pytest.mark.data
def test_stare_image_fov(shared_data):
    """STARE ships no FOV masks: the found FOV must be the camera's circle and hold Hoover's vessels."""
    import gzip
    import io

    from PIL import Image as PILImage

    stare = shared_data / "STARE"
    if not stare.is_dir():
        pytest.skip("STARE not found")

    def read(path):
        with gzip.open(path) as fh:
            return np.asarray(PILImage.open(io.BytesIO(fh.read())))

    rgb = np.moveaxis(read(stare / "stare-images" / "im0001.ppm.gz"), -1, 0)
    vessels = read(stare / "labels-ah" / "im0001.ah.ppm.gz") > 127
    vessels = vessels if vessels.ndim == 2 else vessels.any(-1)
    roi = find_fov(rgb, name="im0001")
    cy, cx, radius = fit_fov_circle(roi)
    assert 0.6 < roi.mean() < 0.85
    assert abs(cx - rgb.shape[2] / 2) < 30 and abs(cy - rgb.shape[1] / 2) < 30 and 300 < radius < 340
    assert vessels[roi].sum() / vessels.sum() > 0.995
    yy, xx = np.mgrid[:roi.shape[0], :roi.shape[1]]
    disc = np.hypot(yy - cy, xx - cx) < radius
    assert (roi & ~disc).mean() < 0.005  # nothing outside the aperture
