"""DICOM SEG: a label map on a generated DICOM series (oblique, anisotropic) is written with highdicom and
read back equal voxel for voxel, both with highdicom and by decoding the frames with pydicom alone; segment
names, codes and UIDs; bad series and grids are one-line errors that write nothing."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from scipy.spatial.transform import Rotation

from medseg.errors import GeometryError, ImageReadError, MedsegError
from medseg.image import Image
from medseg.io import read_image
from medseg.io.dicom_seg import load_segment_codes, read_dicom_seg, write_dicom_seg, writes_dicom_seg
from medseg.io.dicom_series import read_series_grid, write_dicom_series

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LABELS = {"background": 0, "RV": 1, "myocardium": 2, "enhancing_tumour": 4}


def oblique_image(rng, shape=(9, 20, 24), spacing=(3.0, 0.7, 0.9)) -> Image:
    direction = Rotation.from_euler("xyz", [20, -15, 30], degrees=True).as_matrix()
    return Image(rng.integers(-100, 1000, (1, *shape)).astype(np.int16), spacing=spacing,
                 origin=(5.0, -20.0, 12.5), direction=direction)


def label_map_for(shape) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    labels[1:5, 3:10, 4:12] = 1
    labels[2:7, 12:18, 5:9] = 2
    labels[4, 0:2, 20:23] = 4
    return labels  # slices 0 and 8 stay empty: frames omitted from the SEG must decode as background


def decode_with_pydicom(path, grid) -> np.ndarray:
    """Segment numbers on the source grid from the SEG's frames and per-frame references alone."""
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    index = {str(h.SOPInstanceUID): k for k, h in enumerate(grid.headers)}
    out = np.zeros(grid.grid.spatial_shape, np.uint16)
    for frame, item in zip(frames, ds.PerFrameFunctionalGroupsSequence):
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        groups = item if "SegmentIdentificationSequence" in item else ds.SharedFunctionalGroupsSequence[0]
        number = groups.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        assert not np.any(out[index[source]][frame > 0]), "segments overlap"
        out[index[source]][frame > 0] = number
    return out


@pytest.fixture
def series(tmp_path, rng):
    image = oblique_image(rng)
    return image, write_dicom_series(image, tmp_path / "mr", seed=3)


def test_series_writer_roundtrip_with_simpleitk(series, tmp_path):
    image, grid = series
    back = read_image(grid.folder)
    assert back.geometry_difference(image) is None and grid.grid.geometry_difference(image) is None
    assert np.array_equal(back.array, image.array)
    assert not np.allclose(image.direction, np.eye(3)) and len(set(image.spacing)) == 3


def test_seg_roundtrip_equals_label_map(series, tmp_path):
    image, grid = series
    label_map = label_map_for(image.spatial_shape)
    source = read_image(grid.folder)
    out = write_dicom_seg(source.with_array(label_map[None]), grid.folder, tmp_path / "case.seg.dcm", labels=LABELS)

    back = read_dicom_seg(out, grid.folder, labels=LABELS)
    assert back.label_map.geometry_difference(source) is None
    assert np.array_equal(back.label_map.array[0], label_map)
    assert back.labels == {"RV": 1, "myocardium": 2, "enhancing_tumour": 4}
    numbers = decode_with_pydicom(out, grid)  # independent of highdicom's reader
    assert np.array_equal(numbers, np.array([0, 1, 2, 0, 3], np.uint16)[label_map])

    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == SEGMENTATION_STORAGE and ds.SegmentationType == "BINARY"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == grid.series_uid == back.referenced_series_uid
    assert ds.FrameOfReferenceUID == grid.frame_of_reference_uid == back.frame_of_reference_uid
    assert ds.StudyInstanceUID == grid.headers[0].StudyInstanceUID and ds.SeriesInstanceUID != grid.series_uid
    segments = {s.SegmentLabel: s for s in ds.SegmentSequence}
    assert list(segments) == ["RV", "myocardium", "enhancing_tumour"]
    rv = segments["RV"]
    rv_type = rv.SegmentedPropertyTypeCodeSequence[0]
    assert (rv_type.CodeValue, rv_type.CodingSchemeDesignator) == ("53085002", "SCT")
    assert rv.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == "Anatomical Structure"
    tumour = segments["enhancing_tumour"]
    assert tumour.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Neoplasm"
    assert tumour.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert back.segments[1].type.value == "74281007" and back.segments[1].category.value == "91723000"

    # without names a segment's value is its number
    plain = read_dicom_seg(out, grid)
    assert np.array_equal(plain.label_map.array[0], numbers)


