import json
import math

import numpy as np
import pytest

from medseg.planning.machine import Machine
from medseg.planning.rules import choose_patch, make_plan, resampled_median_shape
from medseg.planning.topology import divisibility



def _rule(plan, name):
    hits = [r for r in plan.rules_fired if r["rule"] == name]
    assert hits, f"rule {name} did not fire: {[r['rule'] for r in plan.rules_fired]}"
    return hits[0]


@pytest.fixture
def thick_fp(synthetic_fingerprint):
    return thick_slice_fingerprint(synthetic_fingerprint)


@pytest.fixture
def iso_fp(synthetic_fingerprint):
    return synthetic_fingerprint([(96, 128, 128)] * 10, [(1.0, 1.0, 1.0)] * 10)


def thick_slice_fingerprint(synthetic_fingerprint, n=20):
    rng = np.random.default_rng(0)
    shapes = [(int(rng.integers(8, 14)), 224, 200) for _ in range(n)]
    # slice distances 5–10 mm, in-plane ~1.5 mm: anisotropic
    spacings = [(float(rng.choice([5.0, 6.5, 8.0, 10.0])), 1.5, 1.5) for _ in range(n)]
    return synthetic_fingerprint(shapes, spacings)


def test_isotropic_volumes_get_3d_and_median_spacing(iso_fp):
    plan = make_plan(iso_fp, Machine("cpu", 2, 16 * 2**30, flops=1e12))  # a budget for full resolution
    assert plan.configuration == "3d" and plan.spatial_dims == 3
    assert plan.target_spacing == [1.0, 1.0, 1.0]
    assert json.loads(_rule(plan, "3d.target_spacing")["decision"]) == [1.0, 1.0, 1.0]
    assert "2d" in plan.alternatives  # the other configuration is available
    assert _rule(plan, "configuration")["decision"] == "3d"
    assert plan.resampling["separate_axis"] is None


def test_thick_slices_get_2d_low_percentile_spacing_and_no_pooling_across_slices(cpu, thick_fp):
    fp = thick_fp
    plan = make_plan(fp, cpu)
    # target spacing: out-of-plane from the 10th percentile, not the median
    median_z = fp["summary"]["median_spacing"][0]
    p10 = fp["summary"]["spacing_percentiles"]["10"][0]
    assert p10 < median_z
    assert plan.target_spacing == [p10, 1.5, 1.5]
    assert "10th percentile" in _rule(plan, "target_spacing")["reason"]
    assert plan.resampling["separate_axis"] == 0
    # few thick slices: 2D, slicing across axis 0
    assert plan.configuration == "2d" and plan.slice_axis == 0
    assert "anisotropic" in _rule(plan, "configuration")["reason"]
    # the 3D alternative does not pool along the thick axis at the first level and uses kernel 1 there
    net3d = plan.alternatives["3d"]["network"]
    assert net3d["strides"][0][0] == 1 and net3d["strides"][0][1:] == [2, 2]
    assert net3d["kernel_sizes"][0][0] == 1 and net3d["kernel_sizes"][0][1:] == [3, 3]


def test_small_budget_coarsens_the_3d_grid_until_the_patch_sees_a_quarter_of_the_image(cpu, iso_fp, thick_fp):
    plan = make_plan(iso_fp, cpu)  # 2 cores: a full-resolution patch would see a small window
    full = make_plan(iso_fp, Machine("cpu", 2, 16 * 2**30, flops=1e12))
    assert plan.configuration == "3d"
    spacing = plan.target_spacing
    assert spacing[0] > 1.0 and spacing[0] == spacing[1] == spacing[2]  # isotropic data grow isotropically
    assert json.loads(_rule(plan, "target_spacing")["decision"]) == [1.0, 1.0, 1.0]  # the median, before the 3D rule
    reason = _rule(plan, "3d.target_spacing")["reason"]
    assert "low resolution" in reason
    shape = [round(s / spacing[0]) for s in (96, 128, 128)]
    assert math.prod(plan.patch_size) >= 0.25 * math.prod(shape) * 0.97  # rounding of the median shape
    assert math.prod(full.patch_size) >= 0.25 * 96 * 128 * 128
    # one 3 % step less would not have been enough (the rule stops at the first sufficient grid)
    finer = [v / 1.03 for v in spacing]
    finer_shape = resampled_median_shape(iso_fp, finer)
    fit, _ = choose_patch(finer, finer_shape, cpu, 4.0, 1, plan.num_classes)
    assert math.prod(fit["patch_size"]) < 0.25 * math.prod(finer_shape)
    # the 2D alternative keeps the full-resolution grid; switching configurations switches grids
    two = plan.use_configuration("2d")
    assert two.target_spacing == [1.0, 1.0, 1.0] and two.use_configuration("3d").target_spacing == spacing
    # anisotropic data: the fine axes grow first (the thick axis keeps its spacing)
    thick = make_plan(thick_fp, cpu).use_configuration("3d")
    target = json.loads(_rule(thick, "target_spacing")["decision"])
    assert thick.target_spacing[0] == target[0]
    assert thick.target_spacing[1] == thick.target_spacing[2] > target[1]


