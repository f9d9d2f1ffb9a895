from __future__ import annotations

import numpy as np
import pytest

from medseg.errors import MedsegError
from medseg.postprocessing import fill_holes, keep_largest_component, postprocess, remove_small_objects


def test_fill_holes_per_label_never_overwrites_other_labels():
    x = np.zeros((12, 12), np.uint8)
    x[1:10, 1:10] = 2  # myocardium-like ring
    x[4:7, 4:7] = 3  # a structure inside it
    x[2, 2] = 0  # a real hole in label 2 (enclosed by 2 only)
    x[8, 5] = 0
    out = fill_holes(x)
    assert out[2, 2] == 2 and out[8, 5] == 2 and (out[4:7, 4:7] == 3).all()
    assert out.dtype == x.dtype and (out[0] == 0).all()
    only3 = fill_holes(x, values=3)
    assert only3[2, 2] == 0


def test_fill_holes_3d():
    x = np.zeros((7, 7, 7), np.int16)
    x[1:6, 1:6, 1:6] = 1
    x[3, 3, 3] = 0
    assert fill_holes(x)[3, 3, 3] == 1


def test_remove_small_objects_voxels_and_mm():
    x = np.zeros((10, 10, 10), np.uint8)
    x[0:3, 0:3, 0:3] = 1  # 27 voxels
    x[8, 8, 8] = 1
    x[5:7, 5:7, 5:7] = 2  # 8 voxels of another label
    out = remove_small_objects(x, min_size=5)
    assert out.sum() == 27 + 16 and out[8, 8, 8] == 0
    # 2x2x2 mm voxels: 8 mm³ per voxel, label 2 has 64 mm³, label 1's big part 216 mm³
    out = remove_small_objects(x, min_size=100, spacing=(2.0, 2.0, 2.0))
    assert (out == 2).sum() == 0 and (out == 1).sum() == 27
    # only label 2 processed
    assert remove_small_objects(x, min_size=100, spacing=(2.0, 2.0, 2.0), values=2)[8, 8, 8] == 1
    with pytest.raises(MedsegError, match="spacing"):
        remove_small_objects(x, 5, spacing=(1.0, 1.0))


def test_connectivity_matters_for_diagonal_neighbours():
    x = np.zeros((5, 5), np.uint8)
    x[1, 1] = x[2, 2] = x[3, 3] = 1
    assert remove_small_objects(x, min_size=2, connectivity=1).sum() == 0
    assert remove_small_objects(x, min_size=2, connectivity=2).sum() == 3
    with pytest.raises(MedsegError, match="connectivity"):
        keep_largest_component(x, connectivity=3)


def test_keep_largest_component_per_label():
    x = np.zeros((10, 20), np.uint8)
    x[0:4, 0:4] = 1
    x[6:8, 6:8] = 1
    x[0:2, 10:12] = 2
    x[5:9, 14:19] = 2
    out = keep_largest_component(x)
    assert (out == 1).sum() == 16 and (out == 2).sum() == 20 and out[0, 10] == 0
    assert (keep_largest_component(x, values=[2]) == 1).sum() == 20


def test_postprocess_steps_and_bad_input():
    x = np.zeros((8, 8), np.uint8)
    x[1:6, 1:6] = 1
    x[3, 3] = 0
    x[7, 7] = 1
    out = postprocess(x, ["fill_holes", "min_size=2"])
    assert out[3, 3] == 1 and out[7, 7] == 0
    with pytest.raises(MedsegError, match="unknown postprocess"):
        postprocess(x, ["dilate"])
    with pytest.raises(MedsegError, match="min_size"):
        postprocess(x, ["min_size=big"])
    with pytest.raises(MedsegError, match="integer"):
        fill_holes(np.zeros((3, 3), float))
    with pytest.raises(MedsegError, match="2D or 3D"):
        fill_holes(np.zeros(3, np.uint8))


def test_one_canonical_name_per_step():
    x = np.zeros((6, 6), np.uint8)
    x[0:3, 0:3] = 1
    x[5, 5] = 1
    assert postprocess(x, ["largest"]).sum() == 9
    for alias in ("keep_largest", "largest_component", "holes", "fill-holes", "remove_small", "remove_small_objects=2"):
        with pytest.raises(MedsegError, match="unknown postprocess"):
            postprocess(x, [alias])


def test_postprocessing_is_kept_only_where_it_raises_validation_dice():
    from medseg.postprocessing import apply_steps, choose_postprocessing

    ref = np.zeros((2, 30, 30), np.uint8)
    ref[0, 3:13, 3:13] = 1          # label 1: one blob per case; the prediction adds a far speck
    ref[0, 18:28, 18:28] = 2        # label 2: two true blobs; "largest" would delete one
    ref[1, 5:15, 5:15] = 1
    ref[1, 20:24, 2:6] = 2
    ref[1, 20:28, 20:28] = 2
    pred = ref.copy()
    pred[0, 0, 29] = 1
    pred[1, 29, 29] = 1
    steps, trials = choose_postprocessing(list(pred), list(ref), [(1.0, 1.0)] * 2, [0, 1, 2])
    assert {"step": "largest", "label": 1} in steps
    assert not any(s["label"] == 2 and s["step"] == "largest" for s in steps)
    assert any(t["label"] == 2 and t["step"] == "largest" and not t["kept"] for t in trials)
    cleaned = apply_steps(pred[0], steps, spacing=(1.0, 1.0))
    assert cleaned[0, 29] == 0 and (cleaned == 2).sum() == (ref[0] == 2).sum()
    with pytest.raises(MedsegError, match="unknown postprocessing step"):
        apply_steps(pred[0], [{"step": "dilate", "label": 1}])