def test_label_map_in_reversed_slice_order_is_accepted(series, tmp_path):
    image, grid = series
    label_map = label_map_for(image.spatial_shape)
    source = read_image(grid.folder)
    direction = source.direction.copy()
    direction[:, 0] *= -1
    last = source.index_to_physical((source.spatial_shape[0] - 1, 0, 0))
    reversed_map = Image(label_map[None, ::-1], source.spacing, tuple(last), direction)
    out = write_dicom_seg(reversed_map, grid, tmp_path / "r.seg.dcm", labels={"prostate": 1, "liver": 2, "x": 4})
    assert np.array_equal(read_dicom_seg(out, grid, labels={"prostate": 1, "liver": 2, "x": 4}).label_map.array[0],
                          label_map)


def test_label_map_on_another_grid_writes_nothing(series, tmp_path):
    image, grid = series
    source = read_image(grid.folder)
    shifted = Image(np.zeros(source.array.shape, np.uint8), source.spacing,
                    tuple(np.add(source.origin, (0.0, 1.0, 0.0))), source.direction)
    with pytest.raises(GeometryError, match="not on the grid") as info:
        write_dicom_seg(shifted, grid, tmp_path / "x.seg.dcm")
    assert "origin" in str(info.value) and "\n" not in str(info.value)
    cropped = Image(np.zeros((1, 9, 20, 23), np.uint8), source.spacing, source.origin, source.direction)
    with pytest.raises(GeometryError, match="shape"):
        write_dicom_seg(cropped, grid, tmp_path / "x.seg.dcm")
    assert list(tmp_path.glob("*.dcm")) == [] and list(tmp_path.glob(".*")) == []


def test_bad_series_are_named(tmp_path, rng):
    image = Image(rng.integers(0, 100, (1, 5, 6, 7)).astype(np.int16), spacing=(2.5, 1.0, 1.0))
    gap = write_dicom_series(image, tmp_path / "gap")
    gap.files[2].unlink()  # a missing slice
    with pytest.raises(ImageReadError, match="uneven slice spacing.*missing slice") as info:
        read_series_grid(gap.folder)
    assert gap.files[3].name in str(info.value)
    with pytest.raises(ImageReadError, match="missing slice"):
        read_image(gap.folder)  # prediction reads DICOM through the same checks

    spacing = write_dicom_series(image, tmp_path / "spacing")
    ds = pydicom.dcmread(spacing.files[1])
    ds.PixelSpacing = [1.2, 1.0]
    ds.save_as(spacing.files[1])
    with pytest.raises(ImageReadError, match="pixel spacing differs") as info:
        read_series_grid(spacing.folder)
    assert str(spacing.files[1]) in str(info.value)

    mixed = tmp_path / "mixed"
    one = write_dicom_series(image, tmp_path / "one")
    two = write_dicom_series(image, tmp_path / "two")
    mixed.mkdir()
    for f in one.files[:2] + two.files[:2]:
        f.rename(mixed / f"{f.parent.name}_{f.name}")
    with pytest.raises(ImageReadError, match="mixes 2 DICOM series") as info:
        read_series_grid(mixed)
    assert one.series_uid in str(info.value) and two.series_uid in str(info.value)


