import json

import pytest

from medseg.planning import Plan, PlanError, make_plan


@pytest.fixture
def plan(cpu, synthetic_fingerprint):
    fp = synthetic_fingerprint([(10, 200, 180)] * 6, [(8.0, 1.5, 1.5)] * 6, labels={"background": 0, "a": 1, "b": 2})
    return make_plan(fp, cpu)


def test_save_load_round_trip(plan, tmp_path):
    path = plan.save(tmp_path / "plan.json")
    again = Plan.load(path)
    assert again == plan
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write leaves nothing behind


def _edit(plan, tmp_path, change):
    data = plan.to_dict()
    change(data)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("change, field", [
    (lambda d: d.update(patch_size=[64, 64, 64]), "patch_size"),            # wrong length for 2D
    (lambda d: d.update(patch_size=[100, 98]), "patch_size"),               # not divisible by strides
    (lambda d: d.update(batch_size=0), "batch_size"),
    (lambda d: d.update(batch_size="4"), "batch_size"),
    (lambda d: d.update(target_spacing=[1.0, -1.0, 1.0]), "target_spacing"),
    (lambda d: d["network"].update(depth=2), "network.strides"),
    (lambda d: d["network"]["kernel_sizes"].__setitem__(0, [2, 3]), "network.kernel_sizes[0]"),
    (lambda d: d.update(pach_size=[64, 64]), "pach_size"),                  # typo: unknown field
    (lambda d: d.pop("labels"), "labels"),
    (lambda d: d.update(labels={"organ": 1}), "labels"),
    (lambda d: d.update(num_classes=7), "num_classes"),
    (lambda d: d.update(ignore_label=1), "ignore_label"),
    (lambda d: d.update(configuration="4d"), "configuration"),
    (lambda d: d.update(spatial_dims=3), "spatial_dims"),
    (lambda d: d["resampling"].update(label="cubic"), "resampling.label"),
    (lambda d: d["preprocessing"].append({"mask": "nonzero"}), "preprocessing[1]"),
    (lambda d: d["preprocessing"][0].update(channels=[3]), "preprocessing[0].channels"),
    (lambda d: d["preprocessing"].append({"name": "no_such_step"}), "preprocessing"),
    (lambda d: d["preprocessing"][0].update(mask="body"), "preprocessing"),
    (lambda d: d["training"].update(iterations=-5), "training.iterations"),
    (lambda d: d["alternatives"]["3d"].update(patch_size=[8, 8]), "alternatives.3d.patch_size"),
    (lambda d: d.update(crop_to_nonzero="yes"), "crop_to_nonzero"),
])
def test_invalid_edit_is_rejected_naming_the_field(plan, tmp_path, change, field):
    path = _edit(plan, tmp_path, change)
    with pytest.raises(PlanError) as err:
        Plan.load(path)
    assert f"field '{field}'" in str(err.value)
    assert str(path) in str(err.value)


def test_valid_edit_is_accepted(plan, tmp_path):
    def change(d):
        d["batch_size"] = 4
        d["patch_size"] = [d["patch_size"][0] // 2, d["patch_size"][1]]
        d["training"]["iterations"] = 10
    loaded = Plan.load(_edit(plan, tmp_path, change))
    assert loaded.batch_size == 4 and loaded.training["iterations"] == 10


def test_not_json_is_a_clear_error(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text("{ not json", encoding="utf-8")
    with pytest.raises(PlanError, match="not valid JSON"):
        Plan.load(path)
    with pytest.raises(PlanError, match="not found"):
        Plan.load(tmp_path / "missing.json")


def test_use_configuration_swaps_in_the_alternative(plan):
    assert plan.configuration == "2d"
    three = plan.use_configuration("3d")
    assert three.configuration == "3d" and three.spatial_dims == 3 and len(three.patch_size) == 3
    assert three.patch_size == plan.alternatives["3d"]["patch_size"]
    assert three.alternatives["2d"]["patch_size"] == plan.patch_size
    assert three.use_configuration("2d") == plan


def test_a_paper_network_picks_its_configuration_from_a_given_plan(plan):
    """`--net vnet --plan P` on a plan whose default is 2D trains the paper's volumetric V-Net (its registry
    entry's paper_dims); a U-Net keeps the plan's default; --configuration still wins."""
    from medseg.training.layout import load_plan
    from medseg.training.networks import implied_configuration

    assert load_plan(plan, None, preferred=implied_configuration("vnet", (), 3))["configuration"] == "3d"
    assert load_plan(plan, None, preferred=implied_configuration("unet", (), 3))["configuration"] == "2d"
    assert load_plan(plan, "2d", preferred=implied_configuration("vnet", (), 3))["configuration"] == "2d"
    assert load_plan(plan, None, preferred="4d")["configuration"] == "2d"  # not in the plan: its default
