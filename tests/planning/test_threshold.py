"""Decision threshold: the exact search equals brute force, the predictor applies a recorded threshold in
every label path, and `medseg threshold` writes it into the model folder."""

from dataclasses import replace

import numpy as np
import pytest

from medseg.cli import main
from medseg.errors import MedsegError
from medseg.image import Image
from medseg.inference.predictor import Predictor, labels_from_probabilities
from medseg.planning.threshold import best_threshold, score_at
from medseg.model_folder import load_config, save_config
from tests.inference.test_predictor import make_model_folder

pytestmark = pytest.mark.usefixtures("one_thread")


def _cases(rng, n=3, shape=(20, 30)):
    probabilities = [np.round(rng.random(shape), 2) for _ in range(n)]  # rounding makes ties
    references = [(p + rng.normal(0, 0.3, shape)) > 0.7 for p in probabilities]
    rois = [rng.random(shape) > 0.2 for _ in range(n)]
    return probabilities, references, rois


@pytest.mark.parametrize("metric", ["accuracy", "f1"])
def test_best_threshold_equals_brute_force(rng, metric):
    probabilities, references, rois = _cases(rng)
    chosen, score = best_threshold(probabilities, references, rois, metric=metric)
    candidates = np.unique(np.concatenate([p[r] for p, r in zip(probabilities, rois)]))
    brute = max(score_at(probabilities, references, t, rois, metric=metric) for t in candidates)
    assert score == pytest.approx(brute)
    assert score_at(probabilities, references, chosen, rois, metric=metric) == pytest.approx(score)
    # the ROI matters: scoring every pixel gives another optimum score
    assert best_threshold(probabilities, references, metric=metric)[1] != pytest.approx(score)


def test_accuracy_threshold_moves_above_half_for_an_overconfident_map():
    truth = np.zeros(1000, bool)
    truth[:100] = True
    p = np.where(truth, 0.9, 0.1)
    p[100:200] = 0.6  # false positives at the argmax threshold
    chosen, score = best_threshold([p], [truth])
    assert 0.6 < chosen < 0.9 and score == 1.0
    assert score_at([p], [truth], 0.5) == pytest.approx(0.9)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(MedsegError, match="metric"):
        best_threshold([np.zeros(3)], [np.zeros(3)], metric="dice")
    with pytest.raises(MedsegError, match="shape"):
        best_threshold([np.zeros(3)], [np.zeros(4)])
    with pytest.raises(MedsegError, match="no pixels"):
        best_threshold([np.zeros(3)], [np.zeros(3)], [np.zeros(3)])


def test_predictor_applies_the_recorded_threshold(tmp_path, rng):
    folder = make_model_folder(tmp_path / "m", preprocessing=[{"name": "zscore"}])
    image = Image(rng.normal(size=(1, 33, 41)).astype(np.float32))
    argmax_labels, probabilities = Predictor.from_folder(folder, backend="torch").predict_with_probabilities(image)
    foreground = probabilities.array[1]
    threshold = float(np.quantile(foreground, 0.7))
    save_config(folder, replace(load_config(folder), decision_threshold=threshold))
    predictor = Predictor.from_folder(folder, backend="torch")
    expected = (foreground >= threshold).astype(np.uint8)
    assert not np.array_equal(expected, argmax_labels.array[0])  # the threshold changes the labels
    # labels-only sliding window, and labels next to probabilities
    np.testing.assert_array_equal(predictor.predict(image).array[0], expected)
    np.testing.assert_array_equal(predictor.predict_with_probabilities(image)[0].array[0], expected)
    np.testing.assert_array_equal(labels_from_probabilities(probabilities.array, load_config(folder)), expected)


def test_threshold_is_for_binary_models_only(tmp_path):
    folder = make_model_folder(tmp_path / "m", num_classes=3, label_values=(0, 1, 2))
    with pytest.raises(MedsegError, match="binary"):
        replace(load_config(folder), decision_threshold=0.6)
    with pytest.raises(MedsegError, match=r"\(0, 1\)"):
        replace(load_config(make_model_folder(tmp_path / "b")), decision_threshold=1.5)


def test_threshold_cli_writes_the_choice(tmp_path, capsys):
    from medseg.datasets.synthetic import make_vessels2d

    data = make_vessels2d(tmp_path / "data", cases=2, seed=0, size=48)
    folder = make_model_folder(tmp_path / "m", in_channels=1, input_channels=3,
                               preprocessing=[{"name": "green_channel"}, {"name": "zscore"}])
    assert main(["threshold", str(folder), str(data), "--cases", "case_000", "--dry-run"]) == 0
    assert load_config(folder).decision_threshold is None
    assert "fewer than 3 is noise" in " ".join(capsys.readouterr().err.split())
    assert main(["threshold", str(folder), str(data), "--cases", "case_000,case_001", "--metric", "f1"]) == 0
    assert 0 < load_config(folder).decision_threshold < 1
    assert main(["threshold", str(folder), str(data), "--cases", "nope"]) == 1
    assert "nope" in capsys.readouterr().err
    # a model that keeps the largest component is thresholded as it outputs: on that component, on the grid
    save_config(folder, replace(load_config(folder), postprocessing=[{"step": "largest", "label": 1}]))
    assert main(["threshold", str(folder), str(data), "--cases", "case_000,case_001", "--metric", "f1"]) == 0
    assert "largest component" in " ".join(capsys.readouterr().err.split())
    assert load_config(folder).decision_threshold == pytest.approx(round(load_config(folder).decision_threshold, 2))


def test_threshold_and_predict_take_the_tta_axes(tmp_path, capsys):
    from medseg.datasets.synthetic import make_vessels2d

    data = make_vessels2d(tmp_path / "data", cases=1, seed=0, size=32)
    folder = make_model_folder(tmp_path / "m", in_channels=1, input_channels=3,
                               preprocessing=[{"name": "green_channel"}, {"name": "zscore"}])
    assert main(["threshold", str(folder), str(data), "--cases", "case_000", "--tta-axes", "1"]) == 0
    assert 0 < load_config(folder).decision_threshold < 1
    image = str(next((data / "imagesTr").iterdir()))
    assert main(["predict", str(folder), "-i", image, "-o", str(tmp_path / "p"), "--tta-axes", "0,1"]) == 0
    assert main(["predict", str(folder), "-i", image, "-o", str(tmp_path / "q"), "--tta-axes", "left"]) == 1
    assert "--tta-axes" in capsys.readouterr().err and not (tmp_path / "q").exists()
