"""The cascade end to end through the CLI on phantoms with / without a lesion (the right class is known):
train → train-classifier → predict → evaluate; and its bad inputs."""

import csv
import json

import numpy as np
import pytest

from medseg.cli import main
from medseg.datasets.dataset import write_dataset_json
from medseg.image import Image
from medseg.io import write_image

SIZE = 40


def phantom(rng, lesion: bool) -> tuple[np.ndarray, np.ndarray]:
    """A grey 'scan' (textured tissue) and its label map: a bright lesion disc, or none."""
    image = 60 + 20 * rng.random((SIZE, SIZE))
    label = np.zeros((SIZE, SIZE), np.uint8)
    if lesion:
        cy, cx = rng.integers(10, SIZE - 10, 2)
        r = rng.integers(4, 8)
        yy, xx = np.mgrid[:SIZE, :SIZE]
        label[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
        image[label == 1] = 200 + 20 * rng.random(int(label.sum()))
    return image.astype(np.uint8), label


@pytest.fixture(scope="module")
def lesions(tmp_path_factory):
    """8 patients x 2 scans for training (one with a lesion, one without) + 6 test scans."""
    root = tmp_path_factory.mktemp("cascade") / "lesions"
    rng = np.random.default_rng(0)
    classes = {}
    for folder, prefix, n in (("Tr", "p", 16), ("Ts", "q", 6)):
        for i in range(n):
            name = f"{prefix}{i // 2:02d}_scan{i % 2}"
            image, label = phantom(rng, lesion=i % 2 == 1)
            write_image(Image(image[None]), root / f"images{folder}" / f"{name}_0000.png")
            write_image(Image(label[None]), root / f"labels{folder}" / f"{name}.png")
            classes[name] = "lesion" if i % 2 else "healthy"
    write_dataset_json(root, name="lesions", channel_names=["scan"], labels={"background": 0, "lesion": 1},
                       file_ending=".png", num_training=16)
    return root, classes


def _write_classes(path, classes):
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([("case", "class"), *sorted(classes.items())])
    return path


def _train(data, out, iterations, seed=0):
    return main(["train", str(data), "--out", str(out), "--iterations", str(iterations), "--patch-size", "32",
                 "--batch-size", "4", "--features", "8", "--depth", "2", "--threads", "1", "--no-progress",
                 "--seed", str(seed), "--lr", "0.01"])


@pytest.mark.slow  # about 15 s on an idle 2-core machine (a 60-iteration U-Net, 22 predictions)
def test_cascade_end_to_end(lesions, tmp_path, capsys, one_thread):
    data, classes = lesions
    seg = tmp_path / "models" / "seg"
    assert _train(data, seg, 60) == 0
    train_classes = _write_classes(tmp_path / "classes.csv", {k: v for k, v in classes.items() if k.startswith("p")})
    cls = tmp_path / "models" / "cls"
    assert main(["train-classifier", str(seg), str(data), "--labels", str(train_classes), "--out", str(cls),
                 "--positive", "lesion", "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "classifier_choice" in err and "threshold" in err and "training cases" in err  # in-sample warning
    record = json.loads((cls / "cascade.json").read_text())
    assert record["segmentation_model"]["path"] == "../seg" and len(record["segmentation_model"]["sha256"]) == 64
    assert record["classes"] == ["healthy", "lesion"] and record["threshold"]["criterion"] == "sensitivity:0.95"
    assert set(record["classifier"]["cross_validation"]["scores"]) == {"size", "logistic", "gradient_boosting"}
    assert record["classifier"]["name"] == "size"  # a lesion or none: its area says it (refitted on load below)
    assert (cls / "features.csv").read_text().startswith("case,group,class,lesion_area")

    # the folder pair is relocatable (relative path)
    moved = tmp_path / "moved"
    (tmp_path / "models").rename(moved)
    seg, cls = moved / "seg", moved / "cls"
    out = tmp_path / "out"
    assert main(["predict", str(cls), "-i", str(data / "imagesTs"), "-o", str(out), "--report",
                 "--threads", "1"]) == 0
    with open(out / "classification.csv", newline="") as fh:
        rows = {r["case"]: r for r in csv.DictReader(fh)}
    assert len(rows) == 6 and {"probability_lesion", "threshold", "decision", "lesion_area"} <= set(rows["q00_scan0"])
    correct = [rows[c]["decision"] == classes[c] for c in rows]
    assert np.mean(correct) >= 5 / 6
    assert (out / "q00_scan1.png").is_file() and (out / "overlays" / "q00_scan1.png").is_file()
    assert json.loads((out / "classification.json").read_text())["cascade"]["positive_class"] == "lesion"

    test_classes = _write_classes(tmp_path / "test.csv", {k: v for k, v in classes.items() if k.startswith("q")})
    assert main(["evaluate", str(out), str(test_classes), "--out", str(tmp_path / "eval"), "--bootstrap", "200"]) == 0
    metrics = json.loads((tmp_path / "eval" / "classification_metrics.json").read_text())
    assert metrics["accuracy"] >= 5 / 6 and metrics["n"] == 6 and len(metrics["auc_ci"]) == 2

    # bad input: another segmentation model's tissue maps → one line, nothing written
    other = tmp_path / "other"
    assert _train(data, other, 2, seed=1) == 0
    capsys.readouterr()
    assert main(["predict-cascade", str(cls), "-i", str(data / "imagesTs"), "-o", str(tmp_path / "o2"),
                 "--segmentation-model", str(other)]) == 1
    err = capsys.readouterr().err
    assert "not the ones the classifier" in " ".join(err.split()) and str(other) in err.replace("\n", "")
    assert not (tmp_path / "o2").exists()
    # evaluation with a case that has no true class
    partial = _write_classes(tmp_path / "partial.csv", {"q00_scan0": "healthy"})
    assert main(["evaluate", str(out), str(partial), "--out", str(tmp_path / "e2")]) == 1
    assert "no true class" in " ".join(capsys.readouterr().err.split()) and not (tmp_path / "e2").exists()


def test_train_classifier_bad_labels(lesions, tmp_path, capsys, one_thread):
    data, classes = lesions
    seg = tmp_path / "seg"
    assert _train(data, seg, 1) == 0
    capsys.readouterr()
    # class labels for a case that does not exist
    bad = _write_classes(tmp_path / "bad.csv", {**classes, "nobody_scan0": "lesion"})
    assert main(["train-classifier", str(seg), str(data), "--labels", str(bad), "--out", str(tmp_path / "c1")]) == 1
    err = capsys.readouterr().err
    assert "nobody_scan0" in err and str(bad) in err.replace("\n", "") and not (tmp_path / "c1").exists()
    # a single class
    one = _write_classes(tmp_path / "one.csv", {k: "lesion" for k in classes if k.startswith("p")})
    assert main(["train-classifier", str(seg), str(data), "--labels", str(one), "--out", str(tmp_path / "c2")]) == 1
    assert "all 16 labelled cases are of class 'lesion'" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "c2").exists()
    # classes from dataset.json: a missing "classes" key is named
    assert main(["train-classifier", str(seg), str(data), "--out", str(tmp_path / "c3")]) == 1
    assert '"classes"' in capsys.readouterr().err and not (tmp_path / "c3").exists()


def test_cascade_folder_is_bound_to_its_segmentation_model(lesions, tmp_path, one_thread):
    from medseg.cascade import CascadeModel, fit_and_save
    from medseg.errors import MedsegError

    data, classes = lesions
    seg, other = tmp_path / "seg", tmp_path / "other"
    assert _train(data, seg, 1) == 0 and _train(data, other, 1, seed=1) == 0
    rng = np.random.default_rng(0)
    table = {c: {"lesion_area": float(rng.random() + (k == "lesion")), "lesion_components": float(k == "lesion")}
             for c, k in classes.items()}
    cls = tmp_path / "cls"
    fit_and_save(cls, seg, {"background": 0, "lesion": 1}, table, classes, positive="lesion")
    model = CascadeModel.load(cls)
    p, decision = model.classify({"lesion_area": 1.8, "lesion_components": 1.0})
    assert decision == "lesion" and p >= model.threshold
    with pytest.raises(MedsegError, match="not the ones the classifier"):
        CascadeModel.load(cls, other)
    # the same model fine-tuned to another device (its lineage names these weights): the classifier is re-used
    tuned = tmp_path / "tuned"
    assert main(["train", str(data), "--out", str(tuned), "--init-from", str(seg), "--iterations", "1", "--threads",
                 "1", "--no-progress"]) == 0
    assert CascadeModel.load(cls, tuned).predictor.models[0].folder == tuned
    out = tmp_path / "out_tuned"
    assert main(["predict", str(cls), str(tuned), "-i", str(data / "imagesTs" / "q00_scan1_0000.png"), "-o", str(out),
                 "--threads", "1"]) == 0
    assert (out / "classification.csv").is_file()
    # a retrained (changed) segmentation model in the recorded place is refused as well
    import shutil

    shutil.rmtree(seg)
    shutil.copytree(other, seg)
    with pytest.raises(MedsegError, match="sha256"):
        CascadeModel.load(cls)
    # a changed configuration (here: a decision threshold) changes the tissue maps: refused
    shutil.rmtree(seg)
    shutil.copytree(other, seg)
    fit_and_save(cls, seg, {"background": 0, "lesion": 1}, table, classes, positive="lesion")
    config = json.loads((seg / "config.json").read_text())
    config["decision_threshold"] = 0.7
    (seg / "config.json").write_text(json.dumps(config))
    with pytest.raises(MedsegError, match="configuration"):
        CascadeModel.load(cls)
    # a tampered training table no longer reproduces the recorded classifier
    text = (cls / "features.csv").read_text().splitlines()
    text[1] = text[1].replace("lesion", "healthy") if ",lesion," in text[1] else text[1].replace("healthy", "lesion")
    (cls / "features.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(MedsegError, match="refitted"):
        from medseg.cascade.model import _refit, read_cascade

        _refit(cls, read_cascade(cls))


def test_ordinary_commands_predict_and_evaluate_a_cascade(lesions, tmp_path, capsys, one_thread):
    """`medseg predict CASCADE` writes label maps + classification.csv (probability, threshold, decision,
    measurements); `medseg evaluate OUT classes.csv` scores it; `medseg evaluate OUT GT --classes` does both;
    the older commands are aliases giving the same table."""
    from medseg.cascade import fit_and_save

    data, classes = lesions
    seg = tmp_path / "seg"
    assert _train(data, seg, 1) == 0
    rng = np.random.default_rng(0)
    from medseg.cascade import feature_names

    names = feature_names({"background": 0, "lesion": 1}, 2, True)
    table = {c: {f: float(rng.random() + (k == "lesion")) for f in names} for c, k in classes.items()
             if c.startswith("p")}
    cls = tmp_path / "cls"
    fit_and_save(cls, seg, {"background": 0, "lesion": 1}, table, {c: classes[c] for c in table}, positive="lesion")
    out, alias = tmp_path / "out", tmp_path / "alias"
    assert main(["predict", str(cls), "-i", str(data / "imagesTs"), "-o", str(out), "--threads", "1"]) == 0
    assert "cascade: lesion where P(lesion) >=" in " ".join(capsys.readouterr().err.split())
    with open(out / "classification.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and {"probability_lesion", "threshold", "decision", "lesion_area"} <= set(rows[0])
    assert all(r["decision"] == ("lesion" if float(r["probability_lesion"]) >= float(r["threshold"]) else "healthy")
               for r in rows)
    assert (out / "q00_scan0.png").is_file()
    with open(out / "patients.csv", newline="") as fh:  # q00..q02, two scans each: one decision per patient
        patients = {r["patient"]: r for r in csv.DictReader(fh)}
    assert sorted(patients) == ["q00", "q01", "q02"]
    for patient, row in patients.items():
        mine = [r for r in rows if r["case"].startswith(patient + "_")]
        hits = sum(r["decision"] == "lesion" for r in mine)
        assert (row["cases"], row["lesion_cases"]) == ("2", str(hits))
        assert row["decision"] == ("lesion" if hits else "healthy")
        assert float(row["total_lesion_area"]) == pytest.approx(sum(float(r["lesion_area"]) for r in mine), abs=1e-5)
    assert "patient" in json.loads((out / "classification.json").read_text())["patient_decision"]
    assert main(["predict-cascade", str(cls), "-i", str(data / "imagesTs"), "-o", str(alias), "--threads", "1"]) == 0
    with open(alias / "classification.csv", newline="") as fh:  # eager PyTorch there, ONNX Runtime here
        same = list(csv.DictReader(fh))
    assert [r["decision"] for r in same] == [r["decision"] for r in rows]
    assert np.allclose([float(r["probability_lesion"]) for r in same], [float(r["probability_lesion"]) for r in rows],
                       atol=1e-4)
    test_classes = _write_classes(tmp_path / "test.csv", {k: v for k, v in classes.items() if k.startswith("q")})
    assert main(["evaluate", str(out), str(test_classes), "--out", str(tmp_path / "eval"), "--bootstrap", "50"]) == 0
    metrics = json.loads((tmp_path / "eval" / "classification_metrics.json").read_text())
    assert metrics["n"] == 6 and {"auc", "ece", "sensitivity", "specificity", "confusion_matrix"} <= set(metrics)
    both = tmp_path / "both"
    assert main(["evaluate", str(out), str(data / "labelsTs"), "--classes", str(test_classes), "--out", str(both),
                 "--bootstrap", "50"]) == 0
    assert (both / "classification_metrics.json").is_file() and (both / "summary.json").is_file()
    # an unfindable input: one line naming the file, nothing written
    write_image(Image(np.zeros((1, 8, 8, 8), np.uint8)), tmp_path / "bad" / "vol.nii.gz")
    capsys.readouterr()
    assert main(["predict", str(cls), "-i", str(tmp_path / "bad"), "-o", str(tmp_path / "o3")]) == 1
    assert "vol.nii.gz" in capsys.readouterr().err.replace("\n", "") and not (tmp_path / "o3").exists()


def test_classes_from_labels_and_out_of_fold_tissue_maps(lesions, tmp_path, capsys, one_thread):
    """`--present lesion` reads each training case's class off its reference label map; `--out-of-fold`
    measures every case on a fold model that did not train on it (no in-sample warning); a case every fold
    trained on is an error before anything is written."""
    data, classes = lesions
    patients = sorted({c.split("_")[0] for c in classes if c.startswith("p")})
    halves = [patients[:4], patients[4:]]
    folds = []
    for k, held in enumerate(halves):
        val = ",".join(c for c in classes if c.split("_")[0] in held)
        folds.append(tmp_path / f"fold{k}")
        assert main(["train", str(data), "--out", str(folds[-1]), "--iterations", "1", "--patch-size", "32",
                     "--batch-size", "4", "--features", "8", "--depth", "2", "--threads", "1", "--no-progress",
                     "--val-cases", val]) == 0
    seg = tmp_path / "seg"
    assert _train(data, seg, 1) == 0
    capsys.readouterr()
    cls = tmp_path / "cls"
    assert main(["train-classifier", str(seg), str(data), "--present", "lesion", "--out-of-fold", str(folds[0]),
                 "--out-of-fold", str(folds[1]), "--out", str(cls), "--threads", "1"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "tissue_maps: out of fold (2 models)" in err and "training cases" not in err
    record = json.loads((cls / "cascade.json").read_text())
    assert record["classes"] == ["no_lesion", "lesion"]  # (negative, positive): --present's label is positive
    positive_rule = next(r for r in record["rules_fired"] if r["rule"] == "positive_class")
    assert "--present lesion" in positive_rule["reason"]
    with open(cls / "features.csv", newline="") as fh:
        table = {r["case"]: r["class"] for r in csv.DictReader(fh)}
    assert table == {c: ("lesion" if k == "lesion" else "no_lesion") for c, k in classes.items() if c.startswith("p")}
    # only one fold: the cases it trained on have no out-of-fold model
    assert main(["train-classifier", str(seg), str(data), "--present", "lesion", "--out-of-fold", str(folds[0]),
                 "--out", str(tmp_path / "c1")]) == 1
    assert "every out-of-fold model trained on 8 labelled case(s)" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "c1").exists()
    # a label the model does not have
    assert main(["train-classifier", str(seg), str(data), "--present", "fluid", "--out", str(tmp_path / "c2")]) == 1
    assert "--present fluid: not a label" in " ".join(capsys.readouterr().err.split())
