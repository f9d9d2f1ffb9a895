"""Field-of-view finder and FOV-diameter rescaling on synthetic fundus-like discs."""

import numpy as np
import pytest

from medseg.errors import MedsegError
from medseg.metrics import dice
from medseg.image import Image
from medseg.preprocessing.fov import (_open_with_disc, aperture_diameter, find_fov, fit_aperture, fit_fov_circle,
                                     fov_diameter, fov_spacing)
from medseg.preprocessing.grid import GridLayout, to_network_grid


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


@pytest.mark.parametrize("radius", [1, 3, 6])
def test_opening_by_distance_transforms_equals_the_disc_opening(radius):
    from scipy import ndimage

    rng = np.random.default_rng(radius)
    mask = ndimage.gaussian_filter(rng.normal(size=(90, 110)), 1 + radius) > 0.02 / radius
    mask[:radius + 1], mask[-radius - 1:], mask[:, :radius + 1], mask[:, -radius - 1:] = False, False, False, False
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    expected = ndimage.binary_opening(mask, yy ** 2 + xx ** 2 <= radius ** 2)
    assert expected.any() and not np.array_equal(expected, mask)  # the opening removes something here
    np.testing.assert_array_equal(_open_with_disc(mask, radius), expected)
    for flat in (np.zeros((5, 6), bool), np.ones((5, 6), bool)):
        np.testing.assert_array_equal(_open_with_disc(flat, radius), flat)


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


def test_the_grid_rescales_to_the_training_diameter_and_back():
    """FOV normalisation is part of the case <-> network-grid transform: the network sees the recorded
    diameter, results come back on the input's grid."""
    rgb, fov = fundus()
    image = Image(rgb)
    layout = GridLayout(({"name": "green_channel"},), None, False, None, fov_diameter=100.0)
    case = to_network_grid(image, layout)  # no ROI: the FOV is found
    assert case.image.spatial_shape == (round(180 / 2), round(220 / 2))
    assert fov_diameter(find_fov(case.image.array)) == pytest.approx(100, abs=3)
    assert case.probabilities_to_input(np.ones((2,) + case.image.spatial_shape)).shape == (2, 180, 220)
    # the given ROI wins over the found FOV, and the label follows the image
    label = image.with_array(fov[None].astype(np.uint8))
    case = to_network_grid(image, layout, roi=label, label=label)
    assert case.label.spatial_shape == case.image.spatial_shape == case.roi.spatial_shape
    assert fov_diameter(case.roi.array[0] > 0) == pytest.approx(100, abs=3)
    # an aperture within 2 % of the recorded diameter is left alone (the training camera's own images)
    assert fov_spacing(fov, 201.0, (1.0, 1.0)) == (1.0, 1.0)
    assert to_network_grid(image, GridLayout(fov_diameter=201.0)).image.spatial_shape == (180, 220)


def test_aperture_diameter_only_for_circular_rois():
    _, fov = fundus()
    assert aperture_diameter(fov) == pytest.approx(200, abs=3)
    assert aperture_diameter(np.ones((50, 60))) is None
    square = np.zeros((60, 60), bool)
    square[10:50, 10:50] = True
    assert aperture_diameter(square) is None


def test_an_aperture_stretched_to_an_ellipse_comes_back_round():
    """A photograph resized non-uniformly: no circle fits its aperture (one through a straight cut would
    shrink the image to nothing); the axis-aligned ellipse does, and the grid makes it the recorded circle."""
    from scipy import ndimage

    rgb, _ = fundus()
    stretched = ndimage.zoom(rgb.astype(np.float32), (1, 0.7, 1.0), order=1)  # rows squeezed: radii 70 × 100
    roi = find_fov(stretched)
    cy, cx, ry, rx, match = fit_aperture(roi, "squeezed.png")
    assert (ry, rx) == (pytest.approx(70, abs=1.5), pytest.approx(100, abs=1.5)) and match > 0.97
    assert aperture_diameter(roi) is None  # not a circle: a training set of these records no diameter
    case = to_network_grid(Image(stretched), GridLayout(({"name": "green_channel"},), None, False, None,
                                                        fov_diameter=100.0))
    _, _, ry, rx, _ = fit_aperture(find_fov(case.image.array))
    assert ry == pytest.approx(50, abs=2) and rx == pytest.approx(50, abs=2)
    assert case.probabilities_to_input(np.ones((2,) + case.image.spatial_shape)).shape == (2,) + roi.shape


def test_a_roi_that_is_no_aperture_is_refused_by_name():
    rectangle = np.zeros((120, 160), bool)
    rectangle[20:100, 20:140] = True
    with pytest.raises(MedsegError, match=r"box.png: the field of view is no camera aperture"):
        fov_spacing(rectangle, 100.0, (1.0, 1.0), name="box.png")
    half = np.zeros((120, 160), bool)
    half[:, :80] = True  # one straight edge
    with pytest.raises(MedsegError, match="half.png"):
        fit_aperture(half, "half.png")


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


@pytest.mark.data
def test_stare_image_through_fov_normalisation(shared_data):
    """A STARE photograph (no FOV mask) on the grid of a DRIVE model (aperture 537.7 px): its FOV is found,
    the network sees DRIVE's diameter, and probabilities come back at STARE's 605 × 700."""
    import gzip
    import io

    from PIL import Image as PILImage


    path = shared_data / "STARE" / "stare-images" / "im0001.ppm.gz"
    if not path.is_file():
        pytest.skip("STARE not found")
    with gzip.open(path) as fh:
        image = Image(np.moveaxis(np.asarray(PILImage.open(io.BytesIO(fh.read()))), -1, 0))
    steps = ({"name": "green_channel"}, {"name": "clahe"}, {"name": "zscore", "mask": "roi"})
    case = to_network_grid(image, GridLayout(steps, None, False, None, fov_diameter=537.7))
    assert image.spatial_shape == (605, 700)
    found = fov_diameter(find_fov(image.array))
    assert 640 < found < 660  # STARE's aperture (BENCHMARKS.md: median 649.4 px)
    zoom = 537.7 / found
    assert case.image.spatial_shape == pytest.approx((605 * zoom, 700 * zoom), abs=1)
    roi = case.roi.array[0] > 0
    assert fov_diameter(roi) == pytest.approx(537.7, rel=0.01)
    inside = case.image.array[0][roi]
    assert abs(inside.mean()) < 0.05 and inside.std() == pytest.approx(1, abs=0.05)  # z-scored inside the FOV
    back = case.probabilities_to_input(np.stack([1.0 - roi, roi]).astype(np.float32))
    assert back.shape == (2, 605, 700)
    assert dice(back[1] >= 0.5, find_fov(image.array)) > 0.99
