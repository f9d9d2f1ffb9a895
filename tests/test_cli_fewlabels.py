"""`medseg train --labeled`, `medseg pseudolabel` and `medseg suggest` from the command line, on a tiny model."""

from __future__ import annotations

import csv
import json

import pytest

from medseg.cli import main
from medseg.datasets import load_dataset, make_organs3d


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()  # --threads 1 below must not leak into later tests
    root = tmp_path_factory.mktemp("fl")
    data = make_organs3d(root / "organs", cases=4, seed=1, shape=(6, 24, 24), test_cases=2)
    model = root / "model"
    assert main(["train", str(data), "--out", str(model), "--iterations", "2", "--patch-size", "4,16,16",
                 "--batch-size", "2", "--features", "4", "--depth", "2", "--threads", "1", "--no-progress",
                 "--memory-format", "contiguous", "--labeled", "2", "--semi-supervised", "bcp",
                 "--ssl-option", "ema_decay=0.95", "--ssl-option", "unlabeled_batch_size=1"]) == 0
    yield data, model
    torch.set_num_threads(threads)


def test_train_records_semi_supervised_options(trained):
    _, model = trained
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    semi = config["training"]["semi_supervised"]
    assert semi["method"] == "bcp" and semi["ema_decay"] == 0.95 and semi["unlabeled_batch_size"] == 1
    assert len(semi["labeled"]) == 2 and len(semi["labeled"] + semi["unlabeled"] + config["val_cases"]) == 4


def test_unknown_ssl_option_is_one_line(trained, tmp_path, capsys):
    data, _ = trained
    assert main(["train", str(data), "--out", str(tmp_path / "m"), "--iterations", "1", "--labeled", "2",
                 "--ssl-option", "ema=0.9", "--no-progress"]) == 1
    assert "unknown semi-supervised setting(s): ema" in capsys.readouterr().err


# eager PyTorch: these tests check outputs and errors, not the backends (compiling a 3D network costs ~20 s)
EAGER = ["--backend", "torch"]


def test_pseudolabel_and_suggest_commands(trained, tmp_path, capsys, one_thread):
    data, model = trained
    out = tmp_path / "pseudo"
    assert main(["pseudolabel", str(model), *EAGER, "-i", str(data / "imagesTs"), "-o", str(out), "--voxel-threshold",
                 "0.2", "--no-tta", "--threads", "1"]) == 0
    assert load_dataset(out).ignore_label is not None
    assert main(["pseudolabel", str(model), *EAGER, "-i", str(data / "imagesTs"), "-o", str(out)]) == 1  # exists
    # replacing a folder that holds the inputs would destroy them
    assert main(["pseudolabel", str(model), *EAGER, "-i", str(data / "imagesTs"), "-o", str(data), "--overwrite"]) == 1
    assert (data / "imagesTs").is_dir()
    table = tmp_path / "suggest.csv"
    assert main(["suggest", str(model), *EAGER, "-i", str(data / "imagesTs"), "-n", "1", "-o", str(table),
                 "--threads", "1"]) == 0
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    assert len(rows) == 1 and rows[0]["rank"] == "1" and rows[0]["reason"]
    assert main(["suggest", str(model), *EAGER, "-i", str(data / "imagesTs"), "-n", "0"]) == 1
    capsys.readouterr()
    files = sorted(str(p) for p in (data / "imagesTs").iterdir())
    assert main(["suggest", str(model), *EAGER, "-i", *files, "-n", "2", "--threads", "1"]) == 0  # -i a b
    out = capsys.readouterr().out
    assert out.startswith("rank,case,score") and len(out.strip().splitlines()) == 3


def test_labelled_count_zero_is_one_line_and_no_output(trained, tmp_path, capsys):
    data, _ = trained
    out = tmp_path / "m"
    assert main(["train", str(data), "--out", str(out), "--iterations", "1", "--labeled", "0", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert "at least one labelled case" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_check_counts_unlabelled_cases(trained, tmp_path, capsys):
    import shutil

    data, _ = trained
    root = tmp_path / "partial"
    shutil.copytree(data, root)
    meta = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    meta["allow_unlabeled"] = True
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    (root / "labelsTr" / "case_001.nii.gz").unlink()
    capsys.readouterr()
    assert main(["check", str(root)]) == 0
    out = capsys.readouterr()
    assert "4 training (1 unlabelled)" in out.out + out.err
    for label in (root / "labelsTr").iterdir():  # nothing left to train from: a warning, not a problem
        label.unlink()
    assert main(["check", str(root)]) == 0
    out = capsys.readouterr()
    assert "no training case has a label" in out.out + out.err
