"""Read -> write -> read is lossless in values, dtype class and geometry, for every writable format."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.image import Image
from medseg.io import SUPPORTED_EXTENSIONS, image_extension, read_image, write_image


def _oblique3d() -> np.ndarray:
    a, b = 0.3, -0.2
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    return rx @ rz


def _assert_same(a: Image, b: Image) -> None:
    assert a.array.shape == b.array.shape
    assert np.array_equal(a.array, b.array)
    assert a.array.dtype.kind == b.array.dtype.kind or {a.array.dtype.kind, b.array.dtype.kind} <= {"u", "i"}
    assert a.geometry_difference(b, rtol=1e-6, atol=1e-6) is None, a.geometry_difference(b)


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr"])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32, np.float64, np.int32])
def test_itk_roundtrip_3d_oblique_anisotropic(tmp_path, rng, ext, dtype):
    array = (rng.normal(0, 100, (1, 5, 6, 7))).astype(dtype)
    image = Image(array, spacing=(3.0, 0.7, 1.25), origin=(-12.5, 40.0, 7.0), direction=_oblique3d())
    path = tmp_path / f"x{ext}"
    write_image(image, path)
    back = read_image(path)
    _assert_same(image, back)
    assert back.array.dtype == np.dtype(dtype)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


@pytest.mark.parametrize("ext", [".nii.gz", ".mha", ".nrrd"])
@pytest.mark.parametrize("dims", [2, 3])
def test_itk_multichannel_roundtrip(tmp_path, rng, ext, dims):
    shape = (4, 6, 7) if dims == 2 else (4, 3, 6, 7)
    direction = _oblique3d() if dims == 3 else np.array([[0.0, 1.0], [1.0, 0.0]])
    image = Image(rng.normal(size=shape).astype(np.float32), spacing=(2.0, 0.5, 1.0)[-dims:],
                  origin=(1.0, 2.0, 3.0)[-dims:], direction=direction, channel_names=("T1", "T1ce", "T2", "FLAIR"))
    write_image(image, tmp_path / f"x{ext}")
    back = read_image(tmp_path / f"x{ext}")
    _assert_same(image, back)
    if ext != ".nii.gz":  # NIfTI has no place for channel names
        assert back.channel_names == image.channel_names


def test_itk_bool_written_as_uint8(tmp_path):
    image = Image(np.array([[[True, False], [False, True]]]))
    write_image(image, tmp_path / "m.nii.gz")
    back = read_image(tmp_path / "m.nii.gz")
    assert back.array.dtype == np.uint8 and back.array.tolist() == [[[1, 0], [0, 1]]]


def test_nifti_matches_itk_lps_convention(tmp_path, rng):
    """The same image saved as NIfTI and MHA reads back with identical geometry (LPS for both)."""
    import nibabel as nib

    image = Image(rng.integers(0, 9, (1, 4, 5, 6)).astype(np.int16), spacing=(2.0, 1.0, 0.5),
                  origin=(10.0, -20.0, 30.0), direction=_oblique3d())
    write_image(image, tmp_path / "a.nii.gz")
    write_image(image, tmp_path / "a.mha")
    a, b = read_image(tmp_path / "a.nii.gz"), read_image(tmp_path / "a.mha")
    assert a.geometry_difference(b, rtol=1e-6, atol=1e-6) is None
    # nibabel's RAS affine of voxel (i, j, k) in ITK order must be the LPS point with x, y negated.
    nii = nib.load(tmp_path / "a.nii.gz")
    ijk = np.array([1, 2, 3])  # nibabel index order = ITK (x, y, z) = reversed array order
    ras = nii.affine @ np.r_[ijk, 1]
    lps_array_order = image.index_to_physical(ijk[::-1])
    lps = lps_array_order[::-1]
    assert np.allclose(ras[:3], lps * np.array([-1, -1, 1]), atol=1e-5)


@pytest.mark.parametrize("ext,dtype", [(".png", np.uint8), (".png", np.uint16), (".tif", np.uint8),
                                       (".tif", np.uint16), (".tif", np.float32), (".tiff", np.int32),
                                       (".pgm", np.uint8), (".bmp", np.uint8), (".gif", np.uint8)])
def test_raster_grey_roundtrip(tmp_path, rng, ext, dtype):
    if np.issubdtype(dtype, np.integer):
        hi = min(np.iinfo(dtype).max, 70000)
        array = rng.integers(0, hi, (1, 9, 11)).astype(dtype)
    else:
        array = rng.normal(size=(1, 9, 11)).astype(dtype)
    image = Image(array)
    write_image(image, tmp_path / f"x{ext}")
    back = read_image(tmp_path / f"x{ext}")
    _assert_same(image, back)
    assert back.array.dtype == np.dtype(dtype)


@pytest.mark.parametrize("ext", [".png", ".tif", ".ppm", ".bmp"])
def test_raster_rgb_roundtrip(tmp_path, rng, ext):
    image = Image(rng.integers(0, 256, (3, 8, 10)).astype(np.uint8), channel_names=("R", "G", "B"))
    write_image(image, tmp_path / f"x{ext}")
    back = read_image(tmp_path / f"x{ext}")
    _assert_same(image, back)
    assert back.channel_names == ("R", "G", "B")


def test_label_map_to_png_keeps_values(tmp_path):
    label = Image(np.array([[[0, 1, 2], [3, 1, 0]]], dtype=np.int64))
    write_image(label, tmp_path / "l.png")
    back = read_image(tmp_path / "l.png")
    assert back.array.dtype == np.uint8 and back.array.tolist() == label.array.tolist()


def test_jpeg_reads_rgb(tmp_path, rng):
    image = Image(np.full((3, 16, 16), 128, np.uint8))
    write_image(image, tmp_path / "x.jpg")
    back = read_image(tmp_path / "x.jpg")
    assert back.array.shape == (3, 16, 16) and np.abs(back.array.astype(int) - 128).max() <= 2


def test_rgba_drops_alpha_and_palette_gives_indices(tmp_path):
    from PIL import Image as PILImage

    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 50
    PILImage.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    back = read_image(tmp_path / "a.png")
    assert back.num_channels == 3 and back.array[0].max() == 200
    pal = PILImage.fromarray(np.array([[0, 1], [2, 1]], np.uint8), "P")
    pal.putpalette([4, 2, 4, 252, 254, 252, 255, 0, 0] + [0] * 759)
    pal.save(tmp_path / "p.gif")
    assert read_image(tmp_path / "p.gif").array.tolist() == [[[0, 1], [2, 1]]]


def test_multiframe_tiff_is_3d(tmp_path):
    from PIL import Image as PILImage

    frames = [PILImage.fromarray(np.full((4, 5), i, np.uint8)) for i in range(3)]
    frames[0].save(tmp_path / "s.tif", save_all=True, append_images=frames[1:])
    back = read_image(tmp_path / "s.tif")
    assert back.array.shape == (1, 3, 4, 5) and back.array[0, :, 0, 0].tolist() == [0, 1, 2]


def test_stack_channels_from_files(tmp_path, rng):
    geometry = dict(spacing=(3.0, 1.0, 1.0), origin=(1.0, 2.0, 3.0), direction=_oblique3d())
    a = Image(rng.normal(size=(1, 3, 4, 5)).astype(np.float32), **geometry)
    b = Image(rng.normal(size=(1, 3, 4, 5)).astype(np.float32), **geometry)
    write_image(a, tmp_path / "c_0000.nii.gz")
    write_image(b, tmp_path / "c_0001.mha")
    stacked = read_image([tmp_path / "c_0000.nii.gz", tmp_path / "c_0001.mha"])
    assert stacked.num_channels == 2
    assert np.array_equal(stacked.array[1], b.array[0]) and stacked.same_geometry(a)


def test_image_extension():
    assert image_extension("a/b.NII.GZ") == ".nii.gz"
    assert image_extension("x.nii") == ".nii" and image_extension("y.tiff") == ".tiff"
    assert image_extension("noext") == "" and image_extension("z.xyz") == ".xyz"
    assert ".nii.gz" in SUPPORTED_EXTENSIONS and ".png" in SUPPORTED_EXTENSIONS
