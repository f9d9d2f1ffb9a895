import json

import pytest

from medseg.datasets import load_dataset, make_organs3d
from medseg.datasets.splits import case_group, load_or_create_splits, make_splits, parse_splits
from medseg.errors import DatasetError

NAMES = [f"patient{p:03d}_frame{f:02d}" for p in range(1, 11) for f in (1, 2)]


def test_new_splits_keep_patients_together_and_cover_every_case():
    folds = make_splits(NAMES, folds=5, seed=0)
    assert len(folds) == 5
    vals = [n for f in folds for n in f["val"]]
    assert sorted(vals) == sorted(NAMES)  # each case validated exactly once
    for f in folds:
        assert not set(f["train"]) & set(f["val"])
        assert {case_group(n) for n in f["train"]}.isdisjoint({case_group(n) for n in f["val"]})
    assert make_splits(NAMES, 5, seed=0) == folds and make_splits(NAMES, 5, seed=1) != folds


def test_dict_split_with_patient_ids_is_one_fold():
    data = {"train": ["patient001", "patient002_frame01"], "val": ["patient003"], "test": ["x"]}
    folds = parse_splits(data, NAMES)
    assert folds == [{"train": ["patient001_frame01", "patient001_frame02", "patient002_frame01"],
                      "val": ["patient003_frame01", "patient003_frame02"]}]


def test_nnunet_list_format_and_errors(tmp_path):
    folds = parse_splits([{"train": NAMES[:10], "val": NAMES[10:]}, {"train": NAMES[10:], "val": NAMES[:10]}], NAMES)
    assert len(folds) == 2
    with pytest.raises(DatasetError, match="'patient999'"):
        parse_splits({"train": ["patient999"], "val": []}, NAMES)
    with pytest.raises(DatasetError, match="both"):
        parse_splits({"train": NAMES[:3], "val": NAMES[:1]}, NAMES)
    with pytest.raises(DatasetError, match="train"):
        parse_splits([{"val": NAMES}], NAMES)


def test_dataset_splits_file_is_honoured_and_never_rewritten(tmp_path):
    root = make_organs3d(tmp_path / "d", cases=4, shape=(6, 12, 12))
    ds = load_dataset(root)
    names = [c.name for c in ds.cases]
    given = {"train": names[:3], "val": names[3:]}
    (root / "splits.json").write_text(json.dumps(given), encoding="utf-8")
    ds = load_dataset(root)
    before = (root / "splits.json").read_text(encoding="utf-8")
    out = tmp_path / "model"
    folds = load_or_create_splits(ds, folds=5, output_dir=out)
    assert folds == [given]
    assert (root / "splits.json").read_text(encoding="utf-8") == before
    assert json.loads((out / "splits.json").read_text(encoding="utf-8")) == [given]  # recorded in the model folder


def test_new_splits_go_to_output_dir_only(tmp_path):
    root = make_organs3d(tmp_path / "d", cases=6, shape=(6, 12, 12))
    ds = load_dataset(root)
    folds = load_or_create_splits(ds, folds=3, output_dir=tmp_path / "m")
    assert not (root / "splits.json").exists()
    assert len(folds) == 3
    # a later run reads the recorded splits
    assert load_or_create_splits(ds, folds=3, seed=99, output_dir=tmp_path / "m") == folds
    with pytest.raises(DatasetError, match="folds"):
        load_or_create_splits(ds, folds=10)


@pytest.mark.data
def test_acdc_splits(shared_data):
    ds = load_dataset(shared_data / "ACDC")
    folds = load_or_create_splits(ds)
    assert len(folds) == 1 and len(folds[0]["train"]) == 140 and len(folds[0]["val"]) == 20
    assert {case_group(n) for n in folds[0]["train"]}.isdisjoint({case_group(n) for n in folds[0]["val"]})

