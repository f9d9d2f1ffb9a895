"""Random non-rigid deformation on a coarse B-spline control grid (V-Net's augmentation).

Milletari et al. (V-Net, 3DV 2016) augmented prostate MRI with "a dense deformation field obtained through
a 2×2×2 grid of control points and B-spline interpolation". Here, as in TorchIO's
``RandomElasticDeformation``, random displacements are drawn at the free control points of a cubic B-spline
grid whose outer layer is held at zero, and SimpleITK evaluates the spline and resamples: the image
linearly, the label with nearest neighbour (so it keeps exactly its values), both through the same
transform. Points mapped outside the patch take the nearest edge value (image and label alike), so no fill
value is invented.

Examples
--------
>>> import torch
>>> t = RandomBSplineDeformation(max_displacement=3.0, p=1.0)
>>> img = torch.rand(2, 1, 12, 16, 16)
>>> lab = (img > 0.5).long()
>>> out, out_lab = t(img, lab, torch.Generator().manual_seed(0))
>>> out.shape, sorted(out_lab.unique().tolist())
(torch.Size([2, 1, 12, 16, 16]), [0, 1])
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch

from medseg.augmentation.base import RandomTransform, apply_selected
from medseg.errors import MedsegError

Tensor = torch.Tensor

SPLINE_ORDER = 3  # cubic B-spline: mesh cells + 3 coefficients per axis
FIELD_STEP = 4  # voxels between the points where the spline is evaluated (linear in between)


def control_grid_shape(control_points: int, spatial_dims: int) -> tuple[int, ...]:
    """Coefficients per axis: the free control points plus one locked (zero) layer on each side."""
    return (int(control_points) + 2,) * spatial_dims


def bspline_deform(image: np.ndarray, label: np.ndarray | None, coefficients: np.ndarray,
                   threads: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """Resample one sample through a cubic B-spline displacement (SimpleITK), image linear, label nearest.

    Parameters
    ----------
    image : ndarray (C, *S)
        2D ``(C, Y, X)`` or 3D ``(C, Z, Y, X)``.
    label : ndarray (1, *S) or None
        Integer label map.
    coefficients : ndarray (D, *G)
        B-spline displacement coefficients in voxels, array-axis order (``coefficients[0]`` moves along
        axis 0), on a grid of ``G`` coefficients per axis (at least 4, the cubic spline's support); the
        output at voxel ``c`` samples the input at ``c + displacement(c)``.
    threads : int
        SimpleITK threads.

    Returns
    -------
    (ndarray, ndarray or None)
        Same shapes and dtypes as the inputs.

    Examples
    --------
    >>> img = np.random.default_rng(0).random((1, 10, 12)).astype(np.float32)
    >>> out, _ = bspline_deform(img, None, np.zeros((2, 4, 4)))
    >>> bool(np.allclose(out, img, atol=1e-5))
    True
    """
    import SimpleITK as sitk

    d = image.ndim - 1
    shape = image.shape[1:]
    if coefficients.ndim != d + 1 or coefficients.shape[0] != d or min(coefficients.shape[1:]) < SPLINE_ORDER + 1:
        raise MedsegError(f"B-spline coefficients must have shape ({d}, G, ...) with G >= {SPLINE_ORDER + 1}; "
                          f"got {coefficients.shape}")
    reference = sitk.Image([int(s) for s in reversed(shape)], sitk.sitkFloat32)  # spacing 1, origin 0
    mesh = [int(g) - SPLINE_ORDER for g in reversed(coefficients.shape[1:])]
    transform = sitk.BSplineTransformInitializer(reference, mesh, SPLINE_ORDER)
    # ITK's parameters: every coefficient of the x displacement (x fastest), then y, then z; numpy's C order
    # over (z, y, x) is x fastest too, and ITK's x is the last array axis.
    transform.SetParameters([float(v) for k in range(d) for v in coefficients[d - 1 - k].ravel()])
    # Evaluating the spline at every voxel (twice: image and label) costs ~µs per point; the field of a few
    # control points is so smooth that ITK's linear interpolation of it, sampled every FIELD_STEP voxels,
    # differs by a negligible amount, so the spline is evaluated once on that coarse grid (covering the patch).
    # The coarse grid ends exactly on the last voxel: the spline is zero outside the patch's domain.
    size = [max(2, int(-(-(n - 1) // FIELD_STEP)) + 1) for n in reversed(shape)]
    step = [max(n - 1, 1) / (m - 1) for n, m in zip(reversed(shape), size)]
    field = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, size, [0.0] * d, step,
                                              np.eye(d).ravel().tolist())
    transform = sitk.DisplacementFieldTransform(field)

    def resample(moving: sitk.Image, interpolator: int) -> sitk.Image:
        f = sitk.ResampleImageFilter()
        f.SetReferenceImage(reference)
        f.SetTransform(transform)
        f.SetInterpolator(interpolator)
        f.SetUseNearestNeighborExtrapolator(True)
        f.SetNumberOfThreads(max(1, int(threads)))
        return f.Execute(moving)

    channels_last = np.moveaxis(np.asarray(image, dtype=np.float32), 0, -1)
    moved = resample(sitk.GetImageFromArray(channels_last, isVector=True), sitk.sitkLinear)
    out = np.moveaxis(sitk.GetArrayFromImage(moved).reshape(*shape, image.shape[0]), -1, 0).astype(image.dtype)
    if label is None:
        return out, None
    moved_label = resample(sitk.GetImageFromArray(np.asarray(label[0], dtype=np.int32)), sitk.sitkNearestNeighbor)
    return out, sitk.GetArrayFromImage(moved_label)[None].astype(label.dtype)


@dataclasses.dataclass
class RandomBSplineDeformation(RandomTransform):
    """Smooth random deformation: uniform displacements at the free points of a coarse cubic B-spline grid.

    Parameters
    ----------
    control_points : int
        Free control points per axis (V-Net: 2, "a 2×2×2 grid"); an outer layer of locked points
        (zero displacement) surrounds them, so the field fades towards the patch border.
    max_displacement : float or list of float
        Largest displacement at a control point, in voxels (one value, or one per spatial axis).
    axes : list of int, optional
        Axes along which voxels move (default all; the in-plane axes for thick slices).
    p : float
        Probability per sample.

    Examples
    --------
    >>> t = RandomBSplineDeformation(control_points=2, max_displacement=[1.0, 4.0, 4.0], p=0.5)
    >>> t.sample_coefficients(3, 3, torch.Generator().manual_seed(0)).shape
    (3, 3, 4, 4, 4)
    """

    name: ClassVar[str] = "bspline"
    spatial: ClassVar[bool] = True
    control_points: int = 2
    max_displacement: float | list[float] = 4.0
    axes: list[int] | None = None
    p: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.control_points, bool) or int(self.control_points) != self.control_points \
                or int(self.control_points) < 2:
            raise MedsegError(f"{self.name}.control_points must be an integer of at least 2 (a cubic spline's "
                              f"support); got {self.control_points!r}")
        values = self.max_displacement if isinstance(self.max_displacement, (list, tuple)) else [self.max_displacement]
        try:
            ok = all(float(v) >= 0 and np.isfinite(float(v)) for v in values) and len(values) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise MedsegError(f"{self.name}.max_displacement must be a non-negative number of voxels (or one per "
                              f"axis); got {self.max_displacement!r}")
        if isinstance(self.max_displacement, tuple):
            self.max_displacement = list(self.max_displacement)

    def _limits(self, spatial_dims: int) -> np.ndarray:
        values = self.max_displacement if isinstance(self.max_displacement, list) else [self.max_displacement]
        if len(values) not in (1, spatial_dims):
            raise MedsegError(f"{self.name}.max_displacement has {len(values)} values for {spatial_dims}D data")
        limits = np.broadcast_to(np.asarray(values, dtype=np.float64), (spatial_dims,)).copy()
        if self.axes is not None:
            limits[[a for a in range(spatial_dims) if a not in self.axes]] = 0.0
        return limits

    def sample_coefficients(self, n: int, spatial_dims: int, generator: torch.Generator | None) -> np.ndarray:
        """``(n, D, *G)`` coefficients: uniform in ±max_displacement at the free points, 0 on the locked layer;
        every sample draws the same number of values, in a fixed order."""
        grid = control_grid_shape(self.control_points, spatial_dims)
        free = (n, spatial_dims) + (int(self.control_points),) * spatial_dims
        draws = (2.0 * torch.rand(free, generator=generator, dtype=torch.float64) - 1.0).numpy()
        draws *= self._limits(spatial_dims).reshape(1, spatial_dims, *([1] * spatial_dims))
        out = np.zeros((n, spatial_dims) + grid)
        out[(slice(None), slice(None)) + (slice(1, -1),) * spatial_dims] = draws
        return out

    def apply(self, image, label, selected, generator):
        d = image.ndim - 2
        self.check_axes(d)
        coefficients = self.sample_coefficients(image.shape[0], d, generator)
        if not bool(selected.any()):
            return image, label
        dtype = image.dtype if image.is_floating_point() else torch.float32
        images, labels = [], []
        for i in torch.nonzero(selected).flatten().tolist():
            img, lab = bspline_deform(image[i].detach().cpu().to(dtype).numpy(),
                                      None if label is None else label[i].detach().cpu().numpy(),
                                      coefficients[i], threads=torch.get_num_threads())
            images.append(torch.from_numpy(img))
            labels.append(None if lab is None else torch.from_numpy(lab))
        img_t = torch.stack(images).to(image.device)
        lab_t = None if label is None else torch.stack(labels).to(label.device)
        return (apply_selected(image, selected, img_t),
                None if label is None else apply_selected(label, selected, lab_t))


__all__ = ["RandomBSplineDeformation", "bspline_deform", "control_grid_shape"]