def test_small_budget_coarsens_large_2d_images_of_compact_structures(cpu, synthetic_fingerprint):
    """OCT-sized B-scans (496 × 768) on 2 cores: the affordable patch sees 13 % of an image, so the grid is
    coarsened until it sees half; vessels (thin) and structures of unknown shape keep the image grid."""
    shapes, spacings = [(496, 768)] * 6, [(1.0, 1.0)] * 6
    plan = make_plan(synthetic_fingerprint(shapes, spacings, channel_names=("OCT",)), cpu)
    spacing = plan.target_spacing
    assert spacing[0] == spacing[1] > 1.0
    assert "low resolution" in _rule(plan, "2d.target_spacing")["reason"]
    shape = [round(s / spacing[0]) for s in (496, 768)]
    assert math.prod(plan.patch_size) >= 0.5 * math.prod(shape) * 0.97
    finer = [v / 1.03 for v in spacing]  # the first sufficient grid
    finer_shape = resampled_median_shape(synthetic_fingerprint(shapes, spacings), finer)
    fit, _ = choose_patch(finer, finer_shape, cpu, 1.5, 1, plan.num_classes)
    assert math.prod(fit["patch_size"]) < 0.5 * math.prod(finer_shape)
    assert plan.training["iterations"] > 0
    full = make_plan(synthetic_fingerprint(shapes, spacings, channel_names=("OCT",)),
                     Machine("cpu", 2, 16 * 2**30, flops=1e12))
    assert full.target_spacing == [1.0, 1.0]  # a faster machine affords the whole grid
    for share, why in ((0.76, "thin"), (None, "does not say")):
        kept = make_plan(synthetic_fingerprint(shapes, spacings, channel_names=("OCT",), boundary_share=share), cpu)
        assert kept.target_spacing == [1.0, 1.0] and why in _rule(kept, "2d.target_spacing")["reason"]
    vessels = make_plan(synthetic_fingerprint(shapes * 4, spacings * 4, boundary_share=0.76), cpu)
    assert vessels.target_spacing == [1.0, 1.0]


def test_forced_configuration_is_recorded(cpu, thick_fp):
    plan = make_plan(thick_fp, cpu, configuration="3d")
    assert plan.configuration == "3d"
    assert "forced" in _rule(plan, "configuration")["reason"]


@pytest.mark.parametrize("continuity, bfloat16, expected, step", [(0.9, True, "3d", 4.0), (0.9, False, "3d", 2.0),
                                                               (0.7, True, "2d", 4.0), (None, False, "2d", 4.0)])
def test_a_short_stack_stays_3d_only_where_its_structures_continue(thick_fp, continuity, bfloat16, expected, step):
    thick_fp["summary"]["slice_continuity"] = continuity
    plan = make_plan(thick_fp, Machine("cpu", 2, 16 * 2**30, flops=24e9, bfloat16=bfloat16))
    assert plan.configuration == expected and plan.slice_axis == (0 if expected == "2d" else None)
    assert expected == "2d" and "3d" in plan.alternatives or expected == "3d" and "2d" in plan.alternatives
    reason = _rule(plan, "configuration")["reason"]
    if continuity is not None:
        assert f"overlap {continuity:.2f}" in reason
        assert ("continue across" in reason) == (continuity >= 0.82)
    # without bfloat16 units a continuing stack's 3D patch is planned for half the 3D step budget, as many steps as 2D
    assert ("3d.step_seconds" in {r["rule"] for r in plan.rules_fired}) == (step == 2.0)
    given = make_plan(thick_fp, Machine("cpu", 2, 16 * 2**30, flops=24e9, bfloat16=bfloat16), step_seconds=step)
    for key in ("patch_size", "target_spacing"):
        assert _configuration(plan, "3d")[key] == _configuration(given, "3d")[key]


def _configuration(plan, name):
    return plan.to_dict() if plan.configuration == name else plan.alternatives[name]


def test_2d_data_is_2d(cpu, synthetic_fingerprint):
    fp = synthetic_fingerprint([(584, 565)] * 5, [(1.0, 1.0)] * 5, channel_names=("R", "G", "B"))
    plan = make_plan(fp, cpu)
    assert plan.configuration == "2d" and plan.data_dims == 2 and plan.alternatives == {}
    assert plan.slice_axis is None
    assert len(plan.preprocessing) == 3


