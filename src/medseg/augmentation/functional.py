"""Deterministic twins of the random transforms: batched torch ops on ``(N, C, *S)`` images.

Every function takes explicit parameters (one set per sample), so a transform's result is a pure
function of its inputs; the ``Random*`` classes only sample those parameters. 2D (``S = (Y, X)``) and
3D (``S = (Z, Y, X)``) share one implementation. Coordinates, matrices and axes are in array-axis
order (axis 0 is the first spatial axis), like :class:`medseg.Image`.

Labels ``(N, 1, *S)`` are resampled with nearest neighbour, so they only ever take values already
present (plus the fill value for regions moved in from outside the image).
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch
import torch.nn.functional as F

from medseg.errors import MedsegError

Tensor = torch.Tensor


def check_batch(image: Tensor, label: Tensor | None) -> int:
    """Validate shapes; return the number of spatial dimensions."""
    if image.ndim not in (4, 5):
        raise MedsegError(f"augmentation expects images (N, C, Y, X) or (N, C, Z, Y, X); got shape {tuple(image.shape)}")
    if label is not None:
        if label.ndim != image.ndim or label.shape[0] != image.shape[0] or label.shape[2:] != image.shape[2:]:
            raise MedsegError(
                f"label of shape {tuple(label.shape)} does not match image {tuple(image.shape)}: "
                "expected (N, 1, *spatial) with the same N and spatial shape"
            )
    return image.ndim - 2


def _view(v: Tensor, ndim: int) -> Tensor:
    """Reshape per-sample (N,) or per-sample-channel (N, C) values to broadcast over (N, C, *S)."""
    return v.reshape(*v.shape, *([1] * (ndim - v.ndim)))


# --- spatial ---------------------------------------------------------------------------------------
def flip(image: Tensor, label: Tensor | None, axes: Sequence[int] | Tensor) -> tuple[Tensor, Tensor | None]:
    """Mirror along spatial axes.

    Parameters
    ----------
    image, label : Tensor
        ``(N, C, *S)`` and ``(N, 1, *S)`` (label may be None).
    axes : sequence of int or bool Tensor (N, D)
        Spatial axes flipped for every sample, or a per-sample, per-axis mask.

    Returns
    -------
    (Tensor, Tensor or None)

    Examples
    --------
    >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
    >>> flip(x, None, [1])[0].flatten().tolist()
    [1.0, 0.0, 3.0, 2.0]
    """
    d = check_batch(image, label)
    if not isinstance(axes, Tensor):
        dims = [2 + int(a) for a in axes]
        if any(not 2 <= a < 2 + d for a in dims):
            raise MedsegError(f"flip axes {list(axes)} outside 0..{d - 1}")
        return image.flip(dims) if dims else image, (label.flip(dims) if label is not None and dims else label)
    if axes.shape != (image.shape[0], d):
        raise MedsegError(f"per-sample flip mask must have shape {(image.shape[0], d)}; got {tuple(axes.shape)}")
    image, label = image.clone(), (label.clone() if label is not None else None)
    for a in range(d):
        sel = axes[:, a].to(image.device)
        if sel.any():
            image[sel] = image[sel].flip(a + 2)
            if label is not None:
                label[sel] = label[sel].flip(a + 2)
    return image, label


def _normalised_theta(matrix: Tensor, shape: Sequence[int]) -> Tensor:
    """Convert (N, D, D+1) voxel-space matrices (array order, centred) to affine_grid's theta.

    With ``align_corners=False`` a centred voxel coordinate ``c`` and grid coordinate ``u`` satisfy
    ``c = u * size / 2``; affine_grid orders coordinates (x, y, z), i.e. reversed array order.
    """
    d = len(shape)
    half = torch.tensor([s / 2.0 for s in shape], dtype=matrix.dtype, device=matrix.device)
    lin = matrix[:, :, :d] * half[None, None, :] / half[None, :, None]
    trans = matrix[:, :, d] / half[None, :]
    theta = torch.cat([lin, trans[..., None]], dim=2)
    rev = list(range(d - 1, -1, -1))
    return theta[:, rev][:, :, rev + [d]]


def sampling_grid(shape: Sequence[int], matrix: Tensor | None = None, displacement: Tensor | None = None) -> Tensor:
    """Grid for ``grid_sample``: input position = ``matrix @ [c, 1]`` + ``displacement(c)``.

    Parameters
    ----------
    shape : sequence of int
        ``(N, C, *S)`` of the batch.
    matrix : Tensor (N, D, D+1), optional
        Maps centred output voxel coordinates to centred input voxel coordinates (array order).
    displacement : Tensor (N, D, *S), optional
        Extra displacement in voxels (array order) at each output voxel.
    """
    n, d, spatial = shape[0], len(shape) - 2, list(shape[2:])
    if matrix is None:
        matrix = torch.eye(d, d + 1).expand(n, d, d + 1)
    matrix = matrix.to(torch.float32)
    if matrix.shape != (n, d, d + 1):
        raise MedsegError(f"affine matrix must have shape {(n, d, d + 1)}; got {tuple(matrix.shape)}")
    grid = F.affine_grid(_normalised_theta(matrix, spatial), list(shape), align_corners=False)
    if displacement is not None:
        if displacement.shape != (n, d, *spatial):
            raise MedsegError(f"displacement must have shape {(n, d, *spatial)}; got {tuple(displacement.shape)}")
        scale = torch.tensor([2.0 / s for s in spatial], dtype=grid.dtype, device=grid.device)
        disp = displacement.to(grid) * scale.reshape(1, d, *([1] * d))
        grid = grid + disp.flip(1).movedim(1, -1)  # (N, *S, D) in (x, y, z) order
    return grid


def warp(
    image: Tensor,
    label: Tensor | None,
    grid: Tensor,
    image_padding: str = "zeros",
    ignore_index: int | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Resample image (linear) and label (nearest) on the same grid.

    Out-of-image regions become 0 (``image_padding="zeros"``) or the edge value ("border") in the
    image, and ``ignore_index`` (default background 0) in the label.
    """
    if image_padding not in ("zeros", "border", "reflection"):
        raise MedsegError(f"image_padding must be 'zeros', 'border' or 'reflection'; got {image_padding!r}")
    dtype = image.dtype if image.is_floating_point() else torch.float32
    out = F.grid_sample(image.to(dtype), grid.to(dtype), mode="bilinear", padding_mode=image_padding, align_corners=False)
    if label is None:
        return out, None
    fill = 0 if ignore_index is None else int(ignore_index)
    # Shift so that zero padding lands on the fill value; nearest sampling copies values exactly
    # (float32 holds integers up to 2**24 exactly).
    shifted = label.to(torch.float32) - fill
    lab = F.grid_sample(shifted, grid.to(torch.float32), mode="nearest", padding_mode="zeros", align_corners=False)
    return out, (lab + fill).round().to(label.dtype)


