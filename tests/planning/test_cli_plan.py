import json

from medseg.cli import main
from medseg.datasets import load_dataset, make_organs3d
from medseg.planning import Plan


def test_plan_command_writes_plan_and_fingerprint(tmp_path, capsys):
    root = make_organs3d(tmp_path / "organs", cases=3, shape=(16, 32, 32), spacing=(3.0, 1.0, 1.0))
    out = tmp_path / "run" / "plan.json"
    code = main(["plan", str(root), "--out", str(out), "--time-budget", "10m", "--workers", "1"])
    assert code == 0
    plan = Plan.load(out)
    assert plan.training["time_limit"] == 600
    assert plan.num_classes == 4 and plan.data_dims == 3
    assert (out.parent / "fingerprint.json").is_file()
    printed = " ".join(capsys.readouterr().out.split())
    assert "Voxel size" in printed and "2D or 3D network" in printed and "chosen" in printed
    # in words a clinician-researcher reads: no rule identifiers, JSON lists or stride codes
    assert "target_spacing" not in printed and "[[" not in printed and "GFLOP" not in printed
    assert "2D network: it sees one image" in printed and "3D network: it sees a block" in printed
    assert not (root / "plan.json").exists()  # never writes into the dataset


def test_plan_command_can_force_config(tmp_path):
    root = make_organs3d(tmp_path / "organs", cases=2, shape=(16, 32, 32))
    out = tmp_path / "p.json"
    assert main(["plan", str(root), "--out", str(out), "--config", "3d", "--workers", "1"]) == 0
    assert Plan.load(out).configuration == "3d"
    assert main(["plan", str(root), "--out", str(out), "--config", "4d"]) == 1


def test_sparsify_and_splits_commands(tmp_path):
    root = make_organs3d(tmp_path / "organs", cases=5, shape=(10, 24, 24))
    dst = tmp_path / "sparse"
    assert main(["sparsify", str(root), str(dst), "--slices-per-volume", "2", "--seed", "3"]) == 0
    sparse = load_dataset(dst)
    assert sparse.ignore_label == 4
    assert main(["sparsify", str(root), str(dst)]) == 1  # exists: refused
    assert main(["splits", str(dst), "--folds", "5"]) == 0
    folds = json.loads((dst / "splits.json").read_text(encoding="utf-8"))
    assert len(folds) == 5
    assert main(["splits", str(dst), "--folds", "5"]) == 0  # existing file honoured, not replaced
    assert json.loads((dst / "splits.json").read_text(encoding="utf-8")) == folds
