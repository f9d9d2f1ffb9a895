"""`medseg export-dicom-seg` and `medseg predict` on DICOM series (SEG by default), `--shard I/N` and
`--workers K`; bad input is one line naming the file, with nothing written."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.cli import main
from medseg.image import Image
from medseg.inference.sharding import parse_shard, shard_items
from medseg.io import read_image, write_image
from medseg.io.dicom_seg import read_dicom_seg
from medseg.io.dicom_series import write_dicom_series
from medseg.errors import MedsegError
from tests.inference.test_predictor import make_model_folder
from tests.io.test_dicom_seg import label_map_for, oblique_image


# eager PyTorch: these tests check outputs, splitting and errors, not the backends (compiling costs ~20 s)
PREDICT = ["predict", "--backend", "torch"]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" in err
    return " ".join(err[err.index("error:"):].split())  # rich wraps long lines at the terminal width


def test_export_dicom_seg(tmp_path, rng, capsys):
    grid = write_dicom_series(oblique_image(rng), tmp_path / "mr")
    source = read_image(grid.folder)
    label_map = label_map_for(source.spatial_shape)
    nifti = tmp_path / "labels.nii.gz"
    write_image(source.with_array(label_map[None]), nifti)
    out = tmp_path / "out" / "case.seg.dcm"
    assert main(["export-dicom-seg", str(nifti), str(grid.folder), "-o", str(out),
                 "--labels", "prostate=1,left_atrium=2,necrosis=4"]) == 0
    back = read_dicom_seg(out, grid.folder, labels={"prostate": 1, "left_atrium": 2, "necrosis": 4})
    assert np.array_equal(back.label_map.array[0], label_map)  # through NIfTI's float32 geometry too
    assert [s.type.meaning for s in back.segments] == ["Prostate", "Left atrium", "Necrosis"]

    capsys.readouterr()
    assert main(["export-dicom-seg", str(nifti), str(grid.folder), "-o", str(out)]) == 1
    assert "--overwrite" in _error_line(capsys)

    # a label map on another grid: one line naming the label file, nothing written
    other = tmp_path / "other.nii.gz"
    write_image(Image(label_map[None, :, :, :-1], source.spacing, source.origin, source.direction), other)
    assert main(["export-dicom-seg", str(other), str(grid.folder), "-o", str(tmp_path / "x.dcm")]) == 1
    line = _error_line(capsys)
    assert str(other) in line and "not on the grid" in line
    assert not (tmp_path / "x.dcm").exists()

    # a folder with two series, and a series with a missing slice
    second = write_dicom_series(oblique_image(rng), tmp_path / "second")
    for f in second.files[:2]:
        f.rename(grid.folder / f"b_{f.name}")
    assert main(["export-dicom-seg", str(nifti), str(grid.folder), "-o", str(tmp_path / "y.dcm")]) == 1
    line = _error_line(capsys)
    assert str(grid.folder) in line and "mixes 2 DICOM series" in line
    gap = write_dicom_series(oblique_image(rng), tmp_path / "gap")
    gap.files[4].unlink()
    assert main(["export-dicom-seg", str(nifti), str(gap.folder), "-o", str(tmp_path / "z.dcm")]) == 1
    line = _error_line(capsys)
    assert str(gap.files[5]) in line and "missing slice" in line
    assert not list(tmp_path.glob("*.dcm")) and not list(tmp_path.glob(".*.tmp*"))


def test_predict_dicom_series_writes_seg(tmp_path, rng, capsys):
    model = make_model_folder(tmp_path / "model", spatial_dims=3, num_classes=3, label_values=(0, 1, 2),
                              preprocessing=[{"name": "zscore"}])
    grid = write_dicom_series(oblique_image(rng, shape=(6, 16, 18)), tmp_path / "cases" / "patient1")
    pred = tmp_path / "pred"
    assert main([*PREDICT, str(model), "-i", str(grid.folder), "-o", str(pred), "--threads", "1"]) == 0
    seg = pred / "patient1.seg.dcm"
    assert seg.is_file() and (pred / "volumes.csv").is_file()
    image_pred = tmp_path / "image_pred"
    assert main([*PREDICT, str(model), "-i", str(grid.folder), "-o", str(image_pred), "--format", "image",
                 "--threads", "1"]) == 0
    nifti = read_image(image_pred / "patient1.nii.gz")
    back = read_dicom_seg(seg, grid.folder, labels={"l1": 1, "l2": 2})
    assert np.array_equal(back.label_map.array, nifti.array)  # the SEG equals the NIfTI prediction
    assert back.label_map.geometry_difference(nifti) is None
    assert [(s.name, s.type.meaning) for s in back.segments] == [("l1", "Tissue"), ("l2", "Tissue")]

    # a folder of series folders: one case per series
    root = tmp_path / "study"
    for name in ("t2", "adc"):
        write_dicom_series(oblique_image(rng, shape=(6, 16, 18)), root / name)
    assert main([*PREDICT, str(model), "-i", str(root), "-o", str(tmp_path / "study_pred"), "--threads", "1",
                 "--shard", "2/2"]) == 0
    assert sorted(p.name for p in (tmp_path / "study_pred").glob("*.dcm")) == ["t2.seg.dcm"]

    # the user's code file names the model's labels
    codes = tmp_path / "codes.json"
    codes.write_text('{"concepts": [{"names": ["l2"], "category": "anatomical structure", "type": '
                     '{"scheme": "SCT", "value": "41216001", "meaning": "Prostate"}}]}', encoding="utf-8")
    assert main([*PREDICT, str(model), "-i", str(grid.folder), "-o", str(pred), "--threads", "1",
                 "--codes", str(codes), "--overwrite"]) == 0
    assert [s.type.meaning for s in read_dicom_seg(seg, grid.folder).segments] == ["Tissue", "Prostate"]

    # a second series in a later case's folder: one line naming it, and no output at all
    capsys.readouterr()
    bad = write_dicom_series(oblique_image(rng, shape=(6, 16, 18)), tmp_path / "cases" / "patient2")
    other = write_dicom_series(oblique_image(rng, shape=(6, 16, 18)), tmp_path / "other")
    other.files[0].rename(bad.folder / "intruder.dcm")
    fresh = tmp_path / "fresh"
    assert main([*PREDICT, str(model), "-i", str(grid.folder), str(bad.folder), "-o", str(fresh)]) == 1
    line = _error_line(capsys)
    assert str(bad.folder) in line and "mixes 2 DICOM series" in line
    assert not fresh.exists()

    nii = tmp_path / "case.nii.gz"
    write_image(read_image(grid.folder), nii)
    assert main([*PREDICT, str(model), "-i", str(nii), "-o", str(tmp_path / "p2"), "--format", "dicom-seg"]) == 1
    assert "needs a DICOM series" in _error_line(capsys)
    assert not (tmp_path / "p2").exists()


def test_label_names_from_text_dataset_or_model(tmp_path):
    from medseg.cli.dicom import parse_labels

    assert parse_labels("prostate=1, tumour=4") == {"prostate": 1, "tumour": 4}
    (tmp_path / "dataset.json").write_text('{"labels": {"background": 0, "wt": [1, 2], "la": 1}}', encoding="utf-8")
    assert parse_labels(str(tmp_path / "dataset.json")) == {"background": 0, "la": 1}  # regions skipped
    model = make_model_folder(tmp_path / "model", label_values=(0, 1))
    assert parse_labels(str(model)) == {"background": 0, "l1": 1}
    with pytest.raises(MedsegError, match="name=value"):
        parse_labels("prostate")


def test_shards_partition_the_cases():
    names = [f"case_{i:03d}" for i in range(23)]
    shuffled = list(np.random.default_rng(1).permutation(names))
    for n in (1, 2, 5, 23, 30):
        shards = [shard_items(shuffled, i, n, key=str) for i in range(1, n + 1)]
        assert sorted(sum(shards, [])) == names  # the union is every case, and each appears once
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
        assert shards == [shard_items(names, i, n, key=str) for i in range(1, n + 1)]  # order-free
    for bad in ("0/3", "4/3", "3", "a/b", "1/0"):
        with pytest.raises(MedsegError):
            parse_shard(bad)


@pytest.fixture(scope="module")
def nifti_cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cases")
    rng = np.random.default_rng(2)
    for i in range(4):
        write_image(Image(rng.normal(size=(1, 5, 14, 12)).astype(np.float32), spacing=(2.0, 0.8, 0.8)),
                    folder / f"case_{i}.nii.gz")
    return folder


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, nifti_cases):
    """A tiny 3D model with random weights and its single-process predictions (one thread)."""
    root = tmp_path_factory.mktemp("single")
    model = make_model_folder(root / "model", spatial_dims=3, num_classes=3, label_values=(0, 1, 2),
                              preprocessing=[{"name": "zscore"}])
    assert main([*PREDICT, str(model), "-i", str(nifti_cases), "-o", str(root / "pred"), "--threads", "1",
                 "--probabilities"]) == 0
    return model, root / "pred"


def test_shards_give_the_single_run_outputs(tmp_path, nifti_cases, single_run):
    model, single = single_run
    expected = sorted(p.name for p in single.glob("*.nii.gz"))
    assert len(expected) == 4
    parts = []
    out = tmp_path / "shared"  # array jobs write into one folder
    for i in (1, 2, 3):
        before = set(out.glob("*.nii.gz"))
        assert main([*PREDICT, str(model), "-i", str(nifti_cases), "-o", str(out), "--threads", "1",
                     "--shard", f"{i}/3"]) == 0
        parts.append(sorted(p.name for p in set(out.glob("*.nii.gz")) - before))
    assert sorted(sum(parts, [])) == expected and all(parts)  # disjoint, together every case
    for name in expected:
        assert np.array_equal(read_image(out / name).array, read_image(single / name).array)
    rows = sorted(line for i in (1, 2, 3)
                  for line in (out / f"volumes.shard-{i}-of-3.csv").read_text(encoding="utf-8").splitlines()[1:])
    assert rows == sorted((single / "volumes.csv").read_text(encoding="utf-8").splitlines()[1:])
    assert not (out / "volumes.csv").exists()


def test_workers_give_the_single_run_outputs(tmp_path, nifti_cases, single_run):
    model, single = single_run
    pooled = tmp_path / "pooled"
    # two processes with one thread each: the same arithmetic as the single one-thread run
    assert main([*PREDICT, str(model), "-i", str(nifti_cases), "-o", str(pooled), "--threads", "2",
                 "--workers", "2", "--probabilities"]) == 0
    for path in sorted(single.glob("*.nii.gz")):
        a, b = read_image(path), read_image(pooled / path.name)
        assert np.array_equal(a.array, b.array) and a.geometry_difference(b) is None
        pa, pb = read_image(single / "probabilities" / path.name), read_image(pooled / "probabilities" / path.name)
        assert np.array_equal(pa.array, pb.array)
    assert (single / "volumes.csv").read_text(encoding="utf-8") == (pooled / "volumes.csv").read_text(encoding="utf-8")


@pytest.mark.data
def test_predict_real_dicom_series_seg_equals_nifti(shared_data, tmp_path):
    """`medseg predict` on a PROMISE12 volume laid out as an oblique, anisotropic DICOM series: the SEG it
    writes by default decodes to the NIfTI prediction voxel for voxel on the source grid."""
    from scipy.spatial.transform import Rotation

    volume = read_image(shared_data / "PROMISE12" / "imagesTr" / "Case00_0000.nii.gz")
    direction = Rotation.from_euler("zyx", [12, -25, 8], degrees=True).as_matrix()
    crop = volume.array[:, 16:28, 64:192, 64:192]  # the gland's region: one tile, a few seconds of CPU
    image = Image(crop, spacing=(3.6, 0.625, 0.625), origin=(-80.0, 40.0, -120.5), direction=direction)
    grid = write_dicom_series(image, tmp_path / "dicom" / "Case00", seed=11)
    model = make_model_folder(tmp_path / "model", spatial_dims=3, num_classes=2, label_values=(0, 1),
                              preprocessing=[{"name": "zscore"}], patch=(12, 128, 128))
    assert main([*PREDICT, str(model), "-i", str(grid.folder), "-o", str(tmp_path / "seg"), "--threads", "1"]) == 0
    assert main([*PREDICT, str(model), "-i", str(grid.folder), "-o", str(tmp_path / "nii"), "--threads", "1",
                 "--format", "image"]) == 0
    nifti = read_image(tmp_path / "nii" / "Case00.nii.gz")
    back = read_dicom_seg(tmp_path / "seg" / "Case00.seg.dcm", grid.folder, labels={"l1": 1})
    assert 0 < np.count_nonzero(nifti.array) < nifti.array.size  # a non-trivial prediction
    assert np.array_equal(back.label_map.array, nifti.array) and back.label_map.geometry_difference(nifti) is None
    assert back.referenced_series_uid == grid.series_uid and back.frame_of_reference_uid == grid.frame_of_reference_uid
