"""`medseg convert`, `medseg check`, `medseg synth` end to end (small synthetic data; real data marked)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from medseg.cli import main


def test_synth_then_check(tmp_path, capsys):
    dst = tmp_path / "v"
    assert main(["synth", "vessels2d", str(dst), "--cases", "2", "--seed", "1", "--size", "48"]) == 0
    assert sorted(p.name for p in (dst / "imagesTr").iterdir()) == ["case_000_0000.png", "case_001_0000.png"]
    assert main(["check", str(dst)]) == 0
    out = capsys.readouterr().out
    assert "2 training" in out and "vessel" in out and "OK" in out


def test_synth_3d_and_bad_size(tmp_path, capsys):
    assert main(["synth", "organs3d", str(tmp_path / "o"), "--cases", "1", "--size", "8,16,16", "--channels", "4"]) == 0
    assert len(list((tmp_path / "o" / "imagesTr").iterdir())) == 4
    assert main(["synth", "organs3d", str(tmp_path / "p"), "--size", "8,16"]) == 1
    assert "Z,Y,X" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_check_reports_problems_and_exits_1(tmp_path, capsys):
    dst = tmp_path / "v"
    main(["synth", "vessels2d", str(dst), "--cases", "2", "--size", "32"])
    (dst / "labelsTr" / "case_001.png").write_bytes(b"")
    capsys.readouterr()
    assert main(["check", str(dst)]) == 1
    out = capsys.readouterr().out
    assert "case_001" in out and "0 bytes" in out


def test_check_without_dataset_json(tmp_path, capsys):
    assert main(["check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "dataset.json not found" in err and "Traceback" not in err


def test_convert_unknown_kind_and_existing_dst(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    assert main(["convert", "nosuch", str(src), str(tmp_path / "out")]) == 1
    assert "nosuch" in capsys.readouterr().err
    (tmp_path / "out").mkdir()
    assert main(["convert", "drive", str(src), str(tmp_path / "out")]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["convert", "drive", str(src), str(src / "converted")]) == 1  # never inside the source
    assert "inside the input folder" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["convert", "check", "synth"])
def test_help_has_example(command, capsys):
    assert main([command, "--help"]) == 0
    assert f"Example: medseg {command}" in capsys.readouterr().out


@pytest.mark.data
def test_drive_convert_and_check(shared_data, tmp_path, capsys):
    from medseg.datasets import load_dataset

    dst = tmp_path / "drive"
    assert main(["convert", "drive", str(shared_data / "DRIVE"), str(dst)]) == 0
    assert main(["check", str(dst)]) == 0
    ds = load_dataset(dst)
    assert len(ds.cases) == 20 and len(ds.test_cases) == 20
    assert all(c.roi_path is not None and c.label_path is not None for c in ds.cases + ds.test_cases)
    label = ds.case("drive_01").read_label()
    assert label.array.shape == (1, 584, 565) and set(np.unique(label.array)) == {0, 1}
    assert "20 training, 20 test, 40 with ROI" in capsys.readouterr().out


@pytest.mark.data
@pytest.mark.parametrize("name,cases", [("ACDC", 160), ("LA", 10)])
def test_check_real_nnunet_datasets(shared_data, capsys, name, cases):
    start = time.perf_counter()
    assert main(["check", str(shared_data / name)]) == 0
    elapsed = time.perf_counter() - start
    out = capsys.readouterr().out
    assert f"{cases} training" in out and "OK" in out
    print(f"check {name}: {elapsed:.1f} s")
