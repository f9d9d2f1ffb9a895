"""Pseudo-labels keep what their thresholds say; suggest ranks the ambiguous case first."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import numpy as np
import pytest

from medseg.datasets import load_dataset
from medseg.datasets.check import check_dataset
from medseg.errors import MedsegError
from medseg.image import Image
from medseg.inference.pseudolabel import pseudo_label, voxel_confidence, write_pseudo_dataset
from medseg.inference.suggest import rank, score_case, suggest
from medseg.io import read_image, write_image


class IntensityModel:
    """A deterministic stand-in for a trained binary model: p(foreground) = sigmoid(8 (x - 0.5)).

    Bright (x = 1) objects on a dark (x = 0) background are certain; x near 0.5 is ambiguous.
    """

    config = SimpleNamespace(regions=None, activation="softmax", label_values=[0, 1], labels={"background": 0,
                             "organ": 1}, ignore_label=None, channel_names=["MR"], dataset="toy", slice_axis=None)
    tta = False

    def predict_with_probabilities(self, image):
        fg = 1.0 / (1.0 + np.exp(-8.0 * (image.array[0] - 0.5)))
        probs = np.stack([1 - fg, fg]).astype(np.float32)
        return image.with_array(np.argmax(probs, 0)[None].astype(np.uint8), ("label",)), image.with_array(probs)


def _case(kind: str, seed: int) -> Image:
    rng = np.random.default_rng(seed)
    array = rng.normal(0.0, 0.03, (16, 32, 32)).astype(np.float32)
    centre = rng.integers(10, 22, 2)
    yy, xx = np.mgrid[:32, :32]
    disc = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < 36
    array[:, disc] += {"clear": 1.0, "ambiguous": 0.52}[kind]
    return Image(array[None], spacing=(2.0, 1.0, 1.0))


def _write_cases(folder, kinds):
    folder.mkdir()
    cases = []
    for i, kind in enumerate(kinds):
        path = folder / f"case{i}_0000.nii.gz"
        write_image(_case(kind, i), path)
        cases.append((f"case{i}", [path]))
    return cases


def test_voxel_confidence_bounds():
    certain = np.stack([np.ones((3, 3)), np.zeros((3, 3))])
    uniform = np.full((4, 3, 3), 0.25)
    assert np.allclose(voxel_confidence(certain), 1.0) and np.allclose(voxel_confidence(uniform), 0.0)


def test_pseudo_label_keeps_exactly_the_confident_voxels(rng):
    fg = rng.random((20, 20)).astype(np.float32)
    probs = np.stack([1 - fg, fg])
    result = pseudo_label(probs, [0, 1], ignore_value=7, voxel_threshold=0.6)
    confidence = voxel_confidence(probs)
    kept = result.label_map != 7
    assert np.array_equal(kept, confidence >= 0.6)
    assert np.array_equal(result.label_map[kept], (fg > 0.5)[kept].astype(np.uint8))
    assert result.kept_share == pytest.approx(kept.mean())
    with pytest.raises(MedsegError, match="is a label value"):
        pseudo_label(probs, [0, 1], ignore_value=1)


def test_pseudo_dataset_is_trainable_and_filters_cases(tmp_path):
    cases = _write_cases(tmp_path / "in", ["clear", "ambiguous", "clear"])
    out = tmp_path / "pseudo"
    rows = write_pseudo_dataset(IntensityModel(), cases, out, voxel_threshold=0.8, case_threshold=0.5)
    kept = {r["case"]: r["kept"] for r in rows}
    assert kept == {"case0": 1, "case1": 0, "case2": 1}  # the ambiguous case is left out
    dataset = load_dataset(out)
    assert dataset.ignore_label == 2 and [c.name for c in dataset.cases] == ["case0", "case2"]
    assert check_dataset(out).ok
    label = read_image(out / "labelsTr" / "case0.nii.gz").array[0]
    confidence = read_image(out / "confidenceTr" / "case0.nii.gz").array[0]
    assert np.array_equal(label == 2, confidence < 0.8)
    image = read_image(out / "imagesTr" / "case0_0000.nii.gz")
    assert np.array_equal(image.array, read_image(cases[0][1][0]).array)  # the input, unchanged
    table = list(csv.DictReader((out / "pseudolabels.csv").open(encoding="utf-8")))
    assert [r["case"] for r in table] == ["case0", "case1", "case2"]
    with pytest.raises(MedsegError, match="no case reached"):
        write_pseudo_dataset(IntensityModel(), cases[1:2], tmp_path / "none", case_threshold=0.99)
    assert not (tmp_path / "none").exists()  # nothing half-written


def test_suggest_ranks_the_ambiguous_case_first(tmp_path):
    kinds = ["clear", "clear", "ambiguous", "clear", "clear"]
    cases = _write_cases(tmp_path / "in", kinds)
    rows = suggest(IntensityModel(), cases, k=3)
    assert rows[0]["case"] == "case2" and rows[0]["rank"] == 1
    assert "uncertainty" in rows[0]["reason"] and rows[0]["slices"]  # 3D: the most uncertain slices
    assert len(rows) == 3 and len({r["case"] for r in rows}) == 3


def test_rank_prefers_diversity_among_equally_uncertain_cases():
    probs = np.stack([np.full((8, 8), 0.6), np.full((8, 8), 0.4)])
    a = score_case("a", probs)
    twin = score_case("twin", probs)
    other = np.stack([np.full((8, 8), 0.3), np.full((8, 8), 0.7)])
    b = score_case("b", other)
    order = [r["case"] for r in rank([a, twin, b])]
    assert order[1] == "b"  # the duplicate of the first pick comes last