def affine(
    image: Tensor,
    label: Tensor | None,
    matrix: Tensor,
    image_padding: str = "zeros",
    ignore_index: int | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Affine resampling with one ``affine_grid`` + ``grid_sample`` for image and label.

    Parameters
    ----------
    image, label : Tensor
        ``(N, C, *S)`` and ``(N, 1, *S)`` (label may be None).
    matrix : Tensor (N, D, D+1)
        Maps centred output voxel coordinates to centred input voxel coordinates, array order
        (so a rotation is about the patch centre, in voxel units).
    image_padding : {"zeros", "border", "reflection"}
        How the image is extended beyond its edge.
    ignore_index : int, optional
        Label value for regions moved in from outside; default background 0.

    Examples
    --------
    >>> x = torch.arange(9.0).reshape(1, 1, 3, 3)
    >>> m = torch.tensor([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]])  # transpose
    >>> torch.equal(affine(x, None, m)[0], x.transpose(2, 3))
    True
    """
    check_batch(image, label)
    grid = sampling_grid(image.shape, matrix=matrix.to(image.device))
    return warp(image, label, grid, image_padding, ignore_index)


def elastic(
    image: Tensor,
    label: Tensor | None,
    displacement: Tensor,
    image_padding: str = "zeros",
    ignore_index: int | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Resample with a dense displacement field ``(N, D, *S)`` given in voxels (array order)."""
    check_batch(image, label)
    grid = sampling_grid(image.shape, displacement=displacement.to(image.device))
    return warp(image, label, grid, image_padding, ignore_index)