def test_patch_fits_the_budget_and_network(cpu, iso_fp):
    plan = make_plan(iso_fp, cpu)
    div = divisibility([[1, 1, 1]] + plan.network["strides"])
    assert all(p % d == 0 for p, d in zip(plan.patch_size, div))
    assert all(p <= m for p, m in zip(plan.patch_size, [96, 128, 128]))
    assert plan.batch_size >= 2
    assert len(plan.network["kernel_sizes"]) == plan.network["depth"] + 1
    est = plan.training["estimated_step_seconds"]
    assert est <= 4.0 * 1.01  # the 3D step-time target
    assert plan.training["iterations"] == int(3600 * 0.9 / est) or abs(plan.training["iterations"] - 3600 * 0.9 / est) < 2


def test_small_ram_gives_smaller_patch(iso_fp):
    fp = iso_fp
    big = make_plan(fp, Machine("cpu", 2, 16 * 2**30, flops=1e12), step_seconds=100)
    small = make_plan(fp, Machine("cpu", 2, 256 * 2**20, flops=1e12), step_seconds=100)
    assert math.prod(small.patch_size) < math.prod(big.patch_size)
    assert small.training["estimated_memory_gib"] <= 256 / 1024 * 0.4 + 1e-6
    assert "memory 0.1 GiB" in _rule(small, "3d.patch_size")["reason"]


def test_slow_cpu_gives_smaller_patch_or_narrower_net(iso_fp):
    fp = iso_fp
    fast = make_plan(fp, Machine("cpu", 8, 16 * 2**30, flops=200e9))
    slow = make_plan(fp, Machine("cpu", 1, 16 * 2**30, flops=5e9))
    cost = lambda p: math.prod(p.patch_size) * p.network["features"] ** 2
    assert cost(slow) < cost(fast)
    assert slow.training["estimated_step_seconds"] <= 4.0 * 1.01


def test_longer_step_time_allows_larger_patch(cpu, iso_fp):
    fp = iso_fp
    short = make_plan(fp, cpu, step_seconds=1.0)
    long = make_plan(fp, cpu, step_seconds=20.0)
    assert math.prod(long.patch_size) * long.batch_size > math.prod(short.patch_size) * short.batch_size


def test_time_budget_sets_iterations(cpu, iso_fp):
    fp = iso_fp
    a = make_plan(fp, cpu, time_limit=600)
    b = make_plan(fp, cpu, time_limit=6000)
    assert 9 <= b.training["iterations"] / a.training["iterations"] <= 11
    assert b.training["time_limit"] == 6000


def test_ct_normalisation_uses_dataset_statistics(cpu, synthetic_fingerprint):
    fp = synthetic_fingerprint([(64, 64, 64)] * 4, [(1.0, 1.0, 1.0)] * 4, channel_names=("CT",))
    plan = make_plan(fp, cpu)
    names = [s["name"] for s in plan.preprocessing]
    assert names == ["clip", "zscore"]
    assert plan.preprocessing[0]["low"] == -100.0 and plan.preprocessing[0]["high"] == 300.0
    assert plan.preprocessing[1]["mean"] == 50.0 and plan.preprocessing[1]["std"] == 20.0
    assert "CT" in _rule(plan, "normalisation[0]")["reason"]


def test_mr_normalisation_uses_nonzero_mask_when_crop_removes_background(cpu, synthetic_fingerprint):
    fp = synthetic_fingerprint([(64, 64, 64)] * 4, [(1.0, 1.0, 1.0)] * 4, channel_names=("T1", "FLAIR"),
                               crop_fraction=0.5)
    plan = make_plan(fp, cpu)
    assert plan.preprocessing == [{"name": "zscore", "mask": "nonzero", "channels": [0]},
                                  {"name": "zscore", "mask": "nonzero", "channels": [1]}]
    whole = make_plan(synthetic_fingerprint([(64, 64, 64)] * 4, [(1.0,) * 3] * 4), cpu)
    assert whole.preprocessing == [{"name": "zscore", "mask": None, "channels": [0]}]


def test_every_rule_records_decision_and_reason(cpu, thick_fp):
    plan = make_plan(thick_fp, cpu)
    fired = {r["rule"] for r in plan.rules_fired}
    for rule in ("target_spacing", "resampling", "crop_to_nonzero", "normalisation[0]", "configuration",
                 "3d.patch_size", "3d.network", "3d.batch_size", "2d.patch_size", "2d.batch_size", "2d.training"):
        assert rule in fired
    assert all(r["reason"] and r["decision"] for r in plan.rules_fired)
    json.dumps(plan.to_dict())  # JSON-serialisable
