"""The rules that complete a training run: each decides, records its inputs and reason, and yields to the user."""

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.planning import training_rules as rules
from medseg.planning.describe import describe_decision, describe_strides
from medseg.planning.structure import boundary_share

REPO = Path(__file__).resolve().parents[2]


def test_validation_cases_are_never_silently_none():
    names = [f"c{i}" for i in range(20)]
    assert rules.rule_validation(names, None, None).value == {"fold": 0}
    few = rules.rule_validation(["a", "b", "c"], None, None)
    assert few.value == {"val_cases": ["c"]} and not few.overridden_by_user
    single = rules.rule_validation(["a"], None, None)
    assert single.value == {"fold": "all"} and "single case" in single.reason
    user = rules.rule_validation(names, "all", None)
    assert user.overridden_by_user and user.value == {"fold": "all"}
    assert rules.rule_validation(names, None, ["c3"]).value == {"val_cases": ["c3"]}


def test_thin_structures_are_told_from_compact_ones():
    vessels = np.zeros((64, 64), np.uint8)
    for row in range(4, 60, 8):
        vessels[row:row + 2, 2:62] = 1               # lines two pixels wide
    organ = np.zeros((64, 64), np.uint8)
    organ[10:50, 12:52] = 1
    assert rules.rule_structure(boundary_share([vessels])).value == "thin"
    compact = rules.rule_structure(boundary_share([organ]))
    assert compact.value == "compact" and compact.inputs["boundary_share"] < 0.5
    # thick slices (5 mm vs 1 mm): the erosion stays in-plane, so a 3-slice organ is still compact
    volume = np.zeros((12, 40, 40), np.uint8)
    volume[4:7, 5:35, 5:35] = 1
    assert boundary_share([volume], [(5.0, 1.0, 1.0)]) < 0.5 < boundary_share([volume], [(1.0, 1.0, 1.0)])
    # a short stack (5 slices of 40 × 40) is eroded within slices whatever its recorded spacing says
    stack = volume[2:7]
    assert boundary_share([stack], [(1.0, 1.0, 1.0)]) < 0.5
    assert boundary_share([volume], [(1.0, 1.0, 1.0)], slice_axis=0) < 0.5


def test_one_piece_structures_are_those_in_one_piece_in_every_training_label():
    organ = np.zeros((3, 20, 20, 20), np.int16)
    organ[:, 4:12, 4:12, 4:12] = 1                        # class 1: one blob per case
    organ[:, 14:16, 14:16, 14:16] = 2                     # class 2: two blobs per case
    organ[:, 2:4, 16:18, 2:4] = 2
    organ[0, 0, 0, 0] = 1                                 # an annotation speck: 1 of 513 voxels
    rule = rules.rule_one_piece(list(organ), {1: [1], 2: [2], "both": [1, 2]})
    assert rule.value == [1] and rule.inputs["smallest_share"]["2"] == 0.5
    assert "label 1 (3 cases)" in rule.reason and rule.shown == "label 1"
    assert rules.rule_one_piece(list(organ[:1]), {1: [1]}).value == []   # one case is not enough
    assert rules.rule_one_piece(list(organ), {3: [3]}).value == []       # never present


def test_without_validation_cases_a_structure_in_one_piece_keeps_its_largest_component():
    kept = rules.rule_postprocessing(None, [], [], [], [0, 1, 2], one_piece=[2])
    assert kept.value == [{"step": "largest", "label": 2}] and "in one piece" in kept.reason
    regions = {"whole": [1, 2], "core": [1]}
    by_region = rules.rule_postprocessing(None, [], [], [], [0, 1, 2], regions=regions, one_piece=["core"])
    assert by_region.value == [{"step": "largest", "label": [1], "region": "core"}]
    assert rules.rule_postprocessing(None, [], [], [], [0, 1, 2]).value == []


def test_thin_structure_recipe_is_the_drive_recipe():
    from medseg.augmentation import build_augmentation

    drive = json.loads((REPO / "benchmarks" / "configs" / "drive_augmentation.json").read_text(encoding="utf-8"))
    chosen = rules.rule_augmentation("thin", 2, None)
    assert build_augmentation(chosen.value, 2).to_config() == build_augmentation(drive, 2).to_config()
    assert not any(t["name"] in ("blur", "low_resolution") for t in chosen.value["transforms"])
    assert rules.rule_augmentation("compact", 2, None).value is None  # medseg's defaults
    off = rules.rule_augmentation("thin", 2, {"enabled": False})
    assert off.overridden_by_user and off.shown == "off"
    assert rules.rule_foreground_share("thin", None).value == 0.2
    assert rules.rule_foreground_share("compact", None).value == 0.5
    user = rules.rule_foreground_share("thin", 0.7)
    assert user.value == 0.7 and user.overridden_by_user


