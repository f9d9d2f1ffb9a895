"""Graph-based segmentation: random walker (scikit-image) and a binary graph cut (max-flow/min-cut on the
voxel grid with PyMaxflow, Boykov & Jolly 2001)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from medseg.classical._common import (
    Scalar,
    as_scalar,
    check_polarity,
    finish,
    seed_indices,
    seed_label_values,
)
from medseg.classical.registry import register
from medseg.classical.threshold import otsu_value
from medseg.errors import MedsegError
from medseg.image import Image, check_roi

__all__ = ["segment_random_walker", "segment_graph_cut"]


@register("random_walker", seeds="required", output="regions", family="graph",
          summary="random walker from labelled seeds (Grady 2006)")
def segment_random_walker(
    image: np.ndarray | Image,
    seeds: Sequence[Sequence[float]],
    *,
    seed_labels: Sequence[int] | None = None,
    beta: float = 130.0,
    physical: bool = False,
    roi: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Label each voxel with the seed label a random walker starting there most likely reaches first.

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray or one-channel Image
        Grey-level image.
    seeds : sequence of points
        Voxel indices (array order) or physical points with ``physical=True``; at least two labels.
    seed_labels : sequence of int, optional
        Label of each seed (>= 1); default seed ``i`` gets ``i + 1``.
    beta : float
        Edge weight sensitivity (scikit-image normalises it by the image's standard deviation).
    physical : bool
        Seeds are physical points (mm, array-axis order).
    roi : ndarray of bool, optional
        Voxels outside it are not part of the graph and are labelled 0.
    spacing : sequence of float, optional
        Voxel size, used to map physical seeds (edge weights are isotropic, see the note in the code).

    Returns
    -------
    ndarray of uint8
        The seed labels.

    Examples
    --------
    >>> x = np.zeros((20, 20)); x[5:15, 5:15] = 1.0
    >>> lab = segment_random_walker(x, seeds=[(10, 10), (1, 1)])
    >>> int((lab == 1).sum())
    100
    """
    from skimage.segmentation import random_walker

    img = as_scalar(image, spacing, "random_walker")
    roi = check_roi(roi, img.array.shape)
    index = seed_indices(seeds, img, physical)
    values = seed_label_values(seed_labels, len(index))
    if np.unique(values).size < 2:
        raise MedsegError("seeds: random walker needs seeds of at least two different labels (seed_labels)")
    markers = np.zeros(img.array.shape, np.int32)
    if roi is not None:
        markers[~roi] = -1  # inactive: excluded from the graph
    markers[tuple(index.T)] = values
    # scikit-image's edge weights exp(-beta |dI|^2 / (10 std)) are not scale-free: they assume [0, 1]
    # intensities, so rescale (on raw CT/MR values nearly all weights underflow and CG does not converge).
    inside = img.array[roi] if roi is not None else img.array
    lo, hi = float(inside.min()), float(inside.max())
    if hi <= lo:
        raise MedsegError("image is constant (inside the roi): there is no contrast to segment")
    unit = np.clip((img.array.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0)
    # spacing is deliberately not passed on: with scikit-image 0.26 any spacing of 2 along one axis sent
    # every voxel of our 3D test phantom to one label in all solver modes (measured; spacing 1.2 was fine),
    # so the graph uses isotropic neighbour weights and spacing only maps physical seeds.
    labels = random_walker(unit, markers, beta=beta, mode="cg_j", tol=1e-3)
    labels = np.where(labels < 0, 0, labels)
    return finish(labels, roi)


def _gaussian_cost(values: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Negative log-likelihood of a Gaussian intensity model (the graph-cut data term)."""
    std = max(std, 1e-6)
    return 0.5 * ((values - mean) / std) ** 2 + np.log(std)


def _model(array: np.ndarray, points: np.ndarray, radius: int = 2) -> tuple[float, float]:
    vals = []
    for p in points:
        sl = tuple(slice(max(int(c) - radius, 0), int(c) + radius + 1) for c in p)
        vals.append(array[sl].ravel())
    v = np.concatenate(vals)
    return float(v.mean()), float(v.std())


def _pairwise(img: Scalar, smoothness: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Boykov–Jolly boundary weights ``λ exp(-ΔI² / 2σ²) / distance`` per axis, σ² the mean squared
    neighbour difference (so the weights do not depend on the intensity scale)."""
    a = img.array.astype(np.float64)
    diffs = [np.diff(a, axis=k) for k in range(a.ndim)]
    sigma2 = max(float(np.mean(np.concatenate([d.ravel() ** 2 for d in diffs]))), 1e-12)
    out = []
    for axis, d in enumerate(diffs):
        w = np.zeros(a.shape)
        sl = [slice(None)] * a.ndim
        sl[axis] = slice(0, a.shape[axis] - 1)
        w[tuple(sl)] = smoothness * np.exp(-(d**2) / (2 * sigma2)) / img.spacing[axis]
        structure = np.zeros((3,) * a.ndim)
        centre = [1] * a.ndim
        centre[axis] = 2
        structure[tuple(centre)] = 1  # edge from p to p + e_axis
        out.append((w, structure))
    return out


@register("graph_cut", seeds="optional", family="graph",
          summary="binary graph cut (max-flow) with a Gaussian intensity model and seeds as hard constraints")
def segment_graph_cut(
    image: np.ndarray | Image,
    seeds: Sequence[Sequence[float]] | None = None,
    *,
    seed_labels: Sequence[int] | None = None,
    smoothness: float = 1.0,
    physical: bool = False,
    roi: np.ndarray | None = None,
    polarity: str = "bright",
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Binary segmentation by a minimum s-t cut: a Gaussian intensity likelihood per class (data term)
    plus a contrast-sensitive smoothness term between face neighbours, weighted by 1/spacing.

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray or one-channel Image
        Grey-level image.
    seeds : sequence of points, optional
        Hard constraints: label 1 = object, label 2 = background (see ``seed_labels``). The class
        models are estimated around the seeds of each class; without seeds of a class its model comes
        from Otsu's split of the histogram (object = the ``polarity`` side).
    seed_labels : sequence of int, optional
        1 (object) or 2 (background) per seed; default: the first seed is object, the second background.
    smoothness : float
        Weight λ of the pairwise term (larger: smoother boundaries, fewer small islands).
    physical : bool
        Seeds are physical points (mm, array-axis order).
    roi : ndarray of bool, optional
        Voxels outside it are forced to background.
    polarity : {"bright", "dark"}
        Which Otsu class is the object when a class has no seeds.
    spacing : sequence of float, optional
        Voxel size: pairwise weights are divided by the neighbour distance.

    Returns
    -------
    ndarray of uint8
        0/1 label map.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(0, 1, (30, 30)); x[10:20, 10:20] += 3
    >>> lab = segment_graph_cut(x, smoothness=5.0)
    >>> int(lab[10:20, 10:20].sum()) > 95, int(lab.sum()) < 115
    (True, True)
    """
    import maxflow

    img = as_scalar(image, spacing, "graph_cut")
    roi = check_roi(roi, img.array.shape)
    if smoothness < 0:
        raise MedsegError(f"smoothness must be >= 0; got {smoothness}")
    index = seed_indices(seeds, img, physical, required=False)
    values = seed_label_values(seed_labels, len(index))
    if np.any((values != 1) & (values != 2)):
        raise MedsegError(f"seed_labels for graph_cut must be 1 (object) or 2 (background); got {values.tolist()}")
    array = img.array.astype(np.float64)
    inside = array[roi] if roi is not None else array.ravel()
    fg_pts, bg_pts = index[values == 1], index[values == 2]
    if len(fg_pts) == 0 or len(bg_pts) == 0:
        t = otsu_value(inside)
        bright = check_polarity(polarity)
        hi, lo = inside[inside > t], inside[inside <= t]
        obj, back = (hi, lo) if bright else (lo, hi)
    fg = _model(array, fg_pts) if len(fg_pts) else (float(obj.mean()), float(obj.std()))
    bg = _model(array, bg_pts) if len(bg_pts) else (float(back.mean()), float(back.std()))
    cost_fg = _gaussian_cost(array, *fg)
    cost_bg = _gaussian_cost(array, *bg)
    base = np.minimum(cost_fg, cost_bg)
    cost_fg, cost_bg = cost_fg - base, cost_bg - base
    hard = float(cost_fg.max() + cost_bg.max()) * 10 + 1e6
    if roi is not None:
        cost_fg[~roi], cost_bg[~roi] = hard, 0.0
    cost_fg[tuple(fg_pts.T)], cost_bg[tuple(fg_pts.T)] = 0.0, hard
    cost_fg[tuple(bg_pts.T)], cost_bg[tuple(bg_pts.T)] = hard, 0.0

    graph = maxflow.Graph[float]()
    nodes = graph.add_grid_nodes(array.shape)
    for weights, structure in _pairwise(img, smoothness):
        graph.add_grid_edges(nodes, weights=weights, structure=structure, symmetric=True)
    # Object = source side: a node cut to the sink (background) pays its source capacity.
    graph.add_grid_tedges(nodes, cost_bg, cost_fg)
    graph.maxflow()
    sink = graph.get_grid_segments(nodes)
    return finish(~sink, roi)
