"""Deterministic synthetic phantoms written as medseg datasets, for tests, demos and CPU training.

- :func:`make_vessels2d`: fundus-like RGB photographs with branching vessel trees (width tapering at
  each bifurcation, darkest in the green channel), a circular field of view (kept as ROI), vignetting,
  an optic disc, a darker macula and noise. Labels 0/1.
- :func:`make_organs3d`: 3D volumes with a body and a few deformed blob "organs" of different
  intensities (labels 0..K), noise, a smooth multiplicative bias field, anisotropic spacing and an
  oblique direction. ``channels=4`` gives four contrasts.
- :func:`make_tumour3d`: 4-channel brain-like volumes with nested labels (edema 1, non-enhancing
  core 2, enhancing 3) declared as BraTS-style regions.

The same ``seed`` gives the same files; case ``i`` uses ``default_rng([seed, i])``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from medseg.errors import MedsegError
from medseg.fileutil import atomic_dir
from medseg.io.cases import channel_file_name
from medseg.image import Image
from medseg.io import write_image
from medseg.datasets.dataset import write_dataset_json

__all__ = ["make_vessels2d", "make_organs3d", "make_tumour3d", "vessels2d_case", "organs3d_case", "tumour3d_case"]


# --- 2D vessels --------------------------------------------------------------------------------
def _grow_tree(rng, start, angle, radius, size, points, depth=0):
    """Append (y, x, radius) centre-line samples of a branching vessel to ``points``."""
    y, x = start
    length = size * rng.uniform(0.15, 0.3) * (0.8 ** depth)
    steps = max(int(length / 0.5), 2)
    for _ in range(steps):
        angle += rng.normal(0, 0.06)
        y, x = y + 0.5 * np.sin(angle), x + 0.5 * np.cos(angle)
        if not (0 <= y < size and 0 <= x < size):
            return
        points.append((y, x, radius))
    if depth < 5 and radius > 0.45:
        for sign in (-1, 1):
            spread = rng.uniform(0.3, 0.7)
            _grow_tree(rng, (y, x), angle + sign * spread, radius * rng.uniform(0.65, 0.85), size, points, depth + 1)


def vessels2d_case(size: int = 128, seed: int | Sequence[int] = 0) -> tuple[Image, Image, Image]:
    """One fundus-like phantom: (RGB uint8 image, vessel label uint8 0/1, field-of-view ROI uint8 0/1).

    Examples
    --------
    >>> image, label, roi = vessels2d_case(64, seed=1)
    >>> image.channel_names, int(label.array.max()), int(roi.array.sum()) > 0
    (('R', 'G', 'B'), 1, True)
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    centre = (size - 1) / 2
    r_fov = 0.46 * size
    dist_c = np.hypot(yy - centre, xx - centre)
    fov = dist_c <= r_fov
    side = rng.choice([-1, 1])
    disc = (centre + rng.normal(0, 0.03 * size), centre + side * 0.28 * size)
    macula = (centre, centre - side * 0.12 * size)
    points: list[tuple[float, float, float]] = []
    trunk_radius = max(1.0, 1.2 * size / 128)
    for base in (-1.1, -0.7, 0.7, 1.1):  # arcades leaving the disc up and down, towards the macula
        angle = (np.pi if side > 0 else 0.0) + side * base + rng.normal(0, 0.1)
        _grow_tree(rng, disc, angle, trunk_radius * rng.uniform(0.85, 1.1), size, points)
    centre_line = np.zeros((size, size), bool)
    radius_map = np.zeros((size, size))
    for y, x, r in points:
        iy, ix = int(round(y)), int(round(x))
        if 0 <= iy < size and 0 <= ix < size:
            centre_line[iy, ix] = True
            radius_map[iy, ix] = max(radius_map[iy, ix], r)
    dist, (iy, ix) = ndimage.distance_transform_edt(~centre_line, return_indices=True)
    radius = radius_map[iy, ix]
    coverage = np.clip(radius + 0.5 - dist, 0.0, 1.0)  # anti-aliased vessel profile
    label = (coverage >= 0.5) & fov

    vignette = 1.0 - 0.45 * (dist_c / r_fov) ** 2
    disc_glow = 0.45 * np.exp(-((yy - disc[0]) ** 2 + (xx - disc[1]) ** 2) / (2 * (0.05 * size) ** 2))
    macula_shadow = 0.2 * np.exp(-((yy - macula[0]) ** 2 + (xx - macula[1]) ** 2) / (2 * (0.08 * size) ** 2))
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 2.0) * 0.08
    rgb = []
    for base, vessel_contrast in ((0.85, 0.25), (0.42, 0.6), (0.2, 0.4)):
        channel = base * vignette * (1 + texture) + disc_glow * base - macula_shadow * base
        channel = channel * (1 - vessel_contrast * coverage * rng.uniform(0.8, 1.0))
        channel = channel + rng.normal(0, 0.012, channel.shape)
        rgb.append(np.where(fov, channel, 0.02))
    array = (np.clip(np.stack(rgb), 0, 1) * 255).round().astype(np.uint8)
    image = Image(array, channel_names=("R", "G", "B"))
    return image, image.with_array(label.astype(np.uint8)[None], ("label",)), image.with_array(
        fov.astype(np.uint8)[None], ("roi",)
    )


