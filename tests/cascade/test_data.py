"""The cascade's measurements and classifier on one DukeDME patient (11 OCT B-scans, fluid labels)."""

import numpy as np
import pytest

from medseg.cascade import fit_classifier, segmentation_features
from medseg.errors import MedsegError
from medseg.io import read_image


@pytest.mark.data
def test_dukedme_patient_fluid_measurements(shared_data):
    root = shared_data / "DukeDME"
    if not root.is_dir():
        pytest.skip("DukeDME not found")
    labels = {"background": 0, "fluid": 1}
    rows, y = [], []
    for path in sorted((root / "labelsTr").glob("subject01_*.png")):
        image = read_image(path)
        label_map = np.asarray(image.array[0])
        f = segmentation_features(label_map, labels, spacing=image.spacing)
        pixels = int((label_map == 1).sum())
        assert f["fluid_area"] == pytest.approx(pixels * np.prod(image.spacing))
        assert (f["fluid_components"] > 0) == (pixels > 0)
        if pixels:
            assert 0 < f["fluid_centroid_0"] < 1 and f["fluid_largest_area"] <= f["fluid_area"]
        rows.append(list(f.values()))
        y.append(int(pixels > 0))
    assert len(rows) == 11 and sum(y) == 9  # the patient has 9 B-scans with fluid, 2 without
    # two B-scans of a class are too few to cross-validate and calibrate: a clear refusal
    with pytest.raises(MedsegError, match="'no_fluid' has 2 case"):
        fit_classifier(np.array(rows), np.array(y), seed=0, class_names=("no_fluid", "fluid"))
    # with a third "no fluid" B-scan (the first one's label emptied) the classes separate
    X = np.array(rows + [[0.0] * len(rows[0])])
    fit = fit_classifier(X, np.array(y + [0]), seed=0, class_names=("no_fluid", "fluid"))
    assert fit.scores[fit.name]["auc"] > 0.9


@pytest.mark.data
def test_dukedme_patient_through_the_cascade(shared_data, tmp_path, capsys, one_thread):
    """One DukeDME patient (subject01) through `medseg predict CASCADE`: a classifier fitted on the reference
    tissue maps of the other five patients, bound to a (tiny, barely trained) segmentation model; every
    B-scan gets a label map at 496 × 768, a fluid probability, the decision at the recorded threshold and the
    fluid area behind it. The classifier alone, on subject01's reference tissue maps, finds the fluid."""
    import csv
    import shutil

    from medseg.cascade import CascadeModel, fit_and_save
    from medseg.cli import main
    from medseg.datasets.dataset import write_dataset_json

    root = shared_data / "DukeDME"
    if not root.is_dir():
        pytest.skip("DukeDME not found")
    labels = {"background": 0, "fluid": 1}
    table, classes = {}, {}
    for path in sorted((root / "labelsTr").glob("*.png")):
        name = path.name[: -len(".png")]
        image = read_image(path)
        table[name] = segmentation_features(np.asarray(image.array[0]), labels, spacing=image.spacing)
        classes[name] = "fluid" if (np.asarray(image.array[0]) == 1).any() else "no_fluid"
    patient = sorted(n for n in table if n.startswith("subject01_"))
    others = {n: v for n, v in table.items() if n not in patient}
    seg_data = tmp_path / "seg_data"  # two B-scans of another patient: the segmentation model's training set
    for name in ("subject02_scan01", "subject02_scan06"):
        for sub, suffix in (("imagesTr", "_0000.png"), ("labelsTr", ".png")):
            (seg_data / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / sub / f"{name}{suffix}", seg_data / sub / f"{name}{suffix}")
    write_dataset_json(seg_data, name="dme", channel_names=["OCT"], labels=labels, file_ending=".png", num_training=2)
    seg, cls, out = tmp_path / "seg", tmp_path / "cls", tmp_path / "out"
    assert main(["train", str(seg_data), "--out", str(seg), "--iterations", "2", "--patch-size", "64", "--batch-size",
                 "2", "--features", "4", "--depth", "2", "--fold", "all", "--threads", "1", "--no-progress"]) == 0
    fit_and_save(cls, seg, labels, others, {n: classes[n] for n in others}, positive="fluid")
    cascade = CascadeModel.load(cls)
    decided = [cascade.classify(table[n])[1] for n in patient]  # reference tissue maps of the held-out patient
    assert np.mean([d == classes[n] for d, n in zip(decided, patient)]) >= 9 / 11
    images = tmp_path / "subject01"
    images.mkdir()
    for name in patient:
        shutil.copy2(root / "imagesTr" / f"{name}_0000.png", images / f"{name}_0000.png")
    assert main(["predict", str(cls), "-i", str(images), "-o", str(out), "--threads", "1"]) == 0
    with open(out / "classification.csv", newline="") as fh:
        rows = {r["case"]: r for r in csv.DictReader(fh)}
    assert sorted(rows) == patient
    for name, row in rows.items():
        label_map = read_image(out / f"{name}.png")
        assert label_map.spatial_shape == (496, 768)
        assert float(row["fluid_area"]) == pytest.approx((np.asarray(label_map.array[0]) == 1).sum(), rel=1e-5)
        p, threshold = float(row["probability_fluid"]), float(row["threshold"])
        assert row["decision"] == ("fluid" if p >= threshold else "no_fluid") and 0 <= p <= 1
    with open(out / "patients.csv", newline="") as fh:  # the 11 B-scans are one patient: one decision
        (row,) = csv.DictReader(fh)
    fluid = sum(r["decision"] == "fluid" for r in rows.values())
    assert (row["patient"], row["cases"], row["fluid_cases"]) == ("subject01", "11", str(fluid))
    assert row["decision"] == ("fluid" if fluid else "no_fluid")
