"""Volumes whose spacing was lost (every stack stored at exactly 1 mm, matrices of different sizes): the
field-extent rule reports it; ``--field-extent auto`` brings each scan's in-plane side to the training median,
the model records it, and the predictor returns labels on the input's own grid."""

import json

import numpy as np
import pytest

from medseg.cli import main
from medseg.datasets.dataset import write_dataset_json
from medseg.image import Image
from medseg.io import read_image, write_image
from medseg.model_folder import load_config
from medseg.preprocessing.grid import GridLayout, to_network_grid

TRAIN = ["--iterations", "2", "--patch-size", "4,32,32", "--batch-size", "2", "--features", "4", "--depth", "2",
         "--threads", "1", "--no-progress", "--val-cases", "c3"]


def _scan(side: int, slices: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A gland covering the same share of the image at any matrix size (what a scanner's field of view does)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    gland = ((yy - side / 2) ** 2 + (xx - side / 2) ** 2) < (0.2 * side) ** 2
    label = np.repeat(gland[None], slices, 0).astype(np.uint8)
    image = (100 + 80 * label + rng.normal(0, 10, label.shape)).astype(np.float32)
    return image, label


@pytest.fixture(scope="module")
def lost_spacing(tmp_path_factory):
    root = tmp_path_factory.mktemp("lost_spacing") / "prostates"
    for i, side in enumerate((32, 48, 64, 64)):
        image, label = _scan(side, seed=i)
        write_image(Image(image[None], spacing=(1.0, 1.0, 1.0)), root / "imagesTr" / f"c{i}_0000.nii.gz")
        write_image(Image(label[None], spacing=(1.0, 1.0, 1.0)), root / "labelsTr" / f"c{i}.nii.gz")
    write_dataset_json(root, name="prostates", channel_names={"0": "T2"}, labels={"background": 0, "gland": 1},
                       file_ending=".nii.gz", num_training=4)
    return root


def test_each_scan_is_brought_to_the_side_and_back():
    image = Image(np.random.default_rng(0).normal(size=(1, 5, 40, 30)).astype(np.float32), spacing=(1.0, 1.0, 1.0))
    layout = GridLayout(({"name": "zscore"},), (1.0, 1.0, 1.0), field_extent={"side": 80.0, "axes": [1, 2]})
    case = to_network_grid(image, layout)
    assert case.image.spatial_shape == (5, 80, 60)  # the larger side to 80, the aspect kept, the stack as it is
    assert case.probabilities_to_input(np.ones((2, 5, 80, 60), np.float32)).shape == (2, 5, 40, 30)
    # the model's unit, not the input's recorded spacing: a scan with real spacing is taken in voxels too
    spaced = Image(image.array, spacing=(3.0, 0.5, 0.5))
    assert to_network_grid(spaced, layout).image.spatial_shape == (5, 80, 60)
    # --fast: the coarser grid of the same extent
    assert to_network_grid(image, layout, spacing=(1.0, 2.0, 2.0)).image.spatial_shape == (5, 40, 30)


def test_outliers_rescales_only_the_matrices_far_from_the_side():
    layout = GridLayout(({"name": "zscore"},), (1.0, 1.0, 1.0),
                        field_extent={"side": 160.0, "axes": [1, 2], "outlier_ratio": 1.5})
    for side, expected in ((128, 128), (192, 192), (240, 160), (256, 160), (96, 160)):
        image = Image(np.zeros((1, 3, side, side), np.float32), spacing=(1.0, 1.0, 1.0))
        case = to_network_grid(image, layout)
        assert case.image.spatial_shape == (3, expected, expected), side
        assert case.probabilities_to_input(np.ones((2, 3, expected, expected), np.float32)).shape == (2, 3, side, side)


def test_lost_spacing_is_reported_and_auto_records_the_median_side(lost_spacing, tmp_path, capsys):
    default = tmp_path / "default"
    assert main(["train", str(lost_spacing), "--out", str(default), *TRAIN]) == 0
    # training sides 32, 48, 64: the 32 is 1.5× from the median, so the 3D network predicts such scans at 48
    assert load_config(default).field_extent == {"side": 48.0, "axes": [1, 2], "outlier_ratio": 1.5,
                                                 "prediction_only": True}
    rules = json.loads((default / "rules.json").read_text(encoding="utf-8"))
    rule = next(r for r in rules if r["name"] == "field_extent")
    assert rule["inputs"]["side_range"] == [32, 64] and rule["inputs"]["outlying_scans"] == 1
    assert "spacing was lost" in rule["reason"] and "at prediction" in " ".join(capsys.readouterr().err.split())
    off = tmp_path / "off"
    assert main(["train", str(lost_spacing), "--out", str(off), "--field-extent", "none", *TRAIN]) == 0
    assert load_config(off).field_extent is None

    model = tmp_path / "model"
    assert main(["train", str(lost_spacing), "--out", str(model), "--field-extent", "auto", *TRAIN]) == 0
    assert load_config(model).field_extent == {"side": 48.0, "axes": [1, 2]}  # median of the 3 training sides
    image, _ = _scan(96, seed=9)
    write_image(Image(image[None], spacing=(1.0, 1.0, 1.0)), tmp_path / "new_0000.nii.gz")
    assert main(["predict", str(model), "-i", str(tmp_path / "new_0000.nii.gz"), "-o", str(tmp_path / "pred"),
                 "--threads", "1"]) == 0
    assert read_image(tmp_path / "pred" / "new.nii.gz").spatial_shape == (6, 96, 96)
    # the same placeholder spacing as in training: sizes in voxels without --spacing-unknown
    assert "voxels" in (tmp_path / "pred" / "volumes.csv").read_text(encoding="utf-8")


def test_real_spacing_and_one_matrix_size_are_left_alone(tmp_path):
    from medseg.planning.device_rules import rule_field_extent

    stacks = [(20, 128, 128), (30, 256, 256), (24, 160, 160)]
    lost = rule_field_extent(None, stacks, [(1.0, 1.0, 1.0)] * 3)  # 256 is 1.6× the median side
    assert lost.value == {"side": 160.0, "axes": [1, 2], "outlier_ratio": 1.5, "prediction_only": True}
    assert lost.inputs["side_range"] == [128, 256] and lost.inputs["outlying_scans"] == 1
    in_2d = rule_field_extent(None, stacks, [(1.0, 1.0, 1.0)] * 3, network_dims=2)
    assert in_2d.value is None and "2D network" in in_2d.reason
    near = rule_field_extent(None, stacks[:1] + [(24, 192, 192), stacks[2]], [(1.0, 1.0, 1.0)] * 3)
    assert near.value is None and near.inputs["outlying_scans"] == 0 and "auto" in near.reason
    assert rule_field_extent("auto", stacks, [(1.0, 1.0, 1.0)] * 3).value == {"side": 160.0, "axes": [1, 2]}
    assert rule_field_extent(None, stacks, [(3.0, 0.6, 0.6)] * 3).value is None      # spacing recorded
    assert rule_field_extent(None, [(155, 240, 240)] * 2 + [(150, 200, 200)],
                             [(1.0, 1.0, 1.0)] * 3).value is None                    # 1 mm in 3D: real (BraTS)
    assert rule_field_extent(None, [(20, 128, 128)] * 3, [(1.0, 1.0, 1.0)] * 3).value is None  # one matrix
    assert rule_field_extent(None, [(128, 128)] * 2, [(1.0, 1.0)] * 2).value is None  # 2D
    user = rule_field_extent("none", stacks, [(1.0, 1.0, 1.0)] * 3)
    assert user.value is None and user.overridden_by_user
    assert rule_field_extent(200.0, stacks, [(3.0, 0.6, 0.6)] * 3).value == {"side": 200.0, "axes": [1, 2]}
    outliers = rule_field_extent("outliers", stacks, [(1.0, 1.0, 1.0)] * 3)
    assert outliers.value == {"side": 160.0, "axes": [1, 2], "outlier_ratio": 1.5} and outliers.overridden_by_user


def test_a_prediction_only_extent_leaves_the_training_cases_as_stored(lost_spacing):
    from types import SimpleNamespace

    from medseg.datasets import load_dataset
    from medseg.training.config import TrainingConfig
    from medseg.training.data import LabelMapping
    from medseg.training.loop import _prepare_cases

    extent = {"side": 48.0, "axes": [1, 2], "outlier_ratio": 1.5}
    layout = SimpleNamespace(preprocessing=[{"name": "zscore"}], target_spacing=(1.0, 1.0, 1.0), crop_to_nonzero=False,
                             resampling=None, fov_diameter=None, field_extent=extent)
    dataset = load_dataset(lost_spacing)

    def shape(field_extent: dict) -> tuple[int, ...]:
        cases = _prepare_cases(dataset, ["c0"], SimpleNamespace(**{**vars(layout), "field_extent": field_extent}),
                               LabelMapping([0, 1], None), TrainingConfig(), None, set())
        return cases["c0"].image.shape[1:]

    assert shape(extent) == (6, 48, 48)  # the 32² scan brought to the median side in training
    assert shape({**extent, "prediction_only": True}) == (6, 32, 32)  # as stored


@pytest.mark.data
@pytest.mark.parametrize("name, sides", [("PROMISE12", [128, 256]), ("ACDC", [208, 512]), ("BraTS", None),
                                         ("LA", None)])
def test_the_rule_on_the_real_datasets(shared_data, name, sides):
    """PROMISE12 and ACDC lost their spacing (README of ../shared/data); BraTS is 1 mm for real, LA 0.625 mm."""
    from medseg.datasets import load_dataset
    from medseg.training.spec import field_extent_rule

    dataset = load_dataset(shared_data / name)
    names = [c.name for c in dataset.cases if c.label_path is not None]
    rule = field_extent_rule(dataset, None, names, 3)
    assert rule.inputs.get("side_range") == sides
    assert (rule.value is not None) == (sides is not None)  # both have matrices 1.5× from their median side
    assert field_extent_rule(dataset, None, names, 3, network_dims=2).value is None
