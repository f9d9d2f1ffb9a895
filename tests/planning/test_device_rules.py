"""The device rules: fine-tuning defaults and the field-of-view rule, each a recorded decision with its reason."""

import pytest

from medseg.planning import device_rules as rules
from medseg.planning.training_rules import LEARNING_RATE, rule_validation


def test_finetuning_defaults_and_user_overrides():
    lr = rules.rule_finetune_learning_rate("adamw", None)
    assert lr.value == pytest.approx(LEARNING_RATE["adamw"] / 10) and lr.value < LEARNING_RATE["adamw"]
    assert rules.rule_finetune_learning_rate("sgd", None).value == pytest.approx(1e-3)
    assert rules.rule_finetune_learning_rate("adamw", 0.01).overridden_by_user
    budget = rules.rule_finetune_budget(None, None)
    assert budget.value == {"iterations": None, "time_limit": 300.0}
    assert rules.rule_finetune_budget(50, None).value["iterations"] == 50


def test_few_cases_all_train_more_cases_validate():
    few = rules.rule_finetune_validation(["a", "b", "c", "d", "e"], None, None)
    assert few.value == {"fold": "all"} and "source model's decision threshold" in few.reason
    six = [f"c{i}" for i in range(6)]
    assert rules.rule_finetune_validation(six, None, None) == rule_validation(six, None, None)
    assert rules.rule_finetune_validation(["a", "b"], None, ["b"]).value == {"val_cases": ["b"]}


def test_inherited_choices():
    assert rules.rule_inherited_threshold(None, 0.71).value == 0.71
    assert rules.rule_inherited_threshold("argmax", 0.71).value is None
    assert rules.rule_inherited_postprocessing(None, [{"step": "largest", "label": 1}]).value == [
        {"step": "largest", "label": 1}]


def test_field_of_view_rule():
    on = rules.rule_field_of_view(None, True, [536.0, 538.0, 537.0])
    assert on.value == 537.0 and on.inputs["diameter_range"] == [536.0, 538.0]
    assert rules.rule_field_of_view(None, False, [537.0]).value is None  # not colour photographs
    assert rules.rule_field_of_view(None, True, []).value is None        # no circular FOV ROIs
    assert rules.rule_field_of_view("none", True, [537.0]).value is None
    assert rules.rule_field_of_view(600.0, False, []).value == 600.0
    assert rules.rule_fov_prediction(None, True) is None
    assert rules.rule_fov_prediction(537.0, True).value == 537.0
    assert rules.rule_fov_prediction(537.0, False).overridden_by_user