# --- 3D organs ---------------------------------------------------------------------------------
def _oblique(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])  # rotation about the slice axis


def _blob(rng, grid_mm, centre, radii, roughness=0.15):
    """Boolean mask of a randomly deformed ellipsoid (radii in mm) on a physical grid."""
    q = sum(((g - c) / r) ** 2 for g, c, r in zip(grid_mm, centre, radii))
    noise = ndimage.gaussian_filter(rng.normal(0, 1, q.shape), 3.0)
    noise /= np.abs(noise).max() + 1e-9
    return q + roughness * noise < 1.0


def _bias_field(rng, shape, strength=0.25):
    coords = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    field = sum(rng.uniform(-1, 1) * c for c in coords) + sum(rng.uniform(-0.5, 0.5) * c * c for c in coords)
    return np.exp(strength * field / 2)


def organs3d_case(
    shape: Sequence[int] = (32, 64, 64),
    seed: int | Sequence[int] = 0,
    *,
    spacing: Sequence[float] = (3.0, 1.0, 1.0),
    num_organs: int = 3,
    channels: int = 1,
    noise: float = 0.05,
) -> tuple[Image, Image]:
    """One 3D organ phantom: (float32 image with ``channels`` channels, label map 0..num_organs).

    Examples
    --------
    >>> image, label = organs3d_case((16, 32, 32), seed=0)
    >>> image.spatial_shape, image.spacing, int(label.array.max())
    ((16, 32, 32), (3.0, 1.0, 1.0), 3)
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in spacing)
    extent = [n * s for n, s in zip(shape, spacing)]
    grid = np.meshgrid(*[(np.arange(n) + 0.5) * s for n, s in zip(shape, spacing)], indexing="ij")
    body = _blob(rng, grid, [e / 2 for e in extent], [0.47 * e for e in extent], 0.05)
    label = np.zeros(shape, np.uint8)
    for k in range(1, num_organs + 1):
        for _ in range(20):  # place the organ inside the body, mostly clear of the others
            centre = [rng.uniform(0.3, 0.7) * e for e in extent]
            radii = [rng.uniform(0.14, 0.24) * min(extent[1:]) for _ in extent]
            radii[0] = max(radii[0], 1.5 * spacing[0])
            mask = _blob(rng, grid, centre, radii) & body
            if mask.sum() > 8 and (label[mask] > 0).mean() < 0.2:
                break
        label[mask & (label == 0)] = k
    images = []
    for c in range(channels):
        levels = np.concatenate([[0.0, 0.3], rng.permutation(np.linspace(0.5, 1.0, num_organs)) if c else
                                 np.linspace(0.5, 1.0, num_organs)])
        intensity = np.where(body, levels[1], levels[0])
        for k in range(1, num_organs + 1):
            intensity = np.where(label == k, levels[k + 1], intensity)
        intensity = intensity * _bias_field(rng, shape) + rng.normal(0, noise, shape)
        images.append(intensity.astype(np.float32))
    direction = _oblique(rng.uniform(0.1, 0.3))
    origin = (-0.5 * extent[0], -100.0 + rng.uniform(-5, 5), 20.0)
    names = ("CT",) if channels == 1 else tuple(["T1", "T1ce", "T2", "FLAIR"][c] if c < 4 else f"C{c}" for c in range(channels))
    image = Image(np.stack(images), spacing, origin, direction, names)
    return image, image.with_array(label[None], ("label",))


#: BraTS's label values as distributed: 2 oedema, 1 necrotic / non-enhancing core, 4 enhancing (no 3)
BRATS_VALUES = {1: 2, 2: 1, 3: 4}


def tumour3d_case(shape: Sequence[int] = (32, 64, 64), seed: int | Sequence[int] = 0,
                  *, spacing: Sequence[float] = (2.0, 1.0, 1.0), brats_values: bool = False,
                  background_zero: bool = False) -> tuple[Image, Image]:
    """One 4-channel (T1, T1ce, T2, FLAIR) brain-tumour phantom with nested labels:
    1 edema, 2 non-enhancing core, 3 enhancing rim (``brats_values``: BraTS's 2, 1, 4 instead).
    ``background_zero``: voxels outside the brain are exactly 0, as in skull-stripped BraTS images."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in spacing)
    extent = [n * s for n, s in zip(shape, spacing)]
    grid = np.meshgrid(*[(np.arange(n) + 0.5) * s for n, s in zip(shape, spacing)], indexing="ij")
    brain = _blob(rng, grid, [e / 2 for e in extent], [0.45 * e for e in extent], 0.05)
    centre = [rng.uniform(0.4, 0.6) * e for e in extent]
    r = rng.uniform(0.18, 0.25) * min(extent[1:])
    radii = [max(r, 2.5 * spacing[0]), r, r]
    edema = _blob(rng, grid, centre, radii, 0.2) & brain
    core = _blob(rng, grid, centre, [0.6 * x for x in radii], 0.1) & edema
    necrosis = _blob(rng, grid, centre, [0.35 * x for x in radii], 0.1) & core
    label = np.zeros(shape, np.uint8)
    label[edema] = 1
    label[core] = 3  # enhancing rim ...
    label[necrosis] = 2  # ... around a non-enhancing centre
    # intensity per class (background, brain, edema, non-enhancing, enhancing) for each contrast
    table = {"T1": (0, .6, .5, .3, .55), "T1ce": (0, .55, .5, .35, 1.0), "T2": (0, .4, .8, .9, .7),
             "FLAIR": (0, .4, 1.0, .6, .7)}
    images = []
    for levels in table.values():
        x = np.where(brain, levels[1], levels[0])
        for k, level in zip((1, 2, 3), levels[2:]):
            x = np.where(label == k, level, x)
        x = (x * _bias_field(rng, shape, 0.15) + rng.normal(0, 0.04, shape)).astype(np.float32)
        images.append(np.where(brain, x, np.float32(0)) if background_zero else x)
    if brats_values:
        label = np.select([label == k for k in BRATS_VALUES], list(BRATS_VALUES.values()), 0).astype(np.uint8)
    image = Image(np.stack(images), spacing, (0.0, -120.0, -90.0), _oblique(0.15), tuple(table))
    return image, image.with_array(label[None], ("label",))


# --- writing datasets --------------------------------------------------------------------------
def _write_cases(tmp: Path, make, cases: int, test_cases: int, seed: int, ending: str, split_channels: bool) -> None:
    for index in range(cases + test_cases):
        sub = "Tr" if index < cases else "Ts"
        name = f"case_{index:03d}"
        parts = make([seed, index])
        image, label = parts[0], parts[1]
        channel_images = [image.channel(c) for c in range(image.num_channels)] if split_channels else [image]
        for c, part in enumerate(channel_images):
            write_image(part, tmp / f"images{sub}" / channel_file_name(name, c, ending))
        write_image(label, tmp / f"labels{sub}" / f"{name}{ending}")
        if len(parts) > 2:
            write_image(parts[2], tmp / f"rois{sub}" / f"{name}{ending}")


def _check_dst(dst: Path, overwrite: bool, cases: int) -> None:
    if dst.exists() and not overwrite:
        raise MedsegError("output folder exists; choose another or pass overwrite=True (--overwrite)", dst)
    if cases < 1:
        raise MedsegError(f"cases must be at least 1; got {cases}")


def make_vessels2d(dst: str | os.PathLike, cases: int = 8, seed: int = 0, *, size: int = 128,
                   test_cases: int = 0, overwrite: bool = False) -> Path:
    """Write a fundus-like vessel dataset (PNG, RGB images, labels 0/1, field-of-view ROIs).

    Parameters
    ----------
    dst : path
        New dataset folder.
    cases, test_cases : int
        Training cases (imagesTr/labelsTr/roisTr) and test cases (imagesTs/labelsTs/roisTs).
    seed : int
        Same seed, same dataset.
    size : int
        Image height and width in pixels.
    overwrite : bool
        Replace an existing ``dst``.

    Returns
    -------
    Path
        ``dst``.

    Examples
    --------
    >>> import tempfile
    >>> root = make_vessels2d(tempfile.mkdtemp() + "/v", cases=2, seed=0, size=64)
    >>> sorted(p.name for p in (root / "roisTr").iterdir())
    ['case_000.png', 'case_001.png']
    """
    dst = Path(dst)
    _check_dst(dst, overwrite, cases)
    with atomic_dir(dst) as tmp:
        _write_cases(tmp, lambda s: vessels2d_case(size, s), cases, test_cases, seed, ".png", False)
        write_dataset_json(tmp, name="vessels2d", channel_names=["R", "G", "B"],
                           labels={"background": 0, "vessel": 1}, file_ending=".png", num_training=cases,
                           description=f"synthetic fundus-like vessel phantoms (medseg, seed {seed}, size {size})",
                           numTest=test_cases)
    return dst


def make_organs3d(dst: str | os.PathLike, cases: int = 8, seed: int = 0, *, shape: Sequence[int] = (32, 64, 64),
                  spacing: Sequence[float] = (3.0, 1.0, 1.0), num_organs: int = 3, channels: int = 1,
                  test_cases: int = 0, overwrite: bool = False) -> Path:
    """Write a 3D organ-phantom dataset (.nii.gz, one file per channel, labels 0..num_organs).

    Parameters
    ----------
    dst : path
        New dataset folder.
    cases, test_cases : int
        Training and test cases.
    seed : int
        Same seed, same dataset.
    shape, spacing : sequence
        Array shape (Z, Y, X) and voxel size in mm (array order; anisotropic by default).
    num_organs : int
        Number of labelled blobs.
    channels : int
        1 ("CT") or several contrasts ("T1", "T1ce", "T2", "FLAIR").
    overwrite : bool
        Replace an existing ``dst``.

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile
    >>> root = make_organs3d(tempfile.mkdtemp() + "/o", cases=1, seed=0, shape=(8, 16, 16))
    >>> sorted(p.name for p in (root / "imagesTr").iterdir())
    ['case_000_0000.nii.gz']
    """
    dst = Path(dst)
    _check_dst(dst, overwrite, cases)
    with atomic_dir(dst) as tmp:
        make = lambda s: organs3d_case(shape, s, spacing=spacing, num_organs=num_organs, channels=channels)  # noqa: E731
        _write_cases(tmp, make, cases, test_cases, seed, ".nii.gz", True)
        names = make([seed, 0])[0].channel_names
        labels = {"background": 0, **{f"organ{k}": k for k in range(1, num_organs + 1)}}
        write_dataset_json(tmp, name="organs3d", channel_names=list(names), labels=labels, file_ending=".nii.gz",
                           num_training=cases, numTest=test_cases,
                           description=f"synthetic 3D organ phantoms (medseg, seed {seed}, shape {tuple(shape)})")
    return dst


def make_tumour3d(dst: str | os.PathLike, cases: int = 8, seed: int = 0, *, shape: Sequence[int] = (32, 64, 64),
                  spacing: Sequence[float] = (2.0, 1.0, 1.0), test_cases: int = 0, overwrite: bool = False,
                  brats_values: bool = False, background_zero: bool = False) -> Path:
    """Write a BraTS-like 4-channel dataset with region-based labels (whole tumour ⊃ core ⊃ enhancing).

    ``brats_values``: label values as BraTS distributes them (2 oedema, 1 non-enhancing core, 4 enhancing;
    regions [1, 2, 4], [1, 4], [4] painted in the order 2, 1, 4) instead of 1, 2, 3. ``background_zero``:
    exact zeros outside the brain (skull-stripped), so cropping to the non-zero region applies.

    Examples
    --------
    >>> import tempfile, json
    >>> root = make_tumour3d(tempfile.mkdtemp() + "/t", cases=1, seed=0, shape=(8, 24, 24))
    >>> json.loads((root / "dataset.json").read_text(encoding="utf-8"))["regions_class_order"]
    [1, 2, 3]
    """
    dst = Path(dst)
    _check_dst(dst, overwrite, cases)
    with atomic_dir(dst) as tmp:
        make = lambda s: tumour3d_case(shape, s, spacing=spacing, brats_values=brats_values,  # noqa: E731
                                       background_zero=background_zero)
        _write_cases(tmp, make, cases, test_cases, seed, ".nii.gz", True)
        if brats_values:
            regions = {"whole_tumour": [1, 2, 4], "tumour_core": [1, 4], "enhancing": [4]}
            extra, text = {"regions_class_order": [2, 1, 4]}, "2 edema, 1 non-enhancing core, 4 enhancing"
        else:
            regions = {"whole_tumour": [1, 2, 3], "tumour_core": [2, 3], "enhancing": [3]}
            extra, text = {}, "1 edema, 2 non-enhancing core, 3 enhancing"
        write_dataset_json(tmp, name="tumour3d", channel_names=["T1", "T1ce", "T2", "FLAIR"],
                           labels={"background": 0}, regions=regions,
                           file_ending=".nii.gz", num_training=cases, numTest=test_cases,
                           description=f"synthetic brain-tumour phantoms; labels {text}", **extra)
    return dst
