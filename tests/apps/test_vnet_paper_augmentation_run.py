"""`medseg train --net vnet` applies V-Net's paper augmentation by the recorded rule: rules.json says why,
config.json holds the resolved transforms (histogram matching and the B-spline first), and a short training
run with them completes."""

import json

from medseg.cli import main
from medseg.datasets.synthetic import make_tumour3d


def test_vnet_training_records_and_uses_its_paper_augmentation(tmp_path, one_thread, capsys):
    data = make_tumour3d(tmp_path / "t", cases=3, seed=0, shape=(16, 32, 32), brats_values=True)
    model = tmp_path / "m"
    assert main(["train", str(data), "--out", str(model), "--net", "vnet", "--features", "4", "--iterations", "2",
                 "--patch-size", "16,32,32", "--batch-size", "2", "--fold", "all", "--threads", "1",
                 "--no-progress"]) == 0
    assert "as the vnet paper trained: histogram matching between training cases" in capsys.readouterr().err
    rules = json.loads((model / "rules.json").read_text(encoding="utf-8"))
    rule = next(r for r in (rules if isinstance(rules, list) else rules["rules"]) if r["name"] == "augmentation")
    assert [t["name"] for t in rule["value"]["leading_transforms"]] == ["histogram_matching", "bspline"]
    assert "vnet paper's augmentation" in rule["reason"] and not rule["overridden_by_user"]
    loss = next(r for r in (rules if isinstance(rules, list) else rules["rules"]) if r["name"] == "loss")
    assert loss["value"] == "region" and "overlapping regions" in loss["reason"]  # BraTS values: regions
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    assert config["training"]["loss"] == "region"
    names = [t["name"] for t in config["augmentation"]["transforms"]]
    assert names[:2] == ["histogram_matching", "bspline"] and "affine" in names
    assert config["augmentation"]["transforms"][1]["max_displacement"] == [0.8, 1.6, 1.6]  # 5 % of the patch


def test_vnet_on_labels_trains_with_its_paper_dice_by_the_loss_rule(tmp_path, one_thread, capsys):
    from medseg.datasets.synthetic import make_organs3d

    data = make_organs3d(tmp_path / "o", cases=3, seed=0, shape=(16, 32, 32))
    model = tmp_path / "m"
    assert main(["train", str(data), "--out", str(model), "--net", "vnet", "--features", "4", "--iterations", "1",
                 "--patch-size", "16,32,32", "--batch-size", "2", "--fold", "all", "--threads", "1",
                 "--no-progress"]) == 0
    assert "the loss of the vnet paper" in capsys.readouterr().err
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    assert config["training"]["loss"] == "vnet_dice"
    # no validation cases (--fold all): the organs the training labels show in one piece keep their largest component
    one_piece = next(r for r in json.loads((model / "rules.json").read_text(encoding="utf-8"))
                     if r["name"] == "one_piece")["value"]
    assert one_piece and config["postprocessing"] == [{"step": "largest", "label": v} for v in one_piece]
    # ... and mirroring, the default, timed on a training case
    tta = next(r for r in json.loads((model / "rules.json").read_text(encoding="utf-8")) if r["name"] == "tta")
    assert config["tta_axes"] == tta["value"] == [0, 1, 2] and tta["inputs"]["plain_seconds_per_case"] > 0
    assert "a training case timed it" in tta["reason"]
