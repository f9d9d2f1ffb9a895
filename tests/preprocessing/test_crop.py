import numpy as np
import pytest

from medseg.errors import GeometryError
from medseg.image import Image
from medseg.preprocessing.crop import bounding_box, crop_image, crop_to_nonzero, uncrop


def test_crop_and_uncrop_round_trip_keeps_geometry():
    direction = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], float)
    array = np.zeros((2, 10, 12, 14), np.float32)
    array[0, 2:5, 3:9, 4:6] = 1.0
    array[1, 6, 1, 12] = 2.0  # the second channel widens the box
    image = Image(array, spacing=(3.0, 1.0, 0.5), origin=(1.0, 2.0, 3.0), direction=direction)
    label = image.with_array((array[:1] > 0).astype(np.uint8))
    cropped, clab, box = crop_to_nonzero(image, label)
    assert box == [[2, 7], [1, 9], [4, 13]]
    assert cropped.spatial_shape == (5, 8, 9) and clab.spatial_shape == (5, 8, 9)
    # the first cropped voxel sits where voxel (2, 1, 4) was
    np.testing.assert_allclose(cropped.index_to_physical((0, 0, 0)), image.index_to_physical((2, 1, 4)))
    full = uncrop(cropped.array, box, image.spatial_shape)
    np.testing.assert_array_equal(full, array)


def test_roi_defines_the_box_and_margin_is_clipped():
    image = Image(np.ones((1, 8, 8)))
    roi = image.with_array(np.zeros((1, 8, 8), np.uint8))
    roi.array[0, 1:3, 5:8] = 1
    cropped, _, box = crop_to_nonzero(image, roi=roi, margin=2)
    assert box == [[0, 5], [3, 8]]
    assert cropped.spatial_shape == (5, 5)


def test_empty_image_keeps_everything():
    image = Image(np.zeros((1, 4, 5, 6)))
    cropped, _, box = crop_to_nonzero(image)
    assert box == [[0, 4], [0, 5], [0, 6]] and cropped.spatial_shape == (4, 5, 6)


def test_uncrop_fill_and_channels():
    out = uncrop(np.ones((3, 2, 2), np.uint8), [[0, 2], [1, 3]], (3, 4), fill=255)
    assert out.shape == (3, 3, 4) and out.dtype == np.uint8
    assert out[0, 2, 0] == 255 and out[0, 0, 1] == 1


def test_mismatches_are_geometry_errors():
    image = Image(np.ones((1, 4, 4)))
    with pytest.raises(GeometryError):
        crop_to_nonzero(image, Image(np.ones((1, 4, 5))))
    with pytest.raises(GeometryError):
        uncrop(np.ones((2, 2)), [[0, 3], [0, 2]], (4, 4))
    with pytest.raises(GeometryError):
        crop_image(image, [[0, 1]])
    assert bounding_box(np.zeros((3, 3), bool)) == [[0, 3], [0, 3]]