def test_segment_codes_lookup_and_user_file(tmp_path):
    codes = load_segment_codes()
    assert codes.lookup("Prostate").type.value == "41216001"
    assert codes.lookup("left-ventricle").type.value == "87878005"
    assert codes.lookup("brain tumour").category.meaning == "Morphologically Abnormal Structure"
    assert codes.lookup("retinal_vessel").region.meaning == "Retina"
    assert codes.lookup("widget").type.meaning == "Tissue" and codes.lookup("widget").category.value == "85756007"
    user = tmp_path / "codes.json"
    user.write_text(json.dumps({"concepts": [
        {"names": ["widget"], "category": "anatomical structure",
         "type": {"scheme": "SCT", "value": "76752008", "meaning": "Breast"}},
        {"names": ["prostate"], "category": {"scheme": "SCT", "value": "85756007", "meaning": "Tissue"},
         "type": {"scheme": "SCT", "value": "41216001", "meaning": "Prostate"}}]}), encoding="utf-8")
    mine = load_segment_codes(user)
    assert mine.lookup("Widget").type.meaning == "Breast" and mine.lookup("prostate").category.meaning == "Tissue"
    assert mine.lookup("liver").type.value == "10200004"  # medseg's table still answers
    user.write_text(json.dumps({"concepts": [{"names": ["a"], "category": "nope", "type": {}}]}), encoding="utf-8")
    with pytest.raises(MedsegError, match="unknown category") as info:
        load_segment_codes(user)
    assert str(user) in str(info.value)


def test_format_choice(tmp_path):
    (tmp_path / "series").mkdir()
    assert writes_dicom_seg("auto", tmp_path / "series") and writes_dicom_seg("dicom-seg", tmp_path / "series")
    assert not writes_dicom_seg("image", tmp_path / "series") and not writes_dicom_seg("auto", tmp_path / "a.nii.gz")
    with pytest.raises(MedsegError, match="needs a DICOM series"):
        writes_dicom_seg("dicom-seg", tmp_path / "a.nii.gz")
    with pytest.raises(MedsegError, match="--format"):
        writes_dicom_seg("png", tmp_path / "a.nii.gz")


@pytest.mark.data
@pytest.mark.parametrize("dataset, case, name, code, spacing", [
    ("PROMISE12", "Case00", "prostate", "41216001", (3.6, 0.625, 0.625)),
    ("LA", None, "left_atrium", "82471001", (1.25, 0.625, 0.625)),
])
def test_real_volume_as_oblique_series_roundtrip(shared_data, tmp_path, dataset, case, name, code, spacing):
    """A real volume with its expert label, laid out as an oblique, anisotropic DICOM series (these
    releases kept no spacing, so a realistic one is given): SEG written from the label map, read back equal."""
    folder = shared_data / dataset
    case = case or sorted(p.name[: -len(".nii.gz")] for p in (folder / "labelsTr").glob("*.nii.gz"))[0]
    volume = read_image(folder / "imagesTr" / f"{case}_0000.nii.gz")
    expert = read_image(folder / "labelsTr" / f"{case}.nii.gz")
    direction = Rotation.from_euler("zyx", [12, -25, 8], degrees=True).as_matrix()
    image = Image(volume.array, spacing=spacing, origin=(-80.0, 40.0, -120.5), direction=direction)
    grid = write_dicom_series(image, tmp_path / "series", seed=7)
    source = read_image(grid.folder)
    assert source.geometry_difference(image) is None
    if volume.array.dtype.kind in "iu":
        assert np.array_equal(source.array, volume.array)
    label_map = expert.array[0].astype(np.uint8)
    assert label_map.any()
    seg = write_dicom_seg(source.with_array(label_map[None]), grid, tmp_path / "case.seg.dcm",
                          labels=json.loads((folder / "dataset.json").read_text(encoding="utf-8"))["labels"])
    back = read_dicom_seg(seg, grid.folder)
    assert np.array_equal(back.label_map.array[0], label_map)
    assert np.array_equal(decode_with_pydicom(seg, grid), label_map)
    assert [(s.name, s.type.value) for s in back.segments] == [(name, code)]
    assert back.referenced_series_uid == grid.series_uid and back.frame_of_reference_uid == grid.frame_of_reference_uid