def test_whole_image_tile_brings_batch_norm():
    tile = rules.rule_inference_tile(2, 2, [(584, 565), (584, 565)], (16, 16), (128, 128))
    assert tile.value == [592, 576]
    norm = rules.rule_normalisation_layer("unet", "norm", {}, tile.value is not None)
    assert norm.value == "batch"
    volumes = rules.rule_inference_tile(3, 3, [(10, 200, 200)], (1, 16, 16), (8, 96, 96))
    assert volumes.value is None
    assert rules.rule_normalisation_layer("unet", "norm", {}, False).value is None
    kept = rules.rule_normalisation_layer("unet", "norm", {"norm": "instance"}, True)
    assert kept.value == "instance" and kept.overridden_by_user
    assert rules.rule_normalisation_layer("fcn8s", None, {}, True) is None  # no normalisation option


def test_decision_threshold_is_chosen_on_validation_cases_only():
    rng = np.random.default_rng(0)
    truth = rng.random((40, 40)) < 0.2
    # an over-segmenting model: background pixels often get p ≈ 0.6
    probs = np.where(truth, 0.9, np.where(rng.random((40, 40)) < 0.3, 0.6, 0.1))
    cases = [probs[:14], probs[14:28], probs[28:]], [truth[:14], truth[14:28], truth[28:]], [None] * 3
    chosen = rules.rule_decision_threshold(None, True, "thin", *cases)
    assert 0.6 < chosen.value < 0.9 and chosen.inputs["score_at_chosen"] > chosen.inputs["score_at_0.5"]
    assert rules.rule_decision_threshold(None, True, "thin", [], [], []).value is None
    too_few = rules.rule_decision_threshold(None, True, "thin", *(c[:2] for c in cases))  # the same pixels would move it
    assert too_few.value is None and "too few" in too_few.reason and rules.THRESHOLD_MIN_CASES == 3
    assert rules.rule_decision_threshold(None, False, "thin", [probs], [truth], [None]) is None
    assert rules.rule_decision_threshold("argmax", True, "thin", [probs], [truth], [None]).value is None
    calibrated = np.where(truth, 0.9, 0.1)  # nothing beats 0.5
    assert rules.rule_decision_threshold(None, True, "compact", [calibrated], [truth], [None]).value is None


def test_budget_and_learning_rate_rules_live_in_the_library():
    assert rules.rule_budget(None, None, None).value == {"iterations": None, "time_limit": 1200.0}
    planned = rules.rule_budget(None, None, {"time_limit": 3600.0, "iterations": 900})
    assert planned.value["time_limit"] == 3600.0 and "plan" in planned.reason
    assert rules.rule_budget(5, None, {"time_limit": 3600.0}).overridden_by_user
    assert rules.rule_learning_rate("sgd", None).value == 1e-2
    assert rules.rule_learning_rate("adamw", None).value == 2e-3
    assert rules.rule_learning_rate("adamw", 1e-4).overridden_by_user


def test_loss_rule_gives_a_paper_network_its_paper_loss():
    from medseg.training.networks import network_needs

    assert network_needs("vnet").paper_loss == "vnet_dice" and network_needs("unet").paper_loss is None
    vnet = rules.rule_loss(None, "vnet", network_needs("vnet").paper_loss)
    assert vnet.value == "vnet_dice" and "vnet paper" in vnet.reason and not vnet.overridden_by_user
    assert rules.rule_loss(None, "unet", None).value == rules.DEFAULT_LOSS == "dice_ce"
    assert rules.rule_loss(None, "vnet", "vnet_dice", regions=True).value == "region"  # BraTS: sigmoid per region
    user = rules.rule_loss("dice", "vnet", "vnet_dice")
    assert user.value == "dice" and user.overridden_by_user


def test_a_network_trains_with_its_registry_defaults_unless_the_user_gives_an_option():
    from medseg.training.networks import network_needs

    needs = network_needs("vnet")  # V-Net: 3×3×3 kernels (the paper's 5×5×5 cost ~5× per step on a CPU)
    fired = {r.name: r for r in rules.rule_network_defaults("vnet", needs.training_defaults, {},
                                                             reasons=needs.training_default_reasons)}
    assert fired["network.kernel_size"].value == 3 and "5×5×5" in fired["network.kernel_size"].reason
    fired = {r.name: r for r in rules.rule_network_defaults("vnet", needs.training_defaults, {"kernel_size": 5},
                                                             user={"kernel_size"})}
    assert fired["network.kernel_size"].value == 5 and fired["network.kernel_size"].overridden_by_user
    assert not fired["network.norm"].overridden_by_user


