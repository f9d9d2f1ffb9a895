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