def test_seg_and_series_pass_the_dicom_validator(series, tmp_path):
    """dciodvfy (dicom3tools, David Clunie's IOD validator) finds no error in the SEG or the source slices."""
    import shutil
    import subprocess

    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (Debian package dicom3tools; .ci/run installs it)")
    image, grid = series
    label_map = label_map_for(image.spatial_shape)
    out = write_dicom_seg(grid.grid.with_array(label_map[None]), grid, tmp_path / "case.seg.dcm", labels=LABELS)
    for path, iod in ((out, "Segmentation"), (grid.files[0], "MRImage")):
        report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        text = report.stdout + report.stderr
        assert iod in text
        assert [line for line in text.splitlines() if line.startswith("Error")] == [], text


def test_single_slice_series(tmp_path, rng):
    image = Image(rng.integers(0, 100, (1, 1, 12, 10)).astype(np.int16), spacing=(2.5, 0.5, 0.6))
    grid = write_dicom_series(image, tmp_path / "one")
    source = read_image(grid.folder)
    label_map = np.zeros((1, 12, 10), np.uint8)
    label_map[0, 3:7, 2:5] = 1
    out = write_dicom_seg(source.with_array(label_map[None]), grid, tmp_path / "one.seg.dcm", labels={"fluid": 1})
    assert np.array_equal(read_dicom_seg(out, grid).label_map.array[0], label_map)


def test_slices_without_position(tmp_path, rng):
    """One image without position tags (a projection X-ray) still reads; a stack of them is refused."""
    grid = write_dicom_series(Image(rng.integers(0, 100, (1, 2, 6, 7)).astype(np.int16)), tmp_path / "xr")
    for f in grid.files:
        ds = pydicom.dcmread(f)
        del ds.ImagePositionPatient
        ds.save_as(f)
    with pytest.raises(ImageReadError, match="ImagePositionPatient") as info:
        read_image(grid.folder)
    assert str(grid.files[0]) in str(info.value)
    grid.files[1].unlink()
    assert read_image(grid.folder).spatial_shape == (6, 7)


def test_float_label_map_and_bad_values(series, tmp_path):
    image, grid = series
    label_map = label_map_for(image.spatial_shape)
    out = write_dicom_seg(grid.grid.with_array(label_map[None].astype(np.float32)), grid, tmp_path / "f.seg.dcm")
    assert np.array_equal(read_dicom_seg(out, grid, labels={"label 4": 4}).label_map.array[0], label_map)
    for bad in (label_map + 0.5, label_map.astype(np.int16) - 1):
        with pytest.raises(MedsegError, match="integer") as info:
            write_dicom_seg(grid.grid.with_array(bad[None]), grid, tmp_path / "bad.seg.dcm")
        assert str(tmp_path / "bad.seg.dcm") in str(info.value)
    assert not (tmp_path / "bad.seg.dcm").exists()


def test_rounded_positions_are_one_grid_but_uneven_steps_are_not(tmp_path, rng):
    image = Image(rng.integers(0, 100, (1, 6, 6, 7)).astype(np.int16), spacing=(2.5, 0.7, 0.7),
                  origin=(0.123456, 1.0, 2.0))
    grid = write_dicom_series(image, tmp_path / "rounded")
    for f in grid.files:  # positions rounded to 2 decimals, as some exports write them
        ds = pydicom.dcmread(f)
        ds.ImagePositionPatient = [f"{float(v):.2f}" for v in ds.ImagePositionPatient]
        ds.save_as(f)
    assert read_series_grid(grid.folder).grid.spatial_shape == (6, 6, 7)
    ds = pydicom.dcmread(grid.files[3])
    ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1],
                               float(ds.ImagePositionPatient[2]) + 0.2]  # 2.7 / 2.3 mm steps
    ds.save_as(grid.files[3])
    with pytest.raises(ImageReadError, match="uneven slice spacing") as info:
        read_series_grid(grid.folder)
    assert grid.files[3].name in str(info.value)
