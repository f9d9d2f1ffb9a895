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
