"""Lesion instances (connected components) per label and region, sizes in mL or voxels, lesions.json."""

import json

import numpy as np

from medseg.image import Image
from medseg.measure import lesions, rows_in_voxels, structures_of, write_lesions


def _map():
    a = np.zeros((1, 10, 20, 20), np.uint8)
    a[0, 1:3, 1:4, 1:4] = 2          # oedema lesion A: 18 voxels
    a[0, 5:9, 10:15, 10:15] = 2      # lesion B: 100 voxels, with a core inside
    a[0, 6:8, 11:14, 11:14] = 4      # enhancing core: 18 voxels
    a[0, 9, 19, 19] = 1              # a single voxel touching nothing
    return Image(a, spacing=(2.0, 0.5, 0.5), origin=(10.0, 0.0, -5.0))


def test_instances_per_label_and_region():
    out = lesions(_map(), {"whole": [1, 2, 4], "core": [1, 4]}, {"background": 0, "oedema": 2, "enhancing": 4})
    s = out["structures"]
    assert out["unit"] == "mL" and out["connectivity"] == 26
    assert s["oedema"]["count"] == 2 and s["enhancing"]["count"] == 1
    whole = s["whole"]
    assert whole["count"] == 3  # A, B (with its core), and the single voxel
    big = whole["instances"][0]
    assert big["id"] == 1 and big["voxels"] == 100  # largest first; the core is inside B
    assert big["bbox_lower"] == [5, 10, 10] and big["bbox_upper"] == [9, 15, 15]
    assert big["volume"] == 100 * 2.0 * 0.25 / 1000
    assert big["centroid_voxel"] == [6.5, 12.0, 12.0]
    assert big["centroid_mm"] == [10.0 + 6.5 * 2.0, 6.0, -5.0 + 6.0]
    assert s["core"]["count"] == 2  # the enhancing core and the single necrosis voxel


def test_unknown_spacing_gives_voxels():
    out = lesions(_map(), None, {"oedema": 2}, spacing_known=False)
    inst = out["structures"]["oedema"]["instances"][0]
    assert out["unit"] == "voxels" and inst["volume"] == inst["voxels"] and "centroid_mm" not in inst
    assert rows_in_voxels([{"voxels": 7, "volume": 0.1, "unit": "mL"}]) == [{"voxels": 7, "volume": 7, "unit": "voxels"}]


def test_structures_and_write_keep_other_cases(tmp_path):
    assert structures_of({"background": 0, "a": 1}, {"r": [1, 2]}) == {"a": [1], "r": [1, 2]}
    path = tmp_path / "lesions.json"
    write_lesions([lesions(_map(), None, {"oedema": 2}, case="c1")], path)
    write_lesions([lesions(_map(), None, {"oedema": 2}, case="c2")], path)
    assert sorted(json.loads(path.read_text(encoding="utf-8"))["cases"]) == ["c1", "c2"]


def test_empty_map_lists_structures_with_zero():
    empty = Image(np.zeros((1, 4, 4, 4), np.uint8))
    out = lesions(empty, {"whole": [1, 2]}, None)
    assert out["structures"]["whole"] == {"values": [1, 2], "count": 0, "volume": 0.0, "instances": []}