def test_every_training_default_of_a_network_says_why():
    from medseg.nets import NETWORKS
    from medseg.training.networks import network_needs

    for name in NETWORKS.names():
        needs = network_needs(name)
        assert set(needs.training_default_reasons) == set(needs.training_defaults), name


def test_validation_interval_rule():
    rule = rules.rule_validation_interval(None, 40)
    assert rule.value == {"every": 200, "time_share": 0.05} and not rule.overridden_by_user
    fixed = rules.rule_validation_interval(50, 40)
    assert fixed.value == {"every": 50, "time_share": None} and fixed.overridden_by_user


def test_rules_read_as_one_line_of_words():
    line = rules.describe(rules.rule_foreground_share("thin", None))
    assert line.startswith("Foreground-centred patches: 20% of patches — ") and "\n" not in line
    assert "(your choice)" in rules.describe(rules.rule_foreground_share("thin", 0.3))
    record = rules.rule_backend(2, True).to_dict()
    assert set(record) >= {"name", "inputs", "value", "reason", "overridden_by_user"} and record["value"] == "onnx"
    assert rules.rule_backend(3, True).value == "compile" and rules.rule_backend(2, False).value == "torch"
    # a plan's strides as words, not "122 222"
    assert describe_strides([[1, 2, 2], [2, 2, 2]]) == ("2 down-sampling levels: halves the image within slices at "
                                                         "level 1, in every direction at level 2")
    assert describe_decision("3d.target_spacing", "[1.5625, 1.5625, 10.0]") == "voxels of 1.56 × 1.56 × 10 mm"


@pytest.mark.data
def test_structure_rules_on_real_labels(shared_data, tmp_path):
    """DRIVE's vessels are thin and not in one piece; ACDC's heart and LA's atrium compact, the atrium and the
    left ventricle in one piece (first cases of each)."""
    from medseg.datasets import convert_dataset, load_dataset

    drive = load_dataset(convert_dataset("drive", shared_data / "DRIVE", tmp_path / "drive"))
    shares, one_piece = {}, {}
    for name, ds in (("drive", drive), ("acdc", load_dataset(shared_data / "ACDC")),
                     ("la", load_dataset(shared_data / "LA"))):
        labels = [c.read_label() for c in ds.cases[:4]]
        shares[name] = boundary_share([lab.array[0] for lab in labels], [lab.spacing for lab in labels])
        values = [v for v in ds.label_values if v != 0]
        one_piece[name] = rules.rule_one_piece([lab.array[0] for lab in labels], {v: [v] for v in values}).value
    assert rules.rule_structure(shares["drive"]).value == "thin"
    assert rules.rule_structure(shares["acdc"]).value == "compact"
    assert rules.rule_structure(shares["la"]).value == "compact"
    assert one_piece["drive"] == [] and one_piece["la"] == [1] and 3 in one_piece["acdc"]


def test_test_time_mirroring_is_the_default_unless_it_loses_beyond_noise_or_is_too_slow():
    plain = [0.80, 0.82, 0.85, 0.78, 0.90]
    better = [d + g for d, g in zip(plain, [0.006, 0.004, 0.005, 0.007, 0.003])]
    kept = rules.rule_test_time_mirroring([1, 2], plain, 1.3, better, 5.0)
    assert kept.value == [1, 2] and "gain +0.0050" in kept.reason and kept.inputs["cases"] == 5
    noisy = [d + g for d, g in zip(plain, [0.02, -0.03, 0.01, -0.01, -0.012])]  # a loss within noise
    assert rules.rule_test_time_mirroring([1, 2], plain, 1.3, noisy, 5.0).value == [1, 2]
    worse = [d - g for d, g in zip(plain, [0.006, 0.004, 0.005, 0.007, 0.003])]
    lost = rules.rule_test_time_mirroring([1, 2], plain, 1.3, worse, 5.0)
    assert lost.value == [] and "loss beyond noise" in lost.reason
    slow = rules.rule_test_time_mirroring([0, 1, 2], plain, 9.0, better, 72.0)
    assert slow.value == [] and "slower than" in slow.reason
    unmeasured = rules.rule_test_time_mirroring([0, 1, 2], plain, 9.0)  # 8 passes would pass the limit
    assert unmeasured.value == [] and "~72 s per case" in unmeasured.reason
    few = rules.rule_test_time_mirroring([1], plain[:2], 1.0)  # too few cases to show a loss: the default
    assert few.value == [1] and "cannot show a loss" in few.reason and "~2 s per case" in few.reason
    assert rules.rule_test_time_mirroring([1], plain[:2], 40.0).value == []  # ... unless too slow
    assert rules.rule_test_time_mirroring([1, 2], [], 0.0).value == []  # nothing timed it
    untested = rules.rule_test_time_mirroring([1, 2], [], 2.0)  # no validation case; a training case timed it
    assert untested.value == [1, 2] and "no validation cases" in untested.reason
    assert rules.rule_test_time_mirroring([], plain, 1.0).value == []


