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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from medseg.errors import MedsegError
from medseg.tiling.tta import mirror_axes_combinations, predict_mirrored  # noqa: F401 (re-export)

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
    return [round(actual * i) for i in range(count)]


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


#: Bytes of float32 logits finalised at once. Softmax / argmax temporaries are ~6× this and, being
#: under glibc's mmap threshold, stay in the heap: 32 MiB cost ~200 MiB peak RSS on a 96×512×400 volume,
#: 4 MiB ~20 MiB, and was no slower (measured with a 1×1×1 convolution, 2 classes).
FINALISE_BYTES = 4 * 2**20


def _as_tensor_network(network: Callable) -> Callable[[torch.Tensor], torch.Tensor]:
    """Accept any ``predict_fn(batch) -> logits``: numpy outputs (e.g. ONNX Runtime) become tensors."""

    def run(batch: torch.Tensor):
        out = network(batch)
        if isinstance(out, dict):
            return out
        return out if isinstance(out, torch.Tensor) else torch.as_tensor(np.asarray(out))

    return run


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
        Any ``predict_fn(batch) -> logits``: maps a float32 tensor ``(N, C, *patch_size)`` to logits
        ``(N, K, *patch_size)`` as a tensor, a numpy array (e.g. an ONNX Runtime session's output) or
        the network contract's dict.
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
        Accumulate chunk by chunk along the first axis; default: on for 3D. Peak memory is then the
        input, the compact outputs and ``K`` (labels only) or ``K + 1`` float32 rows × one tile batch's
        extent along axis 0.
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
    on_cpu = torch.device(device).type == "cpu"

    crop = tuple(slice(b, b + s) for b, s in zip(pad_before, spatial))
    p_dtype = np.dtype(probabilities_dtype)
    batch_size = max(1, int(batch_size))
    batches = [tiles[b : b + batch_size] for b in range(0, len(tiles), batch_size)]
    predict_fn = _as_tensor_network(network)

    # Accumulator window along axis 0: rows [lo, lo + window). After each batch the rows above the next
    # batch's first tile are final and flushed, so the window only has to span one batch: from its first
    # tile's start to its last tile's end (usually one patch; more when a batch spans several first-axis
    # starts, e.g. one tile per slice for a 2D network on a volume). Computed exactly, not bounded from
    # batch_size × step: for 512×512×400 with 64³ tiles that bound was 2.5× too large.
    if streaming:
        window = max(min(padded[0], chunk[-1][0] + patch[0]) - chunk[0][0] for chunk in batches)
    else:
        window = padded[0]
    k: int | None = None
    acc: torch.Tensor | None = None
    # numpy-owned buffers viewed as tensors (zero copy): their memory is visible to tracemalloc, which
    # the memory test relies on; the big arrays all live here, torch temporaries are tile- or chunk-sized
    def new_buffer(shape: tuple[int, ...]) -> torch.Tensor:
        if on_cpu:
            return torch.from_numpy(np.zeros(shape, dtype=np.float32))
        return torch.zeros(shape, dtype=torch.float32, device=device)

    if activation not in ("softmax", "sigmoid", "none"):
        raise MedsegError(f"unknown activation '{activation}' (softmax, sigmoid, none)")
    # Labels only, by argmax: softmax / sigmoid and the division by the (positive, per-voxel) weight sum
    # are monotone, so the argmax of the weighted logit sums is the label. No weight sum is then
    # accumulated and no probabilities are computed (1/(K+1) less accumulation work and memory).
    labels_only_argmax = label_fn is None and return_labels and not return_probabilities
    wsum = None if labels_only_argmax else new_buffer((window,) + padded[1:])
    labels_out: np.ndarray | None = None
    probs_out: np.ndarray | None = None
    lo = 0

    def flush(upto: int) -> None:
        """Finalise rows [lo, upto), then slide the window up by as many rows, in place."""
        nonlocal lo, labels_out, probs_out
        n = upto - lo
        if n <= 0:
            return
        if return_labels and labels_out is None:
            # argmax of K ≤ 256 classes fits uint8 (the result's dtype anyway): no int16 copy at the end
            compact = label_fn is None and k <= 256
            labels_out = np.zeros(padded, dtype=np.uint8 if compact else np.int16)
        if return_probabilities and probs_out is None:
            probs_out = np.zeros((k,) + padded, dtype=p_dtype)
        # finalise a few rows at a time: softmax / argmax temporaries stay ~FINALISE_BYTES, not K × n rows
        row_bytes = 4 * k * math.prod(padded[1:])
        rows = max(1, min(n, FINALISE_BYTES // max(1, row_bytes)))
        for r in range(0, n, rows):
            m = min(rows, n - r)
            if labels_only_argmax:
                lab, probs = torch.argmax(acc[:, r : r + m], 0), None
            else:
                lab, probs = _finalise(acc[:, r : r + m], wsum[r : r + m].unsqueeze(0), activation, label_fn)
            if labels_out is not None:
                labels_out[lo + r : lo + r + m] = lab.cpu().numpy()
            if probs_out is not None:
                probs_out[:, lo + r : lo + r + m] = probs.cpu().numpy()
        if streaming and upto < padded[0]:
            # shift rows [n, window) to [0, window - n) in blocks of at most n rows (source and target
            # never overlap, so no temporary copy of the window), then clear the freed tail
            keep = window - n
            for j in range(0, keep, n):
                m = min(n, keep - j)
                acc[:, j : j + m].copy_(acc[:, j + n : j + n + m])
                if wsum is not None:
                    wsum[j : j + m].copy_(wsum[j + n : j + n + m])
            acc[:, max(keep, 0) :].zero_()
            if wsum is not None:
                wsum[max(keep, 0) :].zero_()
        lo = upto

    for i, chunk in enumerate(batches):
        batch = torch.stack(
            [x[(slice(None),) + tuple(slice(s, s + p) for s, p in zip(t, patch))] for t in chunk]
        ).to(device)
        out = predict_mirrored(predict_fn, batch, mirror_axes)
        if out.shape[2:] != batch.shape[2:]:
            raise MedsegError(f"network returned spatial size {tuple(out.shape[2:])} for tiles {patch}")
        if acc is None:
            k = int(out.shape[1])
            if num_classes is not None and k != num_classes:
                raise MedsegError(f"network returned {k} channels, expected {num_classes}")
            acc = new_buffer((k, window) + padded[1:])
        out = out.to(device=weight.device, dtype=torch.float32)
        for t, o in zip(chunk, out):
            region = (slice(t[0] - lo, t[0] - lo + patch[0]),) + tuple(
                slice(s, s + p) for s, p in zip(t[1:], patch[1:])
            )
            acc[(slice(None),) + region].addcmul_(o, weight)
            if wsum is not None:
                wsum[region] += weight
        if progress is not None:
            progress(min((i + 1) * batch_size, len(tiles)), len(tiles))
        if streaming:
            # every tile still to come starts at or after this row: rows above it are final
            flush(batches[i + 1][0][0] if i + 1 < len(batches) else padded[0])
    if not streaming:
        flush(padded[0])

    labels = labels_out[crop] if labels_out is not None else None
    probs = probs_out[(slice(None),) + crop] if probs_out is not None else None
    if labels is not None and labels.dtype != np.uint8 and labels.max(initial=0) < 256 and labels.min(initial=0) >= 0:
        labels = labels.astype(np.uint8)
    return SlidingWindowResult(
        np.ascontiguousarray(labels) if labels is not None else None,
        np.ascontiguousarray(probs) if probs is not None else None,
    )
