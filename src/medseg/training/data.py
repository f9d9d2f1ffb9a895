"""Training data: every case preprocessed once and kept in RAM (or memory-mapped .npy files for large
3D sets), and a background thread that cuts, stacks and augments batches ahead of the model.

Each batch is a pure function of ``(seed, iteration)``: its own numpy and torch generators are derived
from them. Prefetching, thread timing and resuming therefore never change what the model sees.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from medseg.errors import MedsegError
from medseg.image import Image
from medseg.losses import IGNORE_INDEX
from medseg.preprocessing.grid import (  # noqa: F401
    GridCase, GridLayout, LabelMapping, preprocess_image, to_network_grid)
from medseg.training.sampling import SamplingIndex, build_sampling_index, sample_patch


@dataclass
class InputReference:
    """A validation case's label on the input's grid, where predictions are delivered and scored, and what
    brings network-grid results there (kept only where the two grids differ).

    Attributes
    ----------
    grid : GridCase
        Geometry only (:meth:`medseg.preprocessing.grid.GridCase.geometry`).
    label : ndarray
        ``(*S)`` int16 class indices on the (cropped) input grid (ignore = -1).
    roi : ndarray or None
        ``(*S)`` bool.
    """

    grid: GridCase
    label: np.ndarray
    roi: np.ndarray | None


@dataclass
class PreparedCase:
    """One preprocessed case on the training grid.

    Attributes
    ----------
    name : str
    image : ndarray
        ``(C, *S)`` float32/float16, possibly memory-mapped.
    label : ndarray
        ``(1, *S)`` int16 class indices (ignore = -1).
    roi : ndarray or None
        ``(*S)`` bool.
    spacing : tuple of float
    index : SamplingIndex
    quantiles : ndarray or None
        Per-channel intensity quantiles, computed on first use (:func:`batch_cases`).
    input_reference : InputReference or None
        Validation cases whose network grid differs from their input's grid.
    """

    name: str
    image: np.ndarray
    label: np.ndarray
    roi: np.ndarray | None
    spacing: tuple[float, ...]
    index: SamplingIndex
    quantiles: np.ndarray | None = None  # (C, Q) intensity quantiles, filled when histogram matching needs them
    input_reference: InputReference | None = None


def prepare_case(
    case: Any,
    steps: Sequence[dict[str, Any]],
    mapping: LabelMapping,
    *,
    target_spacing: Sequence[float] | None = None,
    dtype: str = "float32",
    cache_dir: Path | None = None,
    seed: int = 0,
    crop_to_nonzero: bool = False,
    resampling: dict[str, Any] | None = None,
    fov_diameter: float | None = None,
    field_extent: dict[str, Any] | None = None,
    keep_input_reference: bool = False,
) -> PreparedCase:
    """Read, (crop,) preprocess, resample and encode one dataset case (see :class:`medseg.datasets.Case`).

    ``resampling``: a plan's ``{"image_order": 3, "label": "linear"|"nearest"}``; ``fov_diameter``,
    ``field_extent``: see :class:`medseg.preprocessing.grid.GridLayout`; ``keep_input_reference``: validation
    cases keep their label on the input's grid (:class:`InputReference`) where the network's grid differs from it.
    """
    image = case.read_image()
    label = case.read_label()
    if label is None:
        raise MedsegError(f"training case '{case.name}' has no label")
    roi = case.read_roi()
    image.check_same_geometry(label, f"case '{case.name}': image and label")
    if roi is not None:
        image.check_same_geometry(roi, f"case '{case.name}': image and ROI")

    def check(pre: Image, spacing: tuple[float, ...]) -> None:
        from medseg.planning.machine import check_memory
        from medseg.preprocessing.resample import resampled_shape

        voxels = float(np.prod(resampled_shape(pre.spatial_shape, pre.spacing, spacing)))
        # resampling holds the input, a float64 working copy per channel and the float32 result; the
        # label resampling keeps one float32 map per label value
        check_memory(voxels * (12 * pre.num_channels + 4 * (len(mapping.values) + 1)),
                     f"preparing training case '{case.name}' at spacing {spacing} mm",
                     "choose a coarser target_spacing in plan.json, or crop the images", case.image_paths[0])

    layout = GridLayout(tuple(steps), tuple(target_spacing) if target_spacing is not None else None,
                        crop_to_nonzero, resampling, fov_diameter, field_extent)
    try:
        grid = to_network_grid(image, layout, roi=roi, label=label, before_resampling=check)
    except MedsegError as exc:
        if exc.path is not None:
            raise
        raise MedsegError(f"case '{case.name}': {exc.message}", case.image_paths[0]) from None
    pre, label, roi = grid.image, grid.label, grid.roi
    array = np.ascontiguousarray(pre.array, dtype=np.float16 if dtype == "float16" else np.float32)
    encoded = mapping.encode(label.array, f"label of case '{case.name}'")
    roi_mask = None if roi is None else np.asarray(roi.array[0] != 0)
    index = build_sampling_index(encoded, roi_mask, ignore_index=IGNORE_INDEX, seed=seed)
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        array = _memmap(cache_dir / f"{case.name}_image.npy", array)
        encoded = _memmap(cache_dir / f"{case.name}_label.npy", encoded)
    reference = _input_reference(grid, mapping, case.name) if keep_input_reference and grid.resampled else None
    return PreparedCase(case.name, array, encoded, roi_mask, tuple(pre.spacing), index, input_reference=reference)


def _input_reference(grid: GridCase, mapping: LabelMapping, name: str) -> InputReference:
    label = mapping.encode(grid.input_label.array, f"label of case '{name}'")[0]
    roi = None if grid.input_roi is None else np.asarray(grid.input_roi.array[0] != 0)
    return InputReference(grid.geometry(), label, roi)


def _memmap(path: Path, array: np.ndarray) -> np.ndarray:
    from medseg.fileutil import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
    return np.load(path, mmap_mode="r")


def batch_generators(seed: int, iteration: int, rank: int = 0) -> tuple[np.random.Generator, torch.Generator]:
    """The numpy and torch generators of one batch, derived from ``(seed, iteration)`` only.

    ``rank`` (multi-process training) changes only the torch generator (the augmentation's): rank 0 keeps
    the single-process stream, rank ``r > 0`` draws from ``(seed, iteration, r)``.
    """
    rng = np.random.default_rng([int(seed), int(iteration)])
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    if rank:
        gen = torch.Generator().manual_seed(int(np.random.default_rng([int(seed), int(iteration), int(rank)])
                                                .integers(0, 2**62)))
    return rng, gen


def make_batch(
    cases: Sequence[PreparedCase],
    iteration: int,
    *,
    seed: int,
    patch_size: Sequence[int],
    batch_size: int,
    foreground_share: float,
    augment: Callable | None = None,
    label_pad_value: int = 0,
    slice_axis: int | None = None,
    shard: tuple[int, int] = (0, 1),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``iteration``: ``(N, C, *P)`` float32 images and ``(N, 1, *P)`` int64 class indices.

    With ``slice_axis`` (a 2D network on 3D data) ``patch_size`` is 2D and each patch is one slice.
    ``shard = (rank, world_size)`` (multi-process training): the global batch of ``batch_size ×
    world_size`` patches is drawn as one stream and rank ``r`` keeps patches ``r·N … (r+1)·N − 1``, so
    the ranks see different patches and together exactly those of one process with the global batch.
    """
    from medseg.tiling.slices import volume_patch_size

    rank, world_size = shard
    rng, gen = batch_generators(seed, iteration, rank)
    network_patch = tuple(patch_size)
    patch_size = volume_patch_size(network_patch, slice_axis)
    images, labels, picked = [], [], []
    for k in range(batch_size * (rank + 1)):  # the patches of lower ranks are drawn (and dropped) first
        index = int(rng.integers(len(cases)))
        case = cases[index]
        img, lab = sample_patch(case.image, case.label, case.index, patch_size, rng,
                                foreground_share=foreground_share, label_pad_value=label_pad_value)
        if k >= batch_size * rank:
            images.append(img)
            labels.append(lab)
            picked.append(index)
    image_t = torch.from_numpy(np.stack(images))
    label_t = torch.from_numpy(np.stack(labels).astype(np.int64))
    if slice_axis is not None:
        image_t, label_t = image_t.squeeze(2 + slice_axis), label_t.squeeze(2 + slice_axis)
    if augment is not None:
        if getattr(augment, "uses_cases", False):  # histogram matching between training cases
            image_t, label_t = augment(image_t, label_t, gen, cases=batch_cases(cases, picked))
        else:
            image_t, label_t = augment(image_t, label_t, gen)
        label_t = label_t.long()
    return image_t.float().contiguous(), label_t.contiguous()


def batch_cases(cases: Sequence[PreparedCase], picked: Sequence[int]) -> Any:
    """The :class:`~medseg.augmentation.histogram.BatchCases` of a batch: each case's intensity quantiles are
    computed once (on first use) and kept on the case."""
    from medseg.augmentation.histogram import BatchCases, intensity_quantiles

    for case in cases:
        if case.quantiles is None:
            case.quantiles = intensity_quantiles(case.image)
    return BatchCases(np.asarray(picked), np.stack([case.quantiles for case in cases]))


class BatchProducer:
    """Prepares batches ``start, start + 1, ...`` in a background thread, ``prefetch`` ahead.

    Use as an iterator or with :meth:`next`; call :meth:`close` (or use ``with``) to stop the thread.
    Heavy numpy/torch work releases the GIL, so the producer overlaps with the model's forward/backward;
    ``torch.set_num_threads`` governs both.
    """

    def __init__(self, make: Callable[[int], Any], start: int = 0, prefetch: int = 4):
        self._make = make
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._next_expected = start
        self._thread = threading.Thread(target=self._run, args=(start,), daemon=True, name="medseg-batches")
        self._thread.start()

    def _run(self, iteration: int) -> None:
        while not self._stop.is_set():
            try:
                item = (iteration, self._make(iteration), None)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                item = (iteration, None, exc)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[2] is not None:
                return
            iteration += 1

    def next(self) -> Any:
        iteration, batch, error = self._queue.get()
        if error is not None:
            raise error
        assert iteration == self._next_expected
        self._next_expected += 1
        return batch

    def __iter__(self):
        return self

    def __next__(self):
        return self.next()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> "BatchProducer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