def test_a_structure_in_one_piece_keeps_its_largest_component_on_a_tie_but_not_on_a_loss():
    from medseg.postprocessing import choose_postprocessing, largest_component_share

    ref = np.zeros((2, 30, 30), np.uint8)
    ref[:, 5:15, 5:15] = 1
    clean = ref.copy()                                    # validation predictions without a stray blob: a tie
    steps, trials = choose_postprocessing(list(clean), list(ref), [(1.0, 1.0)] * 2, [0, 1])
    assert steps == [] and not trials[0]["kept"]          # the evidence rule alone keeps nothing
    steps, trials = choose_postprocessing(list(clean), list(ref), [(1.0, 1.0)] * 2, [0, 1], one_piece=[1])
    assert steps == [{"step": "largest", "label": 1}] and trials[0]["one_piece"]
    split = ref.copy()
    split[1, 20:30, 5:15] = 1                             # the reference itself in two pieces in one case
    pred = split.copy()
    steps, _ = choose_postprocessing(list(pred), list(split), [(1.0, 1.0)] * 2, [0, 1], one_piece=[1])
    assert steps == []                                    # largest would lower the Dice: not kept
    assert largest_component_share(split[1]) == 0.5 and largest_component_share(ref[0]) == 1.0
    assert largest_component_share(np.zeros((4, 4))) is None


def test_region_steps_treat_the_region_as_one_mask():
    from medseg.postprocessing import apply_steps, choose_postprocessing

    # BraTS-like painting: oedema 2 around a core 1 with enhancing 4; a far false positive painted 4
    ref = np.zeros((40, 40), np.uint8)
    ref[5:25, 5:25] = 2
    ref[10:20, 10:20] = 1
    ref[13:17, 13:17] = 4
    pred = ref.copy()
    pred[34:37, 34:37] = 4                                   # one component of every region (4 ⊂ TC ⊂ WT)
    regions = {"whole_tumor": [1, 2, 4], "tumor_core": [1, 4], "enhancing_tumor": [4]}
    steps, trials = choose_postprocessing([pred], [ref], [(1.0, 1.0)], [0, 1, 2, 4], regions=regions)
    assert steps[0] == {"step": "largest", "label": [1, 2, 4], "region": "whole_tumor"}
    assert all("region" in t and t["step"] in ("largest", "min_size") for t in trials)
    cleaned = apply_steps(pred, steps, spacing=(1.0, 1.0))
    assert np.array_equal(cleaned, ref)                       # the speck is background, not another label
    # a one-value region is a mask too: its far component goes to background
    assert apply_steps(pred, [{"step": "largest", "label": [4], "region": "enhancing_tumor"}])[35, 35] == 0
    with pytest.raises(MedsegError, match="a region takes"):
        apply_steps(pred, [{"step": "fill_holes", "label": [1, 2, 4]}])


def test_close_calls_name_a_removed_component_at_least_half_the_kept_one():
    from medseg.postprocessing import CLOSE_CALL_SHARE, close_calls

    lab = np.zeros((12, 12), np.uint8)
    lab[0:4, 0:4] = 1  # 16 voxels, kept
    lab[6:8, 0:4] = 1  # 8 voxels: exactly the share, a close call
    lab[0:4, 8:12] = 2  # 16 voxels, kept
    lab[10, 10] = 2  # 1 voxel: clearly noise
    assert CLOSE_CALL_SHARE == 0.5
    assert close_calls(lab) == [{"label": 1, "kept": 16, "removed": 8}]
    assert close_calls(lab, values=2) == []
    lab[7, 0:4] = 0  # 4 of 16: no longer a close call
    assert close_calls(lab) == []


def test_apply_steps_collects_the_close_calls_of_largest_steps_only():
    from medseg.postprocessing import apply_steps

    lab = np.zeros((12, 12), np.uint8)
    lab[0:4, 0:4] = 2
    lab[6:9, 0:4] = 1  # the region {1, 2} has two pieces, 16 and 12 voxels; label 1 alone has one
    lab[0:3, 8:12] = 3
    lab[6:9, 8:12] = 3  # label 3: two pieces of 12
    steps = [{"step": "largest", "label": [1, 2], "region": "tumour"}, {"step": "fill_holes", "label": 3},
             {"step": "largest", "label": 3}]
    close = []
    out = apply_steps(lab, steps, close=close)
    assert close == [{"label": "tumour", "kept": 16, "removed": 12}, {"label": 3, "kept": 12, "removed": 12}]
    assert (out == 1).sum() == 0 and (out == 3).sum() == 12  # the steps still ran
    np.testing.assert_array_equal(out, apply_steps(lab, steps))  # collecting changes nothing
