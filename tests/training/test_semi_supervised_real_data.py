"""Semi-supervised training, pseudo-labels and suggestions once on real data (ACDC cine-MRI)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.data


def test_acdc_few_labels_end_to_end(shared_data, tmp_path, one_thread):
    from medseg.cli import main
    from medseg.datasets import load_dataset
    from medseg.datasets.check import check_dataset
    from medseg.io import read_image

    acdc = shared_data / "ACDC"
    if not (acdc / "dataset.json").is_file():
        pytest.skip("ACDC not found")
    # 2 labelled volumes, 2 whose labels are withheld (allow_unlabeled), one held-out volume
    root = tmp_path / "acdc"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    cases = ["patient003_frame01", "patient003_frame02", "patient004_frame01", "patient004_frame02"]
    for i, case in enumerate(cases):
        (root / "imagesTr" / f"{case}_0000.nii.gz").symlink_to(acdc / "imagesTr" / f"{case}_0000.nii.gz")
        if i < 2:
            (root / "labelsTr" / f"{case}.nii.gz").symlink_to(acdc / "labelsTr" / f"{case}.nii.gz")
    meta = json.loads((acdc / "dataset.json").read_text(encoding="utf-8"))
    meta.update(numTraining=4, allow_unlabeled=True)
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    report = check_dataset(root)
    assert report.ok and report.summary["unlabeled_cases"] == 2
    assert len(load_dataset(root).unlabeled_cases) == 2

    model = tmp_path / "model"
    assert main(["train", str(root), "--out", str(model), "--labeled", "2", "--semi-supervised", "bcp",
                 "--iterations", "2", "--patch-size", "64,64", "--features", "4", "--batch-size", "2",
                 "--plan", str(_plan_2d(tmp_path)), "--threads", "1", "--no-progress",
                 "--memory-format", "contiguous"]) == 0
    semi = json.loads((model / "config.json").read_text(encoding="utf-8"))["training"]["semi_supervised"]
    assert sorted(semi["unlabeled"]) == cases[2:]

    held_out = acdc / "imagesTr" / "patient002_frame01_0000.nii.gz"
    pseudo = tmp_path / "pseudo"
    assert main(["pseudolabel", str(model), "-i", str(held_out), "-o", str(pseudo), "--voxel-threshold", "0.5",
                 "--tta-axes", "2", "--threads", "1"]) == 0
    label = read_image(pseudo / "labelsTr" / "patient002_frame01.nii.gz")
    assert label.spatial_shape == read_image(held_out).spatial_shape
    assert set(np.unique(label.array).tolist()) <= {0, 1, 2, 3, 4}  # 4 = ignore (after LV = 3)
    table = tmp_path / "suggest.csv"
    assert main(["suggest", str(model), "-i", str(held_out), "-n", "1", "-o", str(table), "--threads", "1"]) == 0
    assert "patient002_frame01" in table.read_text(encoding="utf-8")


def _plan_2d(tmp_path):
    """A 2D plan for the ACDC stacks: slices across axis 0, z-score."""
    plan = tmp_path / "plan.json"
    from medseg.cli import main

    assert main(["plan", str(tmp_path / "acdc"), "--out", str(plan), "--time-budget", "1m"]) == 0
    return plan
