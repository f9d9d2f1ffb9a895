"""LiteMedSAM on real data through `medseg prompt`: a box around a reference structure gives its mask —
with the released weights, not with random ones (every weight landed where it belongs)."""

import numpy as np
import pytest
import torch

from medseg.cli import main
from medseg.errors import MedsegError
from medseg.inference.boxes import BoxPrompt, boxes_from_label_map
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


def test_acdc_left_ventricle_slice_from_its_box(shared_data, weights, tmp_path):
    case = "patient002_frame01"  # a validation patient of splits.json
    image_path = shared_data / "ACDC" / "imagesTr" / f"{case}_0000.nii.gz"
    lv = read_image(shared_data / "ACDC" / "labelsTr" / f"{case}.nii.gz").array[0] == 3
    z = int(np.argmax(lv.sum(axis=(1, 2))))  # the slice with the largest LV section
    (box,) = boxes_from_label_map(lv[z].astype(np.uint8), jitter=5, seed=0)
    (y0, x0), (y1, x1) = box.lower, box.upper
    out = tmp_path / "lv.nii.gz"
    assert main(["prompt", str(image_path), "--box", f"{x0},{y0},{z},{x1},{y1},{z}", "-o", str(out),
                 "--threads", "1"]) == 0
    pred = read_image(out).array[0]
    assert pred.shape == lv.shape and not np.delete(pred, z, axis=0).any()  # only the slice the box spans
    d_released = dice(pred[z] == 1, lv[z])
    torch.manual_seed(0)
    random = Prompter(LiteMedSAM()).segment(read_image(image_path), [BoxPrompt((z, y0, x0), (z, y1, x1))])
    d_random = dice(random.label_map.array[0, z] == 1, lv[z])
    assert d_released >= 0.8, d_released
    assert d_random < d_released - 0.3, (d_random, d_released)


def test_dukedme_fluid_from_component_boxes(shared_data, weights, tmp_path):
    case = "subject01_scan05"
    image_path = shared_data / "DukeDME" / "imagesTr" / f"{case}_0000.png"
    label_path = shared_data / "DukeDME" / "labelsTr" / f"{case}.png"
    out = tmp_path / "fluid.png"
    assert main(["prompt", str(image_path), "--boxes-from", str(label_path), "--per-component", "--jitter", "5",
                 "-o", str(out), "--threads", "1"]) == 0
    fluid = read_image(label_path).array[0] > 0
    pred = read_image(out).array[0]
    assert pred.shape == fluid.shape and dice(pred > 0, fluid) >= 0.7


@pytest.mark.slow
def test_acdc_fine_tune_then_label_a_volume(shared_data, weights, tmp_path):
    """The label-generation loop on real data: fine-tune 2 steps on 2 ACDC volumes (frozen encoder), boxes
    for another volume from its reference (`medseg boxes`, MedSAM jitter), labels + confidence from the
    fine-tuned model folder (`medseg prompt --boxes --model`)."""
    import json

    acdc = shared_data / "ACDC"
    view = tmp_path / "acdc"
    train, val, target = ["patient003_frame01", "patient003_frame02"], "patient002_frame01", "patient004_frame01"
    if not all((acdc / "labelsTr" / f"{c}.nii.gz").exists() for c in train + [val, target]):
        pytest.skip("ACDC cases missing")
    for case in train + [val]:
        for src, dst in ((acdc / "imagesTr" / f"{case}_0000.nii.gz", view / "imagesTr" / f"{case}_0000.nii.gz"),
                         (acdc / "labelsTr" / f"{case}.nii.gz", view / "labelsTr" / f"{case}.nii.gz")):
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src)
    meta = json.loads((acdc / "dataset.json").read_text(encoding="utf-8"))
    (view / "dataset.json").write_text(json.dumps({**meta, "numTraining": 3}), encoding="utf-8")
    model = tmp_path / "model"
    assert main(["train", view, "--out", model, "--net", "litemedsam", "--iterations", "2", "--val-cases", val,
                 "--threads", "1", "--no-progress"]) == 0
    log = (model / "training_log.csv").read_text(encoding="utf-8").splitlines()
    assert "val_dice_LV" in log[0]
    refs, images = tmp_path / "refs", tmp_path / "images"
    refs.mkdir()
    images.mkdir()
    (refs / f"{target}.nii.gz").symlink_to(acdc / "labelsTr" / f"{target}.nii.gz")
    (images / f"{target}_0000.nii.gz").symlink_to(acdc / "imagesTr" / f"{target}_0000.nii.gz")
    assert main(["boxes", refs, "--per-slice", "--jitter", "5", "--labels", "3", "-o", tmp_path / "boxes.csv"]) == 0
    assert main(["prompt", "--boxes", tmp_path / "boxes.csv", "-i", images, "-o", tmp_path / "draft", "--model", model,
                 "--threads", "1"]) == 0
    pred = read_image(tmp_path / "draft" / f"{target}.nii.gz").array[0]
    lv = read_image(refs / f"{target}.nii.gz").array[0] == 3
    assert dice(pred == 3, lv) > 0.8
    rows = (tmp_path / "draft" / "confidence.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0].startswith("case,label,predicted_iou,mean_probability") and len(rows) - 1 == lv.any(axis=(1, 2)).sum()