def rotation_scale_matrix(angles: Tensor, scales: Tensor, axes: Sequence[int], spatial_dims: int) -> Tensor:
    """Sampling matrices (N, D, D) that rotate and scale the content in the sub-space of ``axes``.

    Parameters
    ----------
    angles : Tensor (N, P)
        Radians, one per rotation plane: ``P = 1`` for two axes (the plane they span), ``P = 3`` for
        three axes (planes (1, 2), (0, 2), (0, 1), i.e. about axes 0, 1, 2).
    scales : Tensor (N, D)
        Zoom factor per axis (> 1 enlarges the content).
    axes : sequence of int
        The spatial axes involved (others are left alone).
    spatial_dims : int
        D.

    Returns
    -------
    Tensor (N, D, D)
        Inverse of the forward map ``R @ diag(scales)``, i.e. output → input coordinates.
    """
    n = angles.shape[0]
    axes = sorted(int(a) for a in axes)
    planes = {2: [(axes[0], axes[1])], 3: [(1, 2), (0, 2), (0, 1)]}.get(len(axes), [])
    forward = torch.diag_embed(scales.to(torch.float32))
    for k, (i, j) in enumerate(planes):
        c, s = torch.cos(angles[:, k]), torch.sin(angles[:, k])
        r = torch.eye(spatial_dims).repeat(n, 1, 1)
        r[:, i, i], r[:, i, j], r[:, j, i], r[:, j, j] = c, -s, s, c
        forward = r @ forward
    return torch.linalg.inv(forward)


# --- intensity -------------------------------------------------------------------------------------
def brightness(image: Tensor, factor: Tensor) -> Tensor:
    """Multiply intensities by ``factor`` ((N,) per sample or (N, C) per channel)."""
    return image * _view(factor.to(image), image.ndim)


def contrast(image: Tensor, factor: Tensor, preserve_range: bool = True) -> Tensor:
    """Scale deviations from the per-sample, per-channel mean by ``factor`` ((N,) or (N, C)).

    With ``preserve_range`` the result is clipped to each channel's original range (nnU-Net).
    """
    dims = tuple(range(2, image.ndim))
    mean = image.mean(dim=dims, keepdim=True)
    out = (image - mean) * _view(factor.to(image), image.ndim) + mean
    if preserve_range:
        out = torch.clamp(out, image.amin(dim=dims, keepdim=True), image.amax(dim=dims, keepdim=True))
    return out


def gamma(image: Tensor, gamma: Tensor) -> Tensor:
    """Gamma on each channel mapped to [0, 1] by its own range, then mapped back (range kept)."""
    dims = tuple(range(2, image.ndim))
    lo, hi = image.amin(dim=dims, keepdim=True), image.amax(dim=dims, keepdim=True)
    span = (hi - lo).clamp_min(1e-8)
    unit = ((image - lo) / span).clamp(0, 1)
    return unit.pow(_view(gamma.to(image), image.ndim)) * span + lo


def polynomial_exponents(order: int, spatial_dims: int) -> list[tuple[int, ...]]:
    """Exponents of the monomials of total degree ≤ ``order`` in ``spatial_dims`` coordinates, constant first.

    Examples
    --------
    >>> polynomial_exponents(1, 2)
    [(0, 0), (0, 1), (1, 0)]
    """
    return [e for e in itertools.product(range(order + 1), repeat=spatial_dims) if sum(e) <= order]


