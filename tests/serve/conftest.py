"""Tiny models trained in the tests (a few seconds) for the service's tests."""

from __future__ import annotations

import pytest

from medseg.cli import main
from medseg.datasets import make_organs3d, make_vessels2d


@pytest.fixture(scope="session")
def vessels_data(tmp_path_factory):
    return make_vessels2d(tmp_path_factory.mktemp("serve") / "vessels", cases=3, seed=0, size=48, test_cases=1)


@pytest.fixture(scope="session")
def vessel_model(vessels_data, tmp_path_factory):
    """A 2D U-Net (RGB in, background/vessel out) trained for 40 iterations: enough to label some vessels."""
    out = tmp_path_factory.mktemp("serve_model") / "vessels"
    assert main(["train", str(vessels_data), "--out", str(out), "--iterations", "40", "--patch-size", "32",
                 "--batch-size", "2", "--features", "4", "--depth", "2", "--threads", "1", "--no-progress",
                 "--seed", "0"]) == 0
    return out


@pytest.fixture(scope="session")
def organs_data(tmp_path_factory):
    return make_organs3d(tmp_path_factory.mktemp("serve") / "organs", cases=2, seed=0, shape=(8, 24, 24),
                         num_organs=2, test_cases=1)


@pytest.fixture(scope="session")
def organ_model(organs_data, tmp_path_factory):
    """A 3D U-Net (two organs) trained for two iterations: its predictions only need the right grid."""
    out = tmp_path_factory.mktemp("serve_model") / "organs"
    assert main(["train", str(organs_data), "--out", str(out), "--iterations", "2", "--patch-size", "8,16,16",
                 "--batch-size", "1", "--features", "4", "--depth", "2", "--threads", "1", "--no-progress"]) == 0
    return out
