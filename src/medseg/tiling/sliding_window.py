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
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from medseg.constants import TILE_BATCH
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
    else:  # "none" (sliding_window_inference has checked the name)
        probs = logits
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
    batch_size: int = TILE_BATCH,
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
    if activation not in ("softmax", "sigmoid", "none"):
        raise MedsegError(f"unknown activation '{activation}' (softmax, sigmoid, none)")
    with warnings.catch_warnings():  # a read-only array (a memory-mapped training cache) is only read here
        warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)
        x = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image).float()
    if x.ndim < 3:
        raise MedsegError(f"sliding-window input must be (C, *S); got shape {tuple(x.shape)}")
    spatial = tuple(x.shape[1:])
    d = len(spatial)
    patch = tuple(int(p) for p in patch_size)
    if len(patch) != d:
        raise MedsegError(f"patch size {patch} does not match a {d}D image")
    mirror_axes = tuple(mirror_axes)
    if any(a < 0 or a >= d for a in mirror_axes):
        raise MedsegError(f"mirror axes {mirror_axes} outside 0..{d - 1}")
    x, crop = _pad_to_patch(x, patch)
    padded = tuple(x.shape[1:])
    tiles = list(itertools.product(*(tile_starts(s, p, overlap) for s, p in zip(padded, patch))))  # by row
    batch_size = max(1, int(batch_size))
    batches = [tiles[b : b + batch_size] for b in range(0, len(tiles), batch_size)]
    weight = gaussian_importance(patch, sigma_scale).to(device)
    streaming = d == 3 if streaming is None else streaming
    # The window only has to span one batch: from its first tile's start to its last tile's end (usually
    # one patch; more when a batch spans several first-axis starts, e.g. one tile per slice for a 2D network
    # on a volume). Computed exactly, not bounded from batch_size × step: for 512×512×400 with 64³ tiles
    # that bound was 2.5× too large.
    window = max(min(padded[0], b[-1][0] + patch[0]) - b[0][0] for b in batches) if streaming else padded[0]
    # Labels only, by argmax: softmax / sigmoid and the division by the (positive, per-voxel) weight sum
    # are monotone, so the argmax of the weighted logit sums is the label. No weight sum is then
    # accumulated and no probabilities are computed (1/(K+1) less accumulation work and memory).
    labels_only_argmax = label_fn is None and return_labels and not return_probabilities

    def finalise(summed: torch.Tensor, weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if labels_only_argmax:
            return torch.argmax(summed, 0), None
        return _finalise(summed, weights.unsqueeze(0), activation, label_fn)

    predict_fn = _as_tensor_network(network)
    accumulator: _RowAccumulator | None = None
    outputs: _Outputs | None = None
    for i, chunk in enumerate(batches):
        batch = torch.stack(
            [x[(slice(None),) + tuple(slice(s, s + p) for s, p in zip(t, patch))] for t in chunk]
        ).to(device)
        out = predict_mirrored(predict_fn, batch, mirror_axes)
        if out.shape[2:] != batch.shape[2:]:
            raise MedsegError(f"network returned spatial size {tuple(out.shape[2:])} for tiles {patch}")
        if accumulator is None:
            k = int(out.shape[1])
            if num_classes is not None and k != num_classes:
                raise MedsegError(f"network returned {k} channels, expected {num_classes}")
            accumulator = _RowAccumulator(k, window, padded, device, weighted=not labels_only_argmax)
            # argmax of K ≤ 256 classes fits uint8 (the result's dtype anyway): no int16 copy at the end
            outputs = _Outputs(padded, k, labels=return_labels, probabilities=return_probabilities,
                               probabilities_dtype=np.dtype(probabilities_dtype),
                               compact_labels=label_fn is None and k <= 256)
        accumulator.add(chunk, out.to(device=weight.device, dtype=torch.float32), weight)
        if progress is not None:
            progress(min((i + 1) * batch_size, len(tiles)), len(tiles))
        if streaming:
            # every tile still to come starts at or after this row: rows above it are final
            accumulator.flush(batches[i + 1][0][0] if i + 1 < len(batches) else padded[0], finalise, outputs)
    if not streaming:
        accumulator.flush(padded[0], finalise, outputs)
    return outputs.result(crop)


def _pad_to_patch(x: torch.Tensor, patch: tuple[int, ...]) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Pad an image smaller than the tile symmetrically; the crop that takes the padding back off."""
    spatial = tuple(x.shape[1:])
    before = [max(0, (p - s) // 2) for p, s in zip(patch, spatial)]
    after = [max(0, p - s) - b for p, s, b in zip(patch, spatial, before)]
    if any(before) or any(after):
        x = F.pad(x, [n for b, a in zip(reversed(before), reversed(after)) for n in (b, a)])
    return x, tuple(slice(b, b + s) for b, s in zip(before, spatial))


def _buffer(shape: tuple[int, ...], device: str | torch.device) -> torch.Tensor:
    """A zeroed float32 buffer. On the CPU numpy owns it (viewed as a tensor, zero copy): its memory is then
    visible to tracemalloc, which the memory test relies on; the big arrays all live here, torch temporaries
    are tile- or chunk-sized."""
    if torch.device(device).type == "cpu":
        return torch.from_numpy(np.zeros(shape, dtype=np.float32))
    return torch.zeros(shape, dtype=torch.float32, device=device)


class _RowAccumulator:
    """Weighted sums of tile outputs (and of the weights) over a window of rows ``[lo, lo + window)`` along
    the first axis; :meth:`flush` finalises the rows above a given one and slides the window past them."""

    def __init__(self, k: int, window: int, padded: tuple[int, ...], device: str | torch.device, *, weighted: bool):
        self.window, self.padded, self.lo = window, padded, 0
        self.sums = _buffer((k, window) + padded[1:], device)
        self.weights = _buffer((window,) + padded[1:], device) if weighted else None

    def add(self, starts: Sequence[tuple[int, ...]], outputs: torch.Tensor, weight: torch.Tensor) -> None:
        for t, o in zip(starts, outputs):
            region = (slice(t[0] - self.lo, t[0] - self.lo + weight.shape[0]),) + tuple(
                slice(s, s + p) for s, p in zip(t[1:], weight.shape[1:])
            )
            self.sums[(slice(None),) + region].addcmul_(o, weight)
            if self.weights is not None:
                self.weights[region] += weight

    def flush(self, upto: int, finalise: Callable, outputs: _Outputs) -> None:
        """Finalise rows ``[lo, upto)`` into ``outputs``, then slide the window up by as many rows, in place."""
        n = upto - self.lo
        if n <= 0:
            return
        # finalise a few rows at a time: softmax / argmax temporaries stay ~FINALISE_BYTES, not K × n rows
        row_bytes = 4 * self.sums.shape[0] * math.prod(self.padded[1:])
        rows = max(1, min(n, FINALISE_BYTES // max(1, row_bytes)))
        for r in range(0, n, rows):
            m = min(rows, n - r)
            weights = self.weights[r : r + m] if self.weights is not None else None
            outputs.write(self.lo + r, *finalise(self.sums[:, r : r + m], weights))
        if upto < self.padded[0]:
            self._slide(n)
        self.lo = upto

    def _slide(self, n: int) -> None:
        # shift rows [n, window) to [0, window - n) in blocks of at most n rows (source and target never
        # overlap, so no temporary copy of the window), then clear the freed tail
        keep = self.window - n
        for j in range(0, keep, n):
            m = min(n, keep - j)
            self.sums[:, j : j + m].copy_(self.sums[:, j + n : j + n + m])
            if self.weights is not None:
                self.weights[j : j + m].copy_(self.weights[j + n : j + n + m])
        self.sums[:, max(keep, 0) :].zero_()
        if self.weights is not None:
            self.weights[max(keep, 0) :].zero_()


class _Outputs:
    """The compact outputs on the padded grid: labels and / or probabilities, written row block by row block."""

    def __init__(self, padded: tuple[int, ...], k: int, *, labels: bool, probabilities: bool,
                 probabilities_dtype: np.dtype, compact_labels: bool):
        self.labels = np.zeros(padded, dtype=np.uint8 if compact_labels else np.int16) if labels else None
        self.probabilities = np.zeros((k,) + padded, dtype=probabilities_dtype) if probabilities else None

    def write(self, row: int, labels: torch.Tensor, probabilities: torch.Tensor | None) -> None:
        rows = slice(row, row + labels.shape[0])
        if self.labels is not None:
            self.labels[rows] = labels.cpu().numpy()
        if self.probabilities is not None:
            self.probabilities[:, rows] = probabilities.cpu().numpy()

    def result(self, crop: tuple[slice, ...]) -> SlidingWindowResult:
        labels = self.labels[crop] if self.labels is not None else None
        probs = self.probabilities[(slice(None),) + crop] if self.probabilities is not None else None
        if labels is not None and labels.dtype != np.uint8 and labels.max(initial=0) < 256 \
                and labels.min(initial=0) >= 0:
            labels = labels.astype(np.uint8)
        return SlidingWindowResult(
            np.ascontiguousarray(labels) if labels is not None else None,
            np.ascontiguousarray(probs) if probs is not None else None,
        )
