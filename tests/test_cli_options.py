import json

import pytest

from medseg.cli._options import parse_key_values, parse_value
from medseg.errors import MedsegError


@pytest.mark.parametrize("text, expected", [
    ("3", 3), ("0.5", 0.5), ("1e-3", 1e-3), ("true", True), ("False", False), ("None", None), ("null", None),
    ("[1, 2]", [1, 2]), ("1,2.5", [1, 2.5]), ("batch", "batch"), (" roi ", "roi"), ('{"a": 1}', {"a": 1}),
])
def test_parse_value(text, expected):
    assert parse_value(text) == expected


def test_parse_key_values_and_errors():
    assert parse_key_values(["norm=batch", " depth = 3"], "--net-option") == {"norm": "batch", "depth": 3}
    assert parse_key_values(None, "-O") == {}
    for bad in ("depth", "=3"):
        with pytest.raises(MedsegError, match="--net-option expects KEY=VALUE"):
            parse_key_values([bad], "--net-option")


def test_usage_errors_print_usage_not_a_traceback(capsys):
    from medseg.cli import main

    assert main(["check", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert "No such option: --bogus" in err and "Traceback" not in err


def test_train_augmentation_option(tmp_path):
    from medseg.cli.train import _parse_augmentation

    config = {"transforms": [{"name": "flip", "p": 0.5}]}
    path = tmp_path / "aug.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    assert _parse_augmentation(str(path)) == config == _parse_augmentation(json.dumps(config))
    assert _parse_augmentation(None) is None
    for bad in ("{not json", "[1, 2]"):
        with pytest.raises(MedsegError, match="--augmentation"):
            _parse_augmentation(bad)


def test_train_postprocessing_and_threshold_options_parse():
    from medseg.cli.train import _parse_postprocessing, _parse_threshold
    from medseg.errors import MedsegError

    assert _parse_postprocessing(None) is None and _parse_postprocessing("none") == []
    assert _parse_postprocessing("largest:1, min_size=20:2") == [
        {"step": "largest", "label": 1}, {"step": "min_size", "label": 2, "min_size": 20.0}]
    assert _parse_threshold(None) is None and _parse_threshold("argmax") == "argmax"
    assert _parse_threshold("0.7") == 0.7
    for bad in ("dilate:1", "largest"):
        with pytest.raises(MedsegError):
            _parse_postprocessing(bad)
    with pytest.raises(MedsegError):
        _parse_threshold("high")
