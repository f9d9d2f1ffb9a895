"""Plan the real datasets (../shared/data): the decisions that matter."""

import json

import pytest

from medseg.datasets import load_dataset
from medseg.planning import Machine, compute_fingerprint, make_plan

pytestmark = pytest.mark.data


def test_plan_acdc(shared_data, tmp_path):
    ds = load_dataset(shared_data / "ACDC")
    fp = compute_fingerprint(ds, workers=2)
    assert fp["num_cases"] == 160
    assert fp["summary"]["median_spacing"] == [1.0, 1.0, 1.0]  # the release stores 1 mm (see README)
    plan = make_plan(fp, Machine("cpu", 2, 16 * 2**30, flops=24e9))
    # 6–18 slices of ~256×216: a short stack -> 2D across axis 0, 3D kept as the alternative
    assert plan.configuration == "2d" and plan.slice_axis == 0 and "3d" in plan.alternatives
    assert plan.labels == {"background": 0, "RV": 1, "MYO": 2, "LV": 3} and plan.num_classes == 4
    assert plan.batch_size >= 2 and plan.training["estimated_step_seconds"] <= 1.5
    plan.save(tmp_path / "plan.json")
    # slices 5–10 mm apart: the heart changes from slice to slice, so 2D even where 3D steps are cheap
    assert 0.7 < fp["summary"]["slice_continuity"] < 0.82
    assert make_plan(fp, Machine("cpu", 2, 16 * 2**30, flops=24e9, bfloat16=True)).configuration == "2d"


def test_plan_promise12_goes_3d_at_the_step_budget_of_its_machine(shared_data):
    fp = compute_fingerprint(load_dataset(shared_data / "PROMISE12"), workers=2)
    assert fp["summary"]["slice_continuity"] >= 0.82  # the gland continues across its 15–47 slices
    bf16 = make_plan(fp, Machine("cpu", 2, 16 * 2**30, flops=24e9, bfloat16=True))
    fp32 = make_plan(fp, Machine("cpu", 2, 16 * 2**30, flops=24e9))
    assert bf16.configuration == fp32.configuration == "3d"
    # without bfloat16 units: half the step budget, a coarser grid and a smaller patch (more steps in the budget)
    assert fp32.training["estimated_step_seconds"] < bf16.training["estimated_step_seconds"]
    assert fp32.target_spacing[0] > bf16.target_spacing[0]


def _rule_decision(plan, name):
    return json.loads(next(r["decision"] for r in plan.rules_fired if r["rule"] == name))


def test_plan_la(shared_data):
    fp = compute_fingerprint(load_dataset(shared_data / "LA"), workers=2)
    plan = make_plan(fp, Machine("cpu", 2, 16 * 2**30, flops=24e9))
    assert _rule_decision(plan, "target_spacing") == [0.625, 0.625, 0.625]
    assert plan.configuration == "3d"  # isotropic, 88 slices
    # 2 cores afford a 48×48×64 patch at 0.625 mm, 6 % of the median 88×144×185 image: the 3D grid is coarsened
    assert plan.target_spacing[0] > 0.625 and len(set(plan.target_spacing)) == 1
    assert all(k == [3, 3, 3] for k in plan.network["kernel_sizes"])
