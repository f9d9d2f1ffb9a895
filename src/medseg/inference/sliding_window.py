"""Sliding-window inference, dimension-agnostic: Gaussian importance weighting, configurable overlap,
batched tiles, optional mirroring, and streaming accumulation for volumes.

Streaming: tiles are visited in order of their start along the first spatial axis. Once every tile
that touches a row (slice) has been added, that row is final: it is normalised, turned into
probabilities / labels, written to the (compact) output and dropped from the float32 accumulator.
The accumulator therefore only spans about one patch along the first axis, whatever the volume size,
so memory does not grow with ``C × volume`` in float32 (the failure users report in MONAI#6427).
Both paths add the same tiles in the same order, so they agree bit for bit.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medseg.errors import MedsegError
from medseg.inference.tta import mirror_axes_combinations, predict_mirrored  # noqa: F401 (re-export)

Network = Callable[[torch.Tensor], torch.Tensor]


def tile_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Evenly spaced tile starts covering ``[0, size)`` with at least ``overlap`` fractional overlap.

    Examples
    --------
    >>> tile_starts(100, 64, 0.5)
    [0, 18, 36]
    >>> tile_starts(64, 64, 0.5)
    [0]
    """
    if size <= patch:
        return [0]
    if not 0.0 <= overlap < 1.0:
        raise MedsegError(f"overlap must lie in [0, 1), not {overlap}")
    step = max(1, int(patch * (1.0 - overlap)))
    count = math.ceil((size - patch) / step) + 1
    actual = (size - patch) / (count - 1)
    return [int(round(actual * i)) for i in range(count)]


@lru_cache(maxsize=8)
def _gaussian_cached(patch_size: tuple[int, ...], sigma_scale: float) -> torch.Tensor:
    grids = []
    for p in patch_size:
        x = torch.arange(p, dtype=torch.float64) - (p - 1) / 2.0
        sigma = max(p * sigma_scale, 1e-6)
        grids.append(torch.exp(-0.5 * (x / sigma) ** 2))
    g = grids[0]
    for other in grids[1:]:
        g = g[..., None] * other
    g = g / g.max()
    # no zero weights: border voxels of a tile still count where no other tile reaches
    g = torch.clamp(g, min=float(g[g > 0].min()), max=1.0)
    return g.to(torch.float32)


def gaussian_importance(patch_size: Sequence[int], sigma_scale: float = 0.125) -> torch.Tensor:
    """Gaussian weight map of a tile (max 1, sigma = ``sigma_scale`` × patch size per axis)."""
    return _gaussian_cached(tuple(int(p) for p in patch_size), float(sigma_scale)).clone()


@dataclass
class SlidingWindowResult:
    """Outputs on the input grid: ``labels`` (``*S``) and/or ``probabilities`` (``K, *S``)."""

    labels: np.ndarray | None
    probabilities: np.ndarray | None


