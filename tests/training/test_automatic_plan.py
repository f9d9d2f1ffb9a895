"""`medseg train` / `train()` without a plan: the dataset is planned with `medseg plan`'s rules (the
fingerprint measured during the dataset check's read), recorded as the rule "plan" and in plan.json."""

import json

import pytest

from medseg.cli import main
from medseg.datasets import check_dataset, load_dataset, make_organs3d, make_vessels2d
from medseg.planning import compute_fingerprint
from medseg.planning.fingerprint import FingerprintCollector
from medseg.planning.rules import make_plan, photograph_steps
from medseg.planning.training_rules import uses_plan_patch
from medseg.training.config import TrainingConfig
from medseg.training.loop import train


@pytest.fixture(scope="module")
def organs(tmp_path_factory):
    return make_organs3d(tmp_path_factory.mktemp("o") / "organs", cases=5, seed=0, shape=(8, 24, 24),
                         spacing=(3.0, 1.0, 1.0))


def _rules(folder):
    return {r["name"]: r for r in json.loads((folder / "rules.json").read_text(encoding="utf-8"))}


def test_fingerprint_measured_during_the_check_equals_a_separate_pass(organs):
    dataset = load_dataset(organs)
    collector = FingerprintCollector(dataset)
    report = check_dataset(dataset, on_case=collector.add)
    assert report.ok and set(collector.results) == {c.name for c in dataset.cases}
    assert json.dumps(collector.fingerprint(), sort_keys=True) == json.dumps(compute_fingerprint(dataset),
                                                                             sort_keys=True)


def test_train_without_a_plan_plans_and_records_it(organs, tmp_path, one_thread):
    config = TrainingConfig(iterations=1, network_options={"features": 4}, val_every=1000)
    folder = train(organs, tmp_path / "m", config, progress=False).folder
    plan = json.loads((folder / "plan.json").read_text(encoding="utf-8"))
    model = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    rules = _rules(folder)
    assert rules["plan"]["reason"].startswith("no plan given: planned automatically from the dataset")
    assert not rules["plan"]["overridden_by_user"]
    assert rules["plan"]["value"]["configuration"] == plan["configuration"]
    # the plan's grid and normalisation are what the model was trained (and will predict) with
    assert model["target_spacing"] == plan["target_spacing"] and model["crop_to_nonzero"] == plan["crop_to_nonzero"]
    assert model["preprocessing"] == plan["preprocessing"] and model["spatial_dims"] == plan["spatial_dims"]
    assert rules["budget"]["reason"] == "given with --iterations / --time-limit"
    # the same plan as `medseg plan` makes (the machine's memory may differ between the two moments:
    # compare the decisions that do not depend on it)
    assert main(["plan", str(organs), "--out", str(tmp_path / "p" / "plan.json"), "--time-budget", "20m"]) == 0
    cli = json.loads((tmp_path / "p" / "plan.json").read_text(encoding="utf-8"))
    for key in ("configuration", "target_spacing", "crop_to_nonzero", "preprocessing", "resampling", "slice_axis"):
        assert cli[key] == plan[key], key


def test_a_3d_patch_asks_for_the_3d_configuration(organs, tmp_path, one_thread):
    config = TrainingConfig(iterations=1, network_options={"features": 4}, patch_size=(8, 24, 24), val_every=1000)
    folder = train(organs, tmp_path / "m", config, progress=False, check=False).folder
    plan = json.loads((folder / "plan.json").read_text(encoding="utf-8"))
    assert plan["configuration"] == "3d" and "forced" in next(
        r["reason"] for r in plan["rules_fired"] if r["rule"] == "configuration")


def test_thin_structures_keep_the_local_patch_rule(tmp_path, one_thread):
    assert not uses_plan_patch(True, "thin") and uses_plan_patch(True, "compact") and uses_plan_patch(False, "thin")
    data = make_vessels2d(tmp_path / "v", cases=5, seed=0, size=160)
    folder = train(data, tmp_path / "m", TrainingConfig(iterations=1, val_every=1000), progress=False).folder
    rules = _rules(folder)
    assert rules["structure"]["value"] == "thin"
    assert rules["patch_size"]["value"] == [128, 128] and "automatic_plan_patch" in rules["patch_size"]["inputs"]
    assert rules["batch_size"]["value"] == 4
    # fundus-like photographs: green channel, CLAHE, z-score inside the field of view (the planner's rule)
    assert rules["preprocessing"]["value"] == photograph_steps(True)


def test_photograph_normalisation_is_the_planners(synthetic_fingerprint_2d):
    fingerprint = synthetic_fingerprint_2d
    assert make_plan(fingerprint).preprocessing == photograph_steps(True)
    fingerprint["cases_with_roi"] = 0
    assert make_plan(fingerprint).preprocessing == photograph_steps(False)
    fingerprint["channel_names"] = ["T1", "T2", "FLAIR"]
    fingerprint["file_ending"] = ".nii.gz"
    assert [s["name"] for s in make_plan(fingerprint).preprocessing] == ["zscore"] * 3


@pytest.fixture
def synthetic_fingerprint_2d():
    shapes, spacings = [(584, 565)] * 4, [(1.0, 1.0)] * 4
    import numpy as np

    from medseg.planning.fingerprint import SPACING_PERCENTILES

    stats = {"mean": 0.0, "std": 1.0, "median": 0.0, "percentile_00_5": -2.0, "percentile_99_5": 2.0,
             "min": -3.0, "max": 3.0}
    return {
        "dataset": "fundus", "channel_names": ["R", "G", "B"], "labels": {"background": 0, "vessel": 1},
        "regions": None, "ignore_label": None, "file_ending": ".png", "cases_with_roi": 4, "num_cases": 4,
        "cases": [{"name": f"c{i}", "shape": list(s), "spacing": list(p)} for i, (s, p) in enumerate(zip(shapes,
                                                                                                        spacings))],
        "warnings": [],
        "summary": {"spatial_dims": 2, "median_shape": [584, 565], "median_spacing": [1.0, 1.0],
                    "spacing_percentiles": {str(p): [1.0, 1.0] for p in SPACING_PERCENTILES}, "anisotropy": 1.0,
                    "median_nonzero_crop_fraction": float(np.float64(1.0)), "intensity": [dict(stats)] * 3},
    }
