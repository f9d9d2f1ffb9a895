import csv
import json

import numpy as np
import pytest

from medseg.cli import main
from medseg.errors import GeometryError, MedsegError
from medseg.image import Image
from medseg.io import write_image
from medseg.metrics.evaluator import evaluate_folders

SPACING = (2.0, 0.8, 0.8)


def _sphere(shape, centre, radius):
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return ((z - centre[0]) ** 2 * 4 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) <= radius**2


def _write(folder, name, array, spacing=SPACING):
    write_image(Image(array[None].astype(np.uint8), spacing=spacing), folder / f"{name}.nii.gz")


@pytest.fixture
def folders(tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(); pred.mkdir()
    shape = (12, 24, 24)
    for i, name in enumerate(["case_a", "case_b", "case_c"]):
        ref = _sphere(shape, (6, 12, 12), 8).astype(np.uint8)
        ref[_sphere(shape, (6, 12, 12), 3)] = 2
        _write(gt, name, ref)
        if name != "case_c":  # case_c has no prediction
            p = np.roll(ref, i, axis=2)
            if name == "case_b":
                p[p == 2] = 1  # label 2 missed entirely: exactly one empty
            _write(pred, name, p)
    return tmp_path


def test_evaluate_folders_outputs_and_missing(folders):
    out = folders / "eval"
    summary = evaluate_folders(folders / "pred", folders / "gt", out, labels={"organ": 1, "core": 2},
                               regions={"whole": [1, 2]}, workers=1)
    for name in ("per_case.csv", "summary.json", "report.md", "report.html", "boxplots.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    rows = list(csv.DictReader(open(out / "per_case.csv", encoding="utf-8")))
    assert len(rows) == 3 * 3
    by = {(r["case"], r["label"]): r for r in rows}
    assert float(by["case_a", "whole"]["dice"]) == 1.0 and float(by["case_a", "whole"]["hd95"]) == 0.0
    assert by["case_c", "organ"]["status"] == "missing_prediction"
    assert float(by["case_c", "organ"]["dice"]) == 0.0 and by["case_c", "organ"]["hd95"] == "inf"
    assert by["case_b", "core"]["hd95"] == "inf"
    data = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert data["counts"]["missing_predictions"] == ["case_c"]
    assert data["counts"]["per_label"]["core"]["exactly_one_empty"] == 2  # case_b and the missing case_c
    whole = data["metrics"]["whole"]
    assert whole["dice"]["n"] == 3 and whole["hd95"]["n_inf"] == 1 and whole["hd95"]["n_finite"] == 2
    dice_values = [float(by[c, "whole"]["dice"]) for c in ("case_a", "case_b", "case_c")]
    assert whole["dice"]["mean"] == pytest.approx(np.mean(dice_values))
    assert whole["dice"]["ci_low"] <= whole["dice"]["mean"] <= whole["dice"]["ci_high"]
    assert summary.mean("dice", "whole") == pytest.approx(np.mean(dice_values))
    assert "case_c" in (out / "report.md").read_text(encoding="utf-8")
    assert "<img" in (out / "report.html").read_text(encoding="utf-8")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_labels_from_dataset_json_or_values(folders):
    labels = {"background": 0, "organ": 1, "core": 2}
    (folders / "dataset.json").write_text(json.dumps({"labels": labels}), encoding="utf-8")
    summary = evaluate_folders(folders / "pred", folders / "gt", folders / "e1", workers=1)
    assert list(summary.labels) == ["organ", "core"]
    (folders / "dataset.json").unlink()
    summary = evaluate_folders(folders / "pred", folders / "gt", folders / "e2", workers=2)
    assert list(summary.labels) == ["1", "2"]
    assert summary.statistics["1"]["dice"]["n"] == 3


def test_geometry_mismatch_names_both_files(folders):
    _write(folders / "pred", "case_c", np.zeros((12, 24, 24)), spacing=(1.0, 0.8, 0.8))
    with pytest.raises(GeometryError, match=r"case_c\.nii\.gz.*case_c\.nii\.gz"):
        evaluate_folders(folders / "pred", folders / "gt", folders / "e", labels={"organ": 1}, workers=1)


def test_roi_and_probabilities_2d(tmp_path):
    rng = np.random.default_rng(1)
    for sub in ("gt", "pred", "roi", "prob"):
        (tmp_path / sub).mkdir()
    for name in ("01", "02"):
        ref = np.zeros((32, 32), np.uint8); ref[10:20, 5:28] = 1
        prob = np.clip(ref * 0.5 + rng.random((32, 32)) * 0.6, 0, 1).astype(np.float32)
        roi = np.zeros((32, 32), np.uint8); roi[2:30, 2:30] = 1
        write_image(Image(ref[None]), tmp_path / "gt" / f"{name}.png")
        write_image(Image((prob > 0.5).astype(np.uint8)[None]), tmp_path / "pred" / f"{name}.png")
        write_image(Image(roi[None] * 255), tmp_path / "roi" / f"{name}.png")
        np.savez(tmp_path / "prob" / f"{name}.npz", probabilities=prob[None])
    summary = evaluate_folders(tmp_path / "pred", tmp_path / "gt", tmp_path / "out", roi_dir=tmp_path / "roi",
                               probabilities_dir=tmp_path / "prob", labels={"vessel": 1}, workers=1)
    assert 0.5 < summary.mean("roc_auc", "vessel") <= 1.0
    assert "pr_auc" in open(tmp_path / "out" / "per_case.csv", encoding="utf-8").readline()


def test_cli_writes_outputs(folders, capsys):
    out = folders / "cli_out"
    code = main(["evaluate", str(folders / "pred"), str(folders / "gt"), "--out", str(out),
                 "--labels", "organ=1", "--labels", "core=2", "--regions", "whole=1,2",
                 "--nsd-tolerance", "1.5", "--workers", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "whole" in printed and "dice" in printed and "case_c" in printed
    for name in ("per_case.csv", "summary.json", "report.md", "report.html"):
        assert (out / name).is_file()
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["settings"]["nsd_tolerance_mm"] == 1.5


def test_cli_bad_input(folders, capsys):
    assert main(["evaluate", str(folders / "pred"), str(folders / "nope"), "--out", str(folders / "o")]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["evaluate", str(folders / "pred"), str(folders / "gt"), "--out", str(folders / "o"),
                 "--labels", "organ"]) == 1


def test_unreadable_probabilities_name_the_file(folders):
    (folders / "prob").mkdir()
    for name in ("case_a", "case_b", "case_c"):
        (folders / "prob" / f"{name}.npz").write_bytes(b"not a numpy archive")
    with pytest.raises(MedsegError, match=r"case_a\.npz: cannot read probabilities"):
        evaluate_folders(folders / "pred", folders / "gt", folders / "e", labels={"organ": 1},
                         probabilities_dir=folders / "prob", workers=1)
