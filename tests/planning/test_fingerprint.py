import numpy as np
import pytest

from medseg.datasets import load_dataset, make_organs3d, write_dataset_json
from medseg.errors import DatasetError, GeometryError
from medseg.image import Image
from medseg.io import write_image
from medseg.planning import compute_fingerprint


def write_case(root, name, image, label):
    for c in range(image.num_channels):
        write_image(image.channel(c), root / "imagesTr" / f"{name}_{c:04d}.nii.gz")
    write_image(label, root / "labelsTr" / f"{name}.nii.gz")


def small_dataset(root, cases, channels=("MR",)):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir(parents=True)
    for name, image, label in cases:
        write_case(root, name, image, label)
    write_dataset_json(root, name="small", channel_names=list(channels), labels={"background": 0, "a": 1, "b": 2},
                       file_ending=".nii.gz", num_training=len(cases))
    return load_dataset(root)


def blob_case(rng, shape=(6, 20, 24), spacing=(3.0, 1.0, 0.5), direction=None):
    lab = np.zeros(shape, np.uint8)
    lab[2:4, 5:12, 6:14] = 1
    lab[1:3, 14:18, 15:20] = 2
    img = (rng.normal(100, 10, shape) + 50 * lab).astype(np.float32)
    kw = dict(spacing=spacing, origin=(5.0, -3.0, 2.0), direction=direction if direction is not None else np.eye(3))
    return Image(img[None], **kw), Image(lab[None], **kw)


def test_fingerprint_of_synthetic_dataset(tmp_path, rng):
    cases = []
    for i in range(3):
        image, label = blob_case(rng)
        cases.append((f"c{i}", image, label))
    ds = small_dataset(tmp_path / "ds", cases)
    fp = compute_fingerprint(ds, samples_per_case=100_000)
    s = fp["summary"]
    assert fp["num_cases"] == 3 and s["spatial_dims"] == 3
    assert s["median_shape"] == [6, 20, 24] and s["median_spacing"] == [3.0, 1.0, 0.5]
    assert s["anisotropy"] == pytest.approx(6.0)
    case = fp["cases"][0]
    assert case["orientation"] and len(case["orientation"]) == 3
    # label volumes in voxels and mm³ (voxel = 1.5 mm³), components
    assert case["labels"]["1"] == {"voxels": 2 * 7 * 8, "mm3": 2 * 7 * 8 * 1.5, "components": 1}
    assert case["labels"]["2"]["voxels"] == 2 * 4 * 5
    # intensity statistics inside the foreground equal the direct computation (all voxels sampled)
    fg = np.concatenate([c[1].array[0][c[2].array[0] > 0] for c in cases]).astype(np.float64)
    st = s["intensity"][0]
    assert st["mean"] == pytest.approx(fg.mean(), rel=1e-5)
    assert st["std"] == pytest.approx(fg.std(), rel=1e-4)
    assert st["percentile_99_5"] == pytest.approx(np.percentile(fg, 99.5), rel=1e-5)
    assert st["min"] == pytest.approx(fg.min()) and st["max"] == pytest.approx(fg.max())
    assert s["labels"]["1"]["cases_present"] == 3
    # how thin the structures are, pooled over cases by foreground voxels (each case has the same labels)
    assert s["boundary_share"] == pytest.approx(case["boundary_share"]) and 0 < s["boundary_share"] <= 1
    # both labels are prisms two slices deep across the thick axis: they continue unchanged to the next slice
    assert case["slice_continuity"] == s["slice_continuity"] == 1.0
    import json

    json.dumps(fp)  # JSON-serialisable


def test_sampling_is_bounded_and_deterministic(tmp_path):
    ds = load_dataset(make_organs3d(tmp_path / "o", cases=2, shape=(8, 24, 24)))
    a = compute_fingerprint(ds, samples_per_case=50, workers=2)
    b = compute_fingerprint(ds, samples_per_case=50)
    assert a["summary"]["intensity"] == b["summary"]["intensity"]
    assert a["cases"][0]["foreground_voxels"] > 50


def test_image_label_geometry_mismatch_is_named(tmp_path, rng):
    image, label = blob_case(rng)
    label = Image(label.array, spacing=(3.0, 1.0, 1.0), origin=label.origin)
    ds = small_dataset(tmp_path / "ds", [("bad", image, label)])
    with pytest.raises(GeometryError, match="case 'bad'.*spacing"):
        compute_fingerprint(ds)


def test_extra_channel_is_named(tmp_path, rng):
    image, label = blob_case(rng)
    two = Image(np.concatenate([image.array, image.array]), spacing=image.spacing, origin=image.origin)
    ds = small_dataset(tmp_path / "ds", [("ok", image, label)])
    # a case with an extra channel file the dataset does not declare
    write_image(two.channel(1), tmp_path / "ds" / "imagesTr" / "ok_0001.nii.gz")
    try:
        ds = load_dataset(tmp_path / "ds")
    except DatasetError:
        return  # the loader already refuses it: fine
    with pytest.raises(DatasetError, match="channel"):
        compute_fingerprint(ds)


def test_empty_label_is_a_warning_not_a_crash(tmp_path, rng):
    image, label = blob_case(rng)
    empty = label.with_array(np.zeros_like(label.array))
    ds = small_dataset(tmp_path / "ds", [("full", image, label), ("empty", image, empty)])
    fp = compute_fingerprint(ds)
    assert fp["summary"]["empty_label_cases"] == ["empty"]
    # the empty case has no structure to measure: the pooled share is the labelled case's
    share = {c["name"]: c["boundary_share"] for c in fp["cases"]}
    assert share["empty"] is None and fp["summary"]["boundary_share"] == share["full"] > 0
    assert any("empty" in w for w in fp["warnings"])
