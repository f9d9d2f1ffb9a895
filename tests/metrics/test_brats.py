"""BraTS scoring conventions: empty in both → Dice 1 / HD95 0; in one only → Dice 0 / HD95 373.13 mm; the
evaluator applies them to region datasets (auto) and keeps inf for ordinary label datasets."""

import json
import math

import numpy as np
import pytest

from medseg.image import Image
from medseg.io import write_image
from medseg.metrics.brats import BRATS_MAX_DISTANCE, apply_brats_convention, brats_region_metrics
from medseg.metrics.evaluator import evaluate_folders

REGIONS = {"whole_tumor": [1, 2, 4], "tumor_core": [1, 4], "enhancing_tumor": [4]}


def test_penalty_is_the_brats_grid_diagonal():
    assert BRATS_MAX_DISTANCE == round(math.sqrt(240**2 + 240**2 + 155**2), 2)


def _tumour():
    ref = np.zeros((12, 16, 16), np.uint8)
    ref[2:10, 3:13, 3:13] = 2
    ref[4:8, 5:11, 5:11] = 1
    ref[5:7, 6:10, 6:10] = 4
    return ref


def test_region_metrics_and_empty_rules():
    ref = _tumour()
    same = brats_region_metrics(ref, ref, REGIONS, (1.0, 1.0, 1.0))
    assert all(m == {"dice": 1.0, "hd95": 0.0} for m in same.values())
    missed = brats_region_metrics(np.where(ref == 4, 1, ref), ref, REGIONS)  # ET labelled as necrosis
    assert missed["enhancing_tumor"] == {"dice": 0.0, "hd95": BRATS_MAX_DISTANCE}
    assert missed["tumor_core"]["dice"] == 1.0 and missed["whole_tumor"]["dice"] == 1.0
    no_et = np.where(ref == 4, 1, ref)
    both_empty = brats_region_metrics(no_et, no_et, REGIONS)
    assert both_empty["enhancing_tumor"] == {"dice": 1.0, "hd95": 0.0}
    hallucinated = brats_region_metrics(ref, no_et, REGIONS)
    assert hallucinated["enhancing_tumor"] == {"dice": 0.0, "hd95": BRATS_MAX_DISTANCE}


def test_apply_convention_leaves_present_regions_alone():
    m = {"dice": 0.7, "hd95": 3.2, "assd": 1.0, "recall": 0.8}
    assert apply_brats_convention(m, False, False) == m
    out = apply_brats_convention({"dice": 0.0, "hd95": float("inf"), "assd": float("inf"), "hausdorff": float("inf"),
                                  "recall": 0.0}, False, True)
    assert out == {"dice": 0.0, "hd95": BRATS_MAX_DISTANCE, "assd": BRATS_MAX_DISTANCE,
                   "hausdorff": BRATS_MAX_DISTANCE, "recall": 0.0}


@pytest.mark.parametrize("with_regions", [True, False])
def test_evaluator_uses_brats_rules_for_region_datasets(tmp_path, with_regions):
    gt, pred = tmp_path / "labels", tmp_path / "pred"
    ref = _tumour()
    guess = np.where(ref == 4, 1, ref)
    for folder, array in ((gt, ref), (pred, guess)):
        write_image(Image(array[None]), folder / "c1.nii.gz")
    labels = {"background": 0, **(REGIONS if with_regions else {"necrosis": 1, "oedema": 2, "enhancing": 4})}
    extra = {"regions_class_order": [2, 1, 4]} if with_regions else {}
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "t", "channel_names": {"0": "x"}, "labels": labels,
                                                       "numTraining": 1, "file_ending": ".nii.gz", **extra}))
    summary = evaluate_folders(pred, gt, tmp_path / "eval", workers=1)
    rows = {r["label"]: r for r in summary.per_case}
    if with_regions:
        assert summary.statistics["enhancing_tumor"]["hd95"]["mean"] == BRATS_MAX_DISTANCE
        assert rows["tumor_core"]["dice"] == 1.0
        saved = json.loads((tmp_path / "eval" / "summary.json").read_text(encoding="utf-8"))
        assert saved["settings"]["convention"] == "brats"
    else:
        assert math.isinf(rows["enhancing"]["hd95"])
    forced = evaluate_folders(pred, gt, tmp_path / "eval2", workers=1, convention="medseg")
    assert math.isinf({r["label"]: r for r in forced.per_case}["enhancing_tumor" if with_regions else "enhancing"]["hd95"])
