"""The semi-supervised defaults are named rules: decided with a reason, yielding to the user, recorded and printed."""

from __future__ import annotations

import json

import pytest

from medseg.errors import MedsegError
from medseg.planning import semi_supervised_rules as ssl
from medseg.training.semi_supervised import SemiSupervisedSettings


def test_defaults_are_rules_with_reasons():
    settings, fired = ssl.semi_supervised_rules({}, 2)
    by_name = {r.name: r for r in fired}
    assert list(by_name) == ["ssl_method", "ssl_batch_mix", "ssl_rampup", "ssl_weight", "ssl_teacher", "ssl_pretrain"]
    assert settings["method"] == ssl.DEFAULT_METHOD and settings["reason"] == by_name["ssl_method"].reason
    assert settings["ema_decay"] == ssl.TEACHER_EMA_DECAY and settings["rampup"] == ssl.RAMPUP_SHARE
    assert settings["weight"] == ssl.UNLABELED_WEIGHT[ssl.DEFAULT_METHOD] and settings["unlabeled_batch_size"] == 0
    assert all(r.reason and not r.overridden_by_user for r in fired)
    # the settings object's own defaults are the same constants (one owner)
    plain = SemiSupervisedSettings()
    assert (plain.method, plain.rampup, plain.ema_decay, plain.weight, plain.pretrain) == (
        settings["method"], settings["rampup"], settings["ema_decay"], settings["weight"], settings["pretrain"])


def test_user_values_win_and_are_marked():
    given = {"method": "mean_teacher", "ema_decay": 0.95, "unlabeled_batch_size": 3}
    settings, fired = ssl.semi_supervised_rules(given, 2)
    by_name = {r.name: r for r in fired}
    assert by_name["ssl_method"].overridden_by_user and by_name["ssl_teacher"].overridden_by_user
    assert by_name["ssl_batch_mix"].value == 3 and not by_name["ssl_rampup"].overridden_by_user
    assert settings["weight"] == 0.1 and settings["ema_decay"] == 0.95


def test_cps_has_no_teacher_and_none_has_no_settings():
    _, fired = ssl.semi_supervised_rules({"method": "cps"}, 2)
    assert not {"ssl_teacher", "ssl_pretrain"} & {r.name for r in fired}
    settings, fired = ssl.semi_supervised_rules({"method": "none"}, 2)
    assert [r.name for r in fired] == ["ssl_method"] and settings == {"method": "none"}
    with pytest.raises(MedsegError, match="unknown semi-supervised method 'fixmatch'"):
        ssl.semi_supervised_rules({"method": "fixmatch"}, 2)
    for bad in ({"rampup": "soon"}, {"unlabeled_batch_size": 2.5}, {"weight": -1}):
        with pytest.raises(MedsegError, match="--ssl-option"):
            ssl.semi_supervised_rules(bad, 2)
    assert ssl.semi_supervised_rules({"rampup": "0.3"}, 2)[0]["rampup"] == 0.3


def test_the_method_follows_the_networks_dimensionality():
    settings, fired = ssl.semi_supervised_rules({}, 3)
    assert settings["method"] == ssl.DEFAULT_METHOD_3D == "none" and [r.name for r in fired] == ["ssl_method"]
    assert fired[0].inputs["spatial_dims"] == 3 and "LA" in fired[0].reason
    assert ssl.semi_supervised_rules({}, 2)[0]["method"] == "bcp"
    settings, fired = ssl.semi_supervised_rules({"method": "bcp"}, 3)  # the user's choice wins in 3D too
    assert settings["method"] == "bcp" and fired[0].overridden_by_user and "ssl_pretrain" in {r.name for r in fired}


def test_train_records_and_prints_the_rules(tmp_path, one_thread, capsys):
    from medseg.cli import main
    from medseg.datasets import make_organs3d

    data = make_organs3d(tmp_path / "organs", cases=4, seed=2, shape=(6, 24, 24))

    def train(model, patch):
        assert main(["train", str(data), "--out", str(model), "--iterations", "1", "--patch-size", patch,
                     "--batch-size", "2", "--features", "4", "--depth", "2", "--threads", "1", "--no-progress",
                     "--memory-format", "contiguous", "--labeled", "2", "--ssl-option", "rampup=0.25"]) == 0
        return capsys.readouterr().err

    # a 3D network: the labelled volumes alone, said and recorded
    err = train(tmp_path / "model3d", "4,16,16")
    assert "Semi-supervised method: none (labelled cases only, supervised) — in 3D at a CPU budget BCP lost" in err
    semi = json.loads((tmp_path / "model3d" / "config.json").read_text(encoding="utf-8"))["training"]["semi_supervised"]
    assert semi["method"] == "none" and len(semi["labeled"]) == 2
    # a 2D network on slices of the same volumes: BCP
    model = tmp_path / "model"
    err = train(model, "16,16")
    assert "Semi-supervised method: bidirectional copy-paste (BCP) — the only one of the three that beat supervised" in err
    assert "Unlabelled-loss ramp-up: 25% of the budget (your choice)" in err
    rules = {r["name"]: r for r in json.loads((model / "rules.json").read_text(encoding="utf-8"))}
    assert rules["ssl_method"]["value"] == "bcp" and not rules["ssl_method"]["overridden_by_user"]
    assert rules["ssl_teacher"]["value"] == 0.99 and rules["ssl_rampup"]["overridden_by_user"]
    semi = json.loads((model / "config.json").read_text(encoding="utf-8"))["training"]["semi_supervised"]
    assert semi["method"] == "bcp" and semi["rampup"] == 0.25 and semi["reason"] == rules["ssl_method"]["reason"]