def bias_field(image: Tensor, coefficients: Tensor, order: int) -> Tensor:
    """Multiply each channel's intensities above its minimum by a smooth field ``exp(polynomial)``.

    The polynomial has degree ≤ ``order`` in coordinates running from -1 to 1 across the image, with
    ``coefficients`` (N, T) in the order of :func:`polynomial_exponents`. The channel's minimum stands in
    for the scanner's zero, which a normalised image no longer has, so the field scales signal, not offset.
    """
    shape = image.shape[2:]
    exponents = polynomial_exponents(order, len(shape))
    if coefficients.shape != (image.shape[0], len(exponents)):
        raise MedsegError(f"bias_field: coefficients of shape {tuple(coefficients.shape)} for {image.shape[0]} "
                          f"sample(s) and {len(exponents)} monomials")
    coords = torch.meshgrid(*[torch.linspace(-1, 1, s, dtype=image.dtype, device=image.device) for s in shape],
                            indexing="ij")
    monomials = torch.stack([math.prod(c**k for c, k in zip(coords, e)) for e in exponents])
    log_field = torch.einsum("nt,t...->n...", coefficients.to(image), monomials).unsqueeze(1)
    lo = image.amin(dim=tuple(range(2, image.ndim)), keepdim=True)
    return lo + (image - lo) * log_field.exp()


def add_noise(image: Tensor, noise: Tensor, std: Tensor) -> Tensor:
    """``image + std * noise`` with ``noise`` standard normal of the image's shape and ``std`` (N,)."""
    return image + noise.to(image) * _view(std.to(image), image.ndim)


def gaussian_kernels(sigma: Tensor) -> Tensor:
    """1D normalised Gaussian kernels (K, 2r+1) for sigmas (K,), r = ceil(3 max σ); σ = 0 gives a delta."""
    radius = max(int(torch.ceil(3 * sigma.max()).item()), 1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    s = sigma.to(torch.float32).clamp_min(1e-6)[:, None]
    k = torch.exp(-0.5 * (t[None] / s) ** 2)
    return k / k.sum(dim=1, keepdim=True)


def gaussian_blur(image: Tensor, sigma: Tensor, axes: Sequence[int] | None = None) -> Tensor:
    """Separable Gaussian smoothing with a per-sample σ (voxels), edges replicated.

    Parameters
    ----------
    image : Tensor (N, C, *S)
    sigma : Tensor (N,) or (N, D)
        Per sample, or per sample and spatial axis (array order).
    axes : sequence of int, optional
        Axes smoothed (default all), e.g. in-plane only for thick-slice volumes.
    """
    d = image.ndim - 2
    n, c = image.shape[:2]
    axes = list(range(d)) if axes is None else [int(a) for a in axes]
    sigma = sigma.reshape(n, -1).expand(n, d) if sigma.ndim == 1 else sigma
    dtype = image.dtype if image.is_floating_point() else torch.float32
    x = image.to(dtype).reshape(1, n * c, *image.shape[2:])  # samples × channels as conv groups
    for a in axes:
        k = gaussian_kernels(sigma[:, a]).to(x)  # (N, K)
        r = (k.shape[1] - 1) // 2
        k = k.repeat_interleave(c, dim=0)  # (N*C, K)
        shape = [1] * d
        shape[a] = k.shape[1]
        weight = k.reshape(n * c, 1, *shape)
        pad = [0, 0] * d
        pad[2 * (d - 1 - a)] = pad[2 * (d - 1 - a) + 1] = r  # F.pad lists the last axis first
        xp = F.pad(x, pad, mode="replicate")
        x = (F.conv2d if d == 2 else F.conv3d)(xp, weight, groups=n * c)
    return x.reshape(image.shape)


def low_resolution(image: Tensor, zoom: Tensor, axes: Sequence[int] | None = None) -> Tensor:
    """Simulate a coarser acquisition: downsample by ``zoom`` (N,) with nearest, upsample linearly."""
    d = image.ndim - 2
    axes = list(range(d)) if axes is None else [int(a) for a in axes]
    mode = "bilinear" if d == 2 else "trilinear"
    dtype = image.dtype if image.is_floating_point() else torch.float32
    out = []
    for i in range(image.shape[0]):
        z = float(zoom[i])
        x = image[i : i + 1].to(dtype)
        if z >= 1.0:
            out.append(x)
            continue
        small = [max(1, round(s * z)) if a in axes else s for a, s in enumerate(image.shape[2:])]
        down = F.interpolate(x, size=small, mode="nearest")
        out.append(F.interpolate(down, size=list(image.shape[2:]), mode=mode, align_corners=False))
    return torch.cat(out)