def test_slice_context_is_decided_for_2d_networks_on_volumes_only():
    from medseg.errors import MedsegError

    rule = rules.rule_slice_context(0, promptable=False, user=None)
    assert rule.value == rules.SLICE_CONTEXT and not rule.overridden_by_user and "PROMISE12" in rule.reason
    assert rules.rule_slice_context(2, False, 1).value == 1  # the user turns it on
    assert rules.rule_slice_context(None, False, None) is None  # a 3D network, or 2D images
    assert rules.rule_slice_context(0, True, None) is None  # a promptable network frames one slice itself
    with pytest.raises(MedsegError, match="--slice-context needs a 2D network on volumes"):
        rules.rule_slice_context(None, False, 2)


def test_the_network_rule_gives_regions_trained_in_3d_segresnet_vae_and_everything_else_the_unet():
    regions3d = rules.rule_network(None, True, "3d")
    assert regions3d.value == "segresnet_vae" and regions3d.inputs == {"regions": True, "configuration": "3d"}
    assert not regions3d.overridden_by_user and "BraTS" in regions3d.reason
    assert rules.rule_network(None, True, "2d").value == "unet"  # 2D images, or volumes planned as slices
    assert rules.rule_network(None, False, "3d").value == "unet"
    mine = rules.rule_network("vnet", True, "3d")
    assert mine.value == "vnet" and mine.overridden_by_user and "--net" in mine.reason


def test_the_run_judges_thinness_where_the_planner_did(tmp_path):
    """A plan's fingerprint (the dataset's own grid) decides; a coarsened grid would make organs look thin."""
    from dataclasses import replace

    from medseg.datasets import load_dataset, make_vessels2d
    from medseg.training.config import TrainingConfig
    from medseg.training.spec import complete_run, start_run

    data = load_dataset(make_vessels2d(tmp_path / "vessels", cases=4, seed=0, size=48))
    start = start_run(data, TrainingConfig(network="unet", iterations=1), None, 2, False, None, None, None)
    labels = [np.asarray(c.read_label().array[0]) for c in data.cases]
    spacings = [(1.0, 1.0)] * len(labels)

    def structure(begin):
        spec = complete_run(begin, labels, spacings, [lab.shape for lab in labels], 3, 2, 2)
        return spec.rule("structure")

    measured = structure(start)
    assert measured.value == "thin" and "on the training labels" in measured.reason
    planned = structure(replace(start, planned_boundary_share=0.2))
    assert planned.value == "compact" and "plan's fingerprint" in planned.reason
    assert planned.inputs["boundary_share"] == 0.2


def test_a_structure_in_one_piece_gets_the_threshold_of_its_largest_component():
    """Far confident blobs push the plain optimum up, under-segmenting the structure; the largest component's
    optimum ignores them, as the postprocessing will."""
    truth = np.zeros((40, 40), bool)
    truth[2:12, 2:12] = True
    probs = np.where(truth, 0.8, 0.0)
    probs[4:10, 4:10] = 0.99
    for rows, cols in ((20, 20), (30, 2), (20, 2), (30, 20)):
        probs[rows:rows + 5, cols:cols + 10] = 0.85
    cases = ([probs] * 3, [truth] * 3, [None] * 3)
    plain = rules.rule_decision_threshold(None, True, "compact", *cases)
    assert plain.value > 0.85 and not plain.inputs["largest_component"]
    one_piece = rules.rule_decision_threshold(None, True, "compact", *cases, one_piece=True)
    assert one_piece.value is None and one_piece.inputs["score_at_0.5"] == 1.0    # 0.5 is already best
    faint = np.where(probs == 0.8, 0.4, probs)                                     # a rim the argmax misses
    chosen = rules.rule_decision_threshold(None, True, "compact", [faint] * 3, *cases[1:], one_piece=True)
    assert chosen.value is not None and chosen.value <= 0.4 and "largest component" in chosen.reason


def test_prepare_backend_after_runs_of_ten_minutes_or_more():
    assert rules.rule_prepare_backend(rules.PREPARE_BACKEND_MIN_SECONDS).value is True
    short = rules.rule_prepare_backend(rules.PREPARE_BACKEND_MIN_SECONDS - 1)
    assert short.value is False and "trial" in short.reason
    assert rules.rule_prepare_backend(3600.0, promptable=True).value is False
