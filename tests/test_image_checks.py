import numpy as np
import pytest

from medseg.errors import MedsegError
from medseg.image import Image, check_mask, check_spacing


def test_check_mask_accepts_arrays_channel_axis_and_images():
    m = np.zeros((3, 4), np.uint8); m[1, 2] = 5
    for given in (m, m[None], Image(m[None])):
        out = check_mask(given, (3, 4))
        assert out.dtype == bool and out.sum() == 1 and out[1, 2]
    assert check_mask(None, (3, 4)) is None


@pytest.mark.parametrize("mask, message", [(np.ones((3, 5)), "roi of shape"), (np.zeros((3, 4)), "roi is empty")])
def test_check_mask_errors_name_the_parameter(mask, message):
    with pytest.raises(MedsegError, match=message):
        check_mask(mask, (3, 4), "roi")


def test_check_spacing():
    assert check_spacing(None, 3) == (1.0, 1.0, 1.0)
    assert check_spacing(2, 2) == (2.0, 2.0)
    assert check_spacing(np.array([3, 1]), 2) == (3.0, 1.0)
    for bad in ((1.0,) * 3, (1.0, 0.0), (1.0, np.inf), ["a", "b"]):
        with pytest.raises(MedsegError, match="target_spacing must be 2 positive numbers"):
            check_spacing(bad, 2, "target_spacing")