def _finalise(
    summed: torch.Tensor,
    weights: torch.Tensor,
    activation: str,
    label_fn: Callable[[torch.Tensor], torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = summed / weights
    if activation == "softmax":
        probs = torch.softmax(logits, 0)
    elif activation == "sigmoid":
        probs = torch.sigmoid(logits)
    elif activation == "none":
        probs = logits
    else:
        raise MedsegError(f"unknown activation '{activation}' (softmax, sigmoid, none)")
    labels = label_fn(probs) if label_fn is not None else torch.argmax(probs, 0)
    return labels, probs


@torch.no_grad()
def sliding_window_inference(
    image: np.ndarray | torch.Tensor,
    network: Network,
    patch_size: Sequence[int],
    *,
    num_classes: int | None = None,
    overlap: float = 0.5,
    batch_size: int = 4,
    sigma_scale: float = 0.125,
    mirror_axes: Sequence[int] = (),
    activation: str = "softmax",
    label_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    return_labels: bool = True,
    return_probabilities: bool = False,
    probabilities_dtype: np.dtype | str = np.float32,
    streaming: bool | None = None,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> SlidingWindowResult:
    """Predict a whole image tile by tile.

    Parameters
    ----------
    image : ndarray or Tensor
        ``(C, *S)`` preprocessed image, 2D or 3D.
    network : callable
        Maps ``(N, C, *patch_size)`` to logits ``(N, K, *patch_size)`` (or the contract's dict).
    patch_size : sequence of int
        Tile size; an image smaller than the tile is padded with zeros and cropped back.
    num_classes : int, optional
        ``K``; found from the first tile when omitted.
    overlap : float
        Fractional overlap of neighbouring tiles (0.5 = nnU-Net).
    batch_size : int
        Tiles per network call.
    sigma_scale : float
        Gaussian sigma as a fraction of the tile size (1/8 as in nnU-Net).
    mirror_axes : sequence of int
        Spatial axes (0-based) to mirror for test-time augmentation; empty = off.
    activation : {"softmax", "sigmoid", "none"}
        Applied to the averaged logits; "none" returns averaged logits as ``probabilities``.
    label_fn : callable, optional
        ``(K, *chunk) -> (*chunk)`` labels from activated outputs; default argmax over K.
    return_labels, return_probabilities : bool
    probabilities_dtype : dtype
        Output dtype of the probabilities (float16 halves their memory).
    streaming : bool, optional
        Accumulate chunk by chunk along the first axis; default: on for 3D.
    device : str or torch.device
    progress : callable, optional
        Called as ``progress(done_tiles, total_tiles)``.

    Returns
    -------
    SlidingWindowResult

    Examples
    --------
    >>> net = lambda x: torch.ones(x.shape[0], 2, *x.shape[2:]) * torch.tensor([0.0, 1.0]).view(1, 2, 1, 1)
    >>> res = sliding_window_inference(np.zeros((1, 50, 70)), net, (32, 32), return_probabilities=True)
    >>> res.labels.shape, bool((res.labels == 1).all())
    ((50, 70), True)
    """
    x = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image).float()
    if x.ndim < 3:
        raise MedsegError(f"sliding-window input must be (C, *S); got shape {tuple(x.shape)}")
    spatial = tuple(x.shape[1:])
    d = len(spatial)
    patch = tuple(int(p) for p in patch_size)
    if len(patch) != d:
        raise MedsegError(f"patch size {patch} does not match a {d}D image")
    # pad images smaller than the tile (symmetrically, cropped back at the end)
    pad_before = [max(0, (p - s) // 2) for p, s in zip(patch, spatial)]
    pad_after = [max(0, p - s) - b for p, s, b in zip(patch, spatial, pad_before)]
    if any(pad_before) or any(pad_after):
        pads = []
        for b, a in zip(reversed(pad_before), reversed(pad_after)):
            pads += [b, a]
        x = F.pad(x, pads)
    padded = tuple(x.shape[1:])
    starts_per_axis = [tile_starts(s, p, overlap) for s, p in zip(padded, patch)]
    tiles = list(itertools.product(*starts_per_axis))  # sorted by first-axis start
    weight = gaussian_importance(patch, sigma_scale).to(device)
    if streaming is None:
        streaming = d == 3
    mirror_axes = tuple(mirror_axes)
    if any(a < 0 or a >= d for a in mirror_axes):
        raise MedsegError(f"mirror axes {mirror_axes} outside 0..{d - 1}")

    crop = tuple(slice(b, b + s) for b, s in zip(pad_before, spatial))
    labels_out = np.zeros(padded, dtype=np.int16) if return_labels else None
    probs_out = None
    p_dtype = np.dtype(probabilities_dtype)
    batch_size = max(1, int(batch_size))

    # Accumulator window along axis 0: rows [lo, lo + window). Tiles are batched in first-axis order
    # (a batch may span several first-axis starts, e.g. one tile per slice for a 2D network on a volume);
    # a batch starting at row lo ends at most (batch_size - 1) steps + one patch further.
    first_starts = starts_per_axis[0]
    max_step = max(np.diff(first_starts)) if len(first_starts) > 1 else 0
    window = min(padded[0], patch[0] + max(batch_size - 1, 0) * int(max_step)) if streaming else padded[0]
    acc: torch.Tensor | None = None
    wsum = torch.zeros((window,) + padded[1:], dtype=torch.float32, device=device)
    lo = 0

    def flush(upto: int) -> None:
        """Finalise rows [lo, upto) and slide the window."""
        nonlocal acc, wsum, lo, probs_out
        n = upto - lo
        if n <= 0:
            return
        lab, probs = _finalise(acc[:, :n], wsum[:n].unsqueeze(0), activation, label_fn)
        if labels_out is not None:
            labels_out[lo:upto] = lab.cpu().numpy().astype(np.int16)
        if return_probabilities:
            if probs_out is None:
                probs_out = np.zeros((acc.shape[0],) + padded, dtype=p_dtype)
            probs_out[:, lo:upto] = probs.cpu().numpy().astype(p_dtype)
        acc = torch.cat([acc[:, n:], torch.zeros_like(acc[:, :n])], 1)
        wsum = torch.cat([wsum[n:], torch.zeros_like(wsum[:n])], 0)
        lo = upto

    for b in range(0, len(tiles), batch_size):
        chunk = tiles[b : b + batch_size]
        batch = torch.stack(
            [x[(slice(None),) + tuple(slice(s, s + p) for s, p in zip(t, patch))] for t in chunk]
        ).to(device)
        out = predict_mirrored(network, batch, mirror_axes)
        if out.shape[2:] != batch.shape[2:]:
            raise MedsegError(f"network returned spatial size {tuple(out.shape[2:])} for tiles {patch}")
        if acc is None:
            k = out.shape[1]
            if num_classes is not None and k != num_classes:
                raise MedsegError(f"network returned {k} channels, expected {num_classes}")
            acc = torch.zeros((k, window) + padded[1:], dtype=torch.float32, device=device)
        for t, o in zip(chunk, out):
            region = (slice(t[0] - lo, t[0] - lo + patch[0]),) + tuple(
                slice(s, s + p) for s, p in zip(t[1:], patch[1:])
            )
            acc[(slice(None),) + region] += o * weight
            wsum[region] += weight
        if progress is not None:
            progress(min(b + batch_size, len(tiles)), len(tiles))
        if streaming:
            # every tile still to come starts at or after this row: rows above it are final
            flush(tiles[b + batch_size][0] if b + batch_size < len(tiles) else padded[0])
    if not streaming:
        flush(padded[0])

    labels = labels_out[crop] if labels_out is not None else None
    probs = probs_out[(slice(None),) + crop] if probs_out is not None else None
    if labels is not None and labels.max(initial=0) < 256 and labels.min(initial=0) >= 0:
        labels = labels.astype(np.uint8)
    return SlidingWindowResult(
        np.ascontiguousarray(labels) if labels is not None else None,
        np.ascontiguousarray(probs) if probs is not None else None,
    )
