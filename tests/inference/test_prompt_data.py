"""LiteMedSAM on real data: a box around a reference structure gives its mask — with the released weights,
not with random ones (every weight landed where it belongs)."""

import numpy as np
import pytest
import torch

from medseg.errors import MedsegError
from medseg.inference.boxes import boxes_from_label_map
from medseg.inference.prompt import Prompter
from medseg.io import read_image
from medseg.metrics import dice
from medseg.nets.litemedsam import LiteMedSAM, released_weights_path

pytestmark = [pytest.mark.data, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def weights():
    try:
        return released_weights_path()
    except MedsegError as exc:
        pytest.skip(f"LiteMedSAM weights not installed: {exc}")


def test_acdc_left_ventricle_from_its_box(shared_data, weights):
    case = "patient002_frame01"  # a validation patient of splits.json
    image = read_image(shared_data / "ACDC" / "imagesTr" / f"{case}_0000.nii.gz")
    lv = read_image(shared_data / "ACDC" / "labelsTr" / f"{case}.nii.gz").array[0] == 3
    z = int(np.argmax(lv.sum(axis=(1, 2))))  # the slice with the largest LV section
    box = boxes_from_label_map(lv[z:z + 1].astype(np.uint8), per_slice=True, jitter=5, seed=0)
    assert len(box) == 1
    box = [type(box[0])((z, *box[0].lower[1:]), (z, *box[0].upper[1:]), 3)]
    released = Prompter(weights=weights).segment(image, box).label_map.array[0, z] == 3
    torch.manual_seed(0)
    random = Prompter(LiteMedSAM()).segment(image, box).label_map.array[0, z] == 3
    d_released, d_random = dice(released, lv[z]), dice(random, lv[z])
    assert d_released >= 0.8, d_released
    assert d_random < d_released - 0.3, (d_random, d_released)


def test_dukedme_fluid_from_component_boxes(shared_data, weights):
    case = "subject01_scan05"
    image = read_image(shared_data / "DukeDME" / "imagesTr" / f"{case}_0000.png")
    fluid = read_image(shared_data / "DukeDME" / "labelsTr" / f"{case}.png").array[0] > 0
    boxes = boxes_from_label_map(fluid.astype(np.uint8), per_component=True, min_voxels=20)
    result = Prompter(weights=weights).segment(image, boxes)
    d = dice(result.label_map.array[0] > 0, fluid)
    assert d >= 0.7, d
    assert 0 < result.confidence <= 1.1
