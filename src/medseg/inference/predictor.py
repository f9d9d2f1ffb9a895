"""Predicting with a trained model folder (or an ensemble of them) on images in their own geometry.

``Predictor.from_folder(path).predict(image)`` repeats the recorded preprocessing, resamples to the
training spacing when the model says so, runs the Gaussian-weighted sliding window, brings the result
back onto the input's exact grid, and returns a label map :class:`~medseg.Image` with the input's
size, spacing, origin and direction.

Options beyond the plain prediction:

- ``prune_level`` (UNet++): predict with sub-network L1..Ld; ``"auto"`` (default) uses the level recorded in
  the model folder's ``pruning.json`` (smallest level within 0.005 validation Dice of the best), else the
  full network.
- ``fast=F``: predict on a grid F times coarser than the model's (in-plane: a thick-slice axis and the slice
  axis of a 2D-on-3D model keep their spacing), then bring the probabilities back to the input grid. About
  F² (2D) to F³ (isotropic 3D) fewer voxels go through the network; the price is detail smaller than the
  coarse voxels: thin structures (vessels a pixel or two wide) are lost first, compact organs barely change
  (boundary error up to about half a coarse voxel). The output geometry always equals the input's.
- :func:`~medseg.inference.volumes.label_volumes` / :func:`~medseg.inference.volumes.write_volumes`: voxels
  and volume (mL in 3D, mm² in 2D) per label.

Examples
--------
>>> from medseg import Predictor                                    # doctest: +SKIP
>>> labels = Predictor.from_folder("model").predict(read_image("case.nii.gz"))   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from medseg.constants import ANISOTROPY_RATIO, BACKENDS, DEFAULT_BACKEND, REGION_THRESHOLD, TILE_BATCH  # noqa: F401
from medseg.errors import MedsegError
from medseg.image import Image
from medseg.inference.volumes import VOLUME_COLUMNS, label_volumes, write_volumes  # noqa: F401 (re-export)
from medseg.model_folder import (  # noqa: F401 - re-exported
    ModelConfig, load_config, load_model, paint_regions, region_label_values)
from medseg.postprocessing import apply_steps, keep_largest_component
from medseg.preprocessing.color import channels_for_model
from medseg.preprocessing.grid import GridCase, GridLayout, LabelMapping, to_network_grid
from medseg.tiling.slices import slice_network, volume_patch_size
from medseg.tiling.sliding_window import sliding_window_inference


@dataclass
class LoadedModel:
    """One model of a predictor: its folder, configuration and a callable network."""

    folder: Path | None
    config: ModelConfig
    network: Callable[[torch.Tensor], torch.Tensor]
    prune_level: int | None = None


def resolve_prune_level(model: torch.nn.Module, folder: str | Path | None, prune_level: int | str | None = "auto",
                        ) -> int | None:
    """Apply a pruning level to a prunable network (UNet++); returns the level used (None: not prunable).

    ``prune_level``: an int (1..depth), ``"auto"`` (the folder's pruning.json choice, else the full network)
    or None (leave the network as built). Asking a network that cannot be pruned for a level is an error.
    """
    from medseg.model_folder import load_pruning

    if prune_level is None:
        return getattr(model, "prune_level", None)
    if not hasattr(model, "set_prune_level"):
        if str(prune_level) == "auto":
            return None
        raise MedsegError(f"--prune-level {prune_level}: the {type(model).__name__} cannot be pruned "
                          "(only UNet++ can)", folder)
    if str(prune_level) == "auto":
        recorded = load_pruning(folder) if folder is not None else None
        level = recorded["level"] if recorded else int(model.depth)
    else:
        try:
            level = int(prune_level)
        except ValueError:
            raise MedsegError(f"prune level must be a number or 'auto', not '{prune_level}'") from None
    model.set_prune_level(level)
    return int(level)


def fast_spacing(spacing: Sequence[float], factor: float, slice_axis: int | None = None,
                 anisotropy_ratio: float = ANISOTROPY_RATIO) -> tuple[float, ...]:
    """The coarser prediction spacing of ``--fast``: ``factor`` × ``spacing`` in-plane.

    A thick-slice axis (spacing > ``anisotropy_ratio`` × the finest, 3D) and the slice axis of a 2D network
    on 3D data keep their spacing: coarsening them would drop whole slices.

    Examples
    --------
    >>> fast_spacing((1.0, 1.0), 2), fast_spacing((5.0, 1.0, 1.0), 2), fast_spacing((1.0, 1.0, 1.0), 2)
    ((2.0, 2.0), (5.0, 2.0, 2.0), (2.0, 2.0, 2.0))
    """
    if factor <= 0:
        raise MedsegError(f"the --fast factor must be positive, not {factor}")
    spacing = [float(v) for v in spacing]
    finest = min(spacing)
    out = []
    for axis, value in enumerate(spacing):
        keep = axis == slice_axis or (len(spacing) == 3 and value > anisotropy_ratio * finest)
        out.append(value if keep else value * float(factor))
    return tuple(out)


def labels_from_probabilities(probabilities: np.ndarray | torch.Tensor, config: ModelConfig,
                              threshold: float = REGION_THRESHOLD) -> np.ndarray:
    """Label values from class probabilities (argmax) or region probabilities (threshold, nested paint)."""
    p = torch.as_tensor(np.asarray(probabilities, dtype=np.float32)
                        if not isinstance(probabilities, torch.Tensor) else probabilities)
    if config.regions:
        return paint_regions(p.numpy(), config, threshold)
    index = (_threshold_label_fn(config.decision_threshold)(p) if config.decision_threshold is not None
             else torch.argmax(p, 0))
    return LabelMapping(config.label_values).decode(index.numpy())


def _resampled_labels(probabilities: np.ndarray, grid: GridCase, config: ModelConfig) -> np.ndarray:
    """Label values on the (cropped) input grid from probabilities on the network grid, one channel at a
    time."""
    def resampled(c: int) -> np.ndarray:
        return grid.channel_to_input(probabilities[c])

    if config.decision_threshold is not None:
        index = (resampled(1) >= config.decision_threshold).astype(np.int16)
        return LabelMapping(config.label_values).decode(index)
    best = index = None
    out = None
    values = region_label_values(config) if config.regions else None
    for c in range(probabilities.shape[0]):
        p = resampled(c)
        if values is not None:  # regions: paint in order
            if out is None:
                out = np.zeros(p.shape, np.uint8 if max(values + [0]) < 256 else np.int32)
            out[p > REGION_THRESHOLD] = values[c]
            continue
        if best is None:
            best, index = p, np.zeros(p.shape, np.int16)
        else:
            better = p > best
            index[better] = c
            np.maximum(best, p, out=best)
    return out if values is not None else LabelMapping(config.label_values).decode(index)


def _region_label_fn(config: ModelConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    values = region_label_values(config)

    def fn(probs: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(probs.shape[1:], dtype=torch.int16)
        for r, value in enumerate(values):
            out[probs[r] > REGION_THRESHOLD] = value
        return out

    return fn


def _threshold_label_fn(threshold: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def fn(probs: torch.Tensor) -> torch.Tensor:
        return (probs[1] >= threshold).to(torch.int16)

    return fn


def _label_fn(config: ModelConfig) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """How the sliding window turns activated outputs into labels (None: argmax of the logits)."""
    if config.regions:
        return _region_label_fn(config)
    if config.decision_threshold is not None:
        return _threshold_label_fn(config.decision_threshold)
    return None


def estimate_roi(image: Image, fraction: float = 0.1) -> Image:
    """Field of view of an image with a dark surround (fundus photographs, cropped scans).

    A pixel is inside when some channel exceeds ``fraction`` of that channel's 99th percentile; holes
    are filled and the largest component kept. Used when a model normalised its training images inside
    an ROI but no ROI is given at prediction time. Falls back to the whole image when the estimate is
    implausible (under 5 % of the image).

    Examples
    --------
    >>> a = np.zeros((3, 40, 40), np.uint8); a[:, 5:35, 5:35] = 120
    >>> int(estimate_roi(Image(a)).array.sum())
    900
    """
    from scipy import ndimage

    array = np.asarray(image.array, dtype=np.float32)
    high = np.percentile(array.reshape(array.shape[0], -1), 99, axis=1)
    inside = np.any(array > (fraction * high).reshape((-1,) + (1,) * image.spatial_dims), axis=0)
    inside = keep_largest_component(ndimage.binary_fill_holes(inside).astype(np.uint8)) != 0
    if inside.mean() < 0.05:
        inside = np.ones(image.spatial_shape, bool)
    return image.with_array(inside.astype(np.uint8)[None], ("roi",))


def close_call_notes(close: Sequence[dict[str, Any]], config: ModelConfig) -> list[str]:
    """One line per close call of a largest-component step, naming the label (or region) by its name."""
    names = {v: k for k, v in config.labels.items()}
    return [f"'largest component' of {names.get(c['label'], c['label'])} kept {c['kept']:,} voxels and removed "
            f"{c['removed']:,} ({c['removed'] / c['kept']:.0%} of it): check that the kept one is the structure"
            for c in close]


def _uses_roi(steps: Sequence[dict[str, Any]]) -> bool:
    return any(step.get("mask") == "roi" for step in steps)


def _graph_stem(model: torch.nn.Module, checkpoint: str) -> str:
    """File-name stem of an exported graph: the checkpoint's weights, and a pruned UNet++'s level."""
    level = getattr(model, "prune_level", None)
    stem = "model" if checkpoint == "final" else f"model_{checkpoint}"
    return stem if level is None or level == getattr(model, "depth", level) else f"{stem}_L{level}"


def _onnx_network(folder: Path, config: ModelConfig, model: torch.nn.Module, checkpoint: str = "final") -> Callable:
    """An ONNX Runtime session as a network callable; exported once into the model folder."""
    import onnxruntime as ort

    from medseg.model_folder import weights_path
    from medseg.nets.export import export_onnx

    name = f"{_graph_stem(model, checkpoint)}.onnx"
    path = folder / name
    weights = weights_path(folder, checkpoint)
    if not path.is_file() or path.stat().st_mtime < weights.stat().st_mtime:
        try:
            export_onnx(model, path, (1, config.in_channels, *config.patch_size))
        except OSError:  # read-only model folder: export beside the process instead
            import tempfile

            path = export_onnx(model, Path(tempfile.mkdtemp()) / name, (1, config.in_channels, *config.patch_size))
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"image": batch.numpy().astype(np.float32)})[0])

    return run


def _network(backend: str, folder: Path, config: ModelConfig, model: torch.nn.Module, checkpoint: str,
             batch_size: int) -> Callable:
    """The callable a backend runs (see :meth:`Predictor.from_folder`) on batches of ``batch_size`` tiles."""
    if backend == "auto":
        backend = auto_backend(config.spatial_dims).value
    if backend == "onnx":
        return _onnx_network(folder, config, model, checkpoint)
    if backend == "compile":
        from medseg.inference.compiled import CompiledNetwork
        from medseg.model_folder import weights_path

        return CompiledNetwork(model, folder, _graph_stem(model, checkpoint), weights_path(folder, checkpoint),
                               batch_size=batch_size)
    return model


def auto_backend(spatial_dims: int):
    """The backend rule of ``--backend auto`` (:func:`medseg.planning.training_rules.rule_backend`)."""
    import importlib.util

    from medseg.planning.training_rules import rule_backend

    return rule_backend(spatial_dims, importlib.util.find_spec("onnxruntime") is not None)


def ensemble_postprocessing(configs: Sequence[ModelConfig]) -> list[dict[str, Any]]:
    """The recorded postprocessing steps every member of an ensemble chose (in the first member's order)."""
    steps = list(configs[0].postprocessing or [])
    return [s for s in steps if all(s in (c.postprocessing or []) for c in configs[1:])]


def _mirror_axes(tta: bool | tuple[int, ...] | None, cfg: ModelConfig) -> tuple[int, ...]:
    """The axes a prediction mirrors over: the model's recorded choice (None), its mirror axes (True), none
    (False) or the given ones."""
    if tta is None:
        return tuple(cfg.tta_axes)
    if tta is True:
        return tuple(cfg.mirror_axes)
    return tuple(tta or ())


class Predictor:
    """Sliding-window prediction with one model folder or an ensemble (probabilities averaged).

    Parameters
    ----------
    models : list of LoadedModel
    overlap : float, optional
        Tile overlap; default the model's (0.5).
    tta : bool, sequence of int or None
        Mirroring test-time augmentation: None (default) = as the model folder records (``tta_axes``, chosen
        after training where it raised the validation Dice), True = over the model's mirror axes (every
        spatial axis of the training patches; up to 8× slower in 3D), False = off, or over the given
        spatial axes only (0-based, e.g. ``(1,)``: left-right, 2× the cost).
    batch_size : int
        Tiles per network call.
    largest_component : bool
        Keep only the largest connected component of each label (on top of the recorded postprocessing).
    postprocessing : bool
        Apply the model folder's recorded postprocessing steps (chosen on the validation cases after
        training; for an ensemble, the steps every member chose).
    tile_size : sequence of int, optional
        Sliding-window tile (network dimensions); default the model's recorded tile (whole 2D images when
        they fit one), else the training patch size. Larger tiles mean
        fewer, better-shaped convolutions (a whole 584×565 DRIVE image in one tile is ~4× faster than
        81 overlapping 128² tiles here); networks with instance norm see slightly different statistics.
    fast : float, optional
        Predict on a grid ``fast`` times coarser in-plane than the model's (see :func:`fast_spacing` and the
        module docstring for the accuracy / speed trade-off); the output stays on the input grid.
    fov_normalisation : bool
        Models with a recorded field-of-view diameter (fundus photographs): find each image's FOV (or use
        the given ROI), rescale so that it has the training camera's diameter, and return outputs at the
        input's size; labels outside the FOV are background. False: predict at the native size (the FOV is
        still found, or the ROI used, for the intensity statistics and the background outside it).
    """

    def __init__(self, models: Sequence[LoadedModel], *, overlap: float | None = None,
                 tta: bool | Sequence[int] | None = None,
                 batch_size: int = TILE_BATCH, largest_component: bool = False, tile_size: Sequence[int] | None = None,
                 fast: float | None = None, postprocessing: bool = True, fov_normalisation: bool = True):
        if not models:
            raise MedsegError("a predictor needs at least one model")
        self.models = list(models)
        from medseg.inference.ensemble import check_compatible

        check_compatible([m.config for m in self.models], [m.folder for m in self.models])
        self.overlap = overlap
        self.tta = tta if tta is None or isinstance(tta, bool) else tuple(int(a) for a in tta)
        self.batch_size = batch_size
        self.largest_component = largest_component
        self.fov_normalisation = bool(fov_normalisation)
        self.postprocessing = ensemble_postprocessing([m.config for m in self.models]) if postprocessing else []
        from medseg.inference.ensemble import ensemble_threshold

        # the averaged probabilities of an ensemble are labelled with the members' mean threshold
        self.ensemble_config = replace(self.config, decision_threshold=ensemble_threshold(
            [m.config for m in self.models]))
        if fast is not None and float(fast) <= 0:
            raise MedsegError(f"the --fast factor must be positive, not {fast}")
        self.fast = float(fast) if fast is not None and float(fast) != 1.0 else None
        self.tile_size = tuple(int(t) for t in tile_size) if tile_size else None
        if self.tile_size and len(self.tile_size) == 1:
            self.tile_size = self.tile_size * self.config.spatial_dims
        if self.tile_size and len(self.tile_size) != self.config.spatial_dims:
            raise MedsegError(f"tile size {self.tile_size} does not fit a {self.config.spatial_dims}D network")

    @classmethod
    def from_folder(cls, path: str | Path, *, checkpoint: str = "final", backend: str = DEFAULT_BACKEND,
                    prune_level: int | str | None = "auto", **options: Any) -> "Predictor":
        """A predictor for one model folder (see :class:`Predictor` for ``options``).

        ``backend``: ``"auto"`` (the default here and of ``medseg predict``, :data:`medseg.constants.DEFAULT_BACKEND`:
        the backend rule, :func:`auto_backend`: compiled for 3D networks, ONNX Runtime for 2D ones when it is
        installed), ``"torch"`` (eager, the reference), ``"onnx"`` (ONNX Runtime, exported once into the
        folder) or ``"compile"`` (TorchInductor, compiled once per tile shape into the folder, ~20-50 s the first
        time or in :meth:`warm_up`; see :mod:`medseg.inference.compiled`). ``prune_level``: see
        :func:`resolve_prune_level`.
        """
        return cls.from_folders([path], checkpoint=checkpoint, backend=backend, prune_level=prune_level, **options)

    @classmethod
    def from_folders(cls, paths: Sequence[str | Path], *, checkpoint: str = "final", backend: str = DEFAULT_BACKEND,
                     prune_level: int | str | None = "auto", **options: Any) -> "Predictor":
        """An ensemble of model folders (e.g. the five folds): probabilities are averaged."""
        if backend not in BACKENDS:
            raise MedsegError(f"unknown backend '{backend}' ({', '.join(BACKENDS)})")
        models = []
        for p in paths:
            _refuse_promptable(p)
            config, model = load_model(p, checkpoint)
            level = resolve_prune_level(model, p, prune_level)
            network = _network(backend, Path(p), config, model, checkpoint, options.get("batch_size", TILE_BATCH))
            network = slice_network(network, config.slice_axis)  # 2D network on 3D data: slice by slice
            models.append(LoadedModel(Path(p), config, network, level))
        return cls(models, **options)

    @property
    def config(self) -> ModelConfig:
        return self.models[0].config

    def _check_input(self, image: Image, roi: Image | None) -> None:
        cfg = self.config
        if image.spatial_dims != cfg.data_dims:
            raise MedsegError(f"the model takes {cfg.data_dims}D images; the image is {image.spatial_dims}D")
        if image.num_channels != cfg.input_channels:
            grey_model_given_colour = cfg.input_channels == 1 and image.num_channels == 3
            colour = " (a colour picture: its channels differ)" if grey_model_given_colour else ""
            raise MedsegError(
                f"the model expects {cfg.input_channels} channel(s) ({', '.join(cfg.channel_names)}); "
                f"the image has {image.num_channels}{colour}")
        if roi is not None:
            image.check_same_geometry(roi, "image and ROI")

    def _check_memory(self, pre: Image, spacing: Sequence[float] | None, cfg: ModelConfig) -> None:
        """Stop before the work when the volume at the model's spacing cannot fit in RAM."""
        from medseg.planning.machine import check_memory
        from medseg.preprocessing.resample import resampled_shape

        shape = resampled_shape(pre.spatial_shape, pre.spacing, spacing) if spacing else pre.spatial_shape
        voxels, here = float(np.prod(shape)), float(np.prod(pre.spatial_shape))
        # the preprocessed input (+ a float64 working copy while resampling), the network-grid input, and
        # per-class probabilities (float16 in 3D, float32 when they are returned) on the network grid
        needed = here * pre.num_channels * (4 + (8 if spacing else 0)) + voxels * (4 * pre.num_channels
                                                                                   + 4 * cfg.num_classes)
        check_memory(needed, f"predicting a {'×'.join(map(str, pre.spatial_shape))} image on a "
                     f"{'×'.join(map(str, shape))} grid", "predict with --fast 2 (a coarser grid) or on a "
                     "machine with more memory")

    def _tile(self, cfg: ModelConfig) -> tuple[int, ...]:
        """The sliding-window tile in the data's dimensions."""
        return volume_patch_size(self.tile_size, cfg.slice_axis) if self.tile_size else cfg.data_tile_size

    def warm_up(self) -> None:
        """Build now what each model's backend otherwise builds on the first image (the compiled package of
        the tile shape, written into the model folder), by running it once on a batch of empty tiles."""
        with torch.no_grad():
            for model in self.models:
                model.network(torch.zeros(self.batch_size, model.config.in_channels, *self._tile(model.config)))

    def _predict_one(self, model: LoadedModel, image: Image, roi: Image | None, want_probabilities: bool):
        """Labels (label values) or probabilities of one model, on ``image``'s grid."""
        cfg = model.config
        if roi is None and _uses_roi(cfg.preprocessing):
            roi = estimate_roi(image)  # statistics inside the field of view, as in training
        spacing = cfg.target_spacing
        if self.fast:
            # the coarse grid is relative to the preprocessed image's spacing (intensity steps keep it)
            spacing = fast_spacing(spacing if spacing is not None else image.spacing, self.fast, cfg.slice_axis)
        layout = GridLayout.of(cfg)
        if not self.fov_normalisation:
            layout = replace(layout, fov_diameter=None)
        grid = to_network_grid(image, layout, roi=roi, spacing=spacing, keep_roi=False,
                               before_resampling=lambda pre, target: self._check_memory(pre, target, cfg))
        if not grid.resampled:
            self._check_memory(grid.image, None, cfg)
        pre, resampled = grid.image, grid.resampled
        mirror = _mirror_axes(self.tta, cfg)
        need_probs = want_probabilities or resampled
        result = sliding_window_inference(
            pre.array, model.network, self._tile(cfg), num_classes=cfg.num_classes,
            overlap=cfg.overlap if self.overlap is None else self.overlap, batch_size=self.batch_size,
            mirror_axes=mirror, activation=cfg.activation,
            label_fn=_label_fn(cfg),
            return_labels=not need_probs, return_probabilities=need_probs,
            probabilities_dtype=np.float16 if cfg.data_dims == 3 and not want_probabilities else np.float32,
        )
        if resampled and not want_probabilities:
            # labels only: bring one channel at a time back to the input grid and keep a running argmax,
            # so memory holds two float32 volumes instead of C of them
            labels = _resampled_labels(result.probabilities, grid, cfg)
            return grid.labels_to_input(labels), None
        if not need_probs:
            labels = result.labels if cfg.regions else LabelMapping(cfg.label_values).decode(result.labels)
            return grid.labels_to_input(labels), None
        # probabilities (not labels) go back to the input grid: linear interpolation, then argmax
        return None, grid.probabilities_to_input(result.probabilities, background_outside=not cfg.regions)

    def predict_with_probabilities(self, image: Image, roi: Image | None = None, *, probabilities: bool = True,
                                   notes: list[str] | None = None) -> tuple[Image, Image | None]:
        """Labels and (optionally) per-class probabilities, both on the input's grid.

        Parameters
        ----------
        image : Image
            Raw input (same channels as the training data).
        roi : Image, optional
            Region of interest on the same grid: preprocessing statistics are taken inside it and
            labels outside it are set to background.
        probabilities : bool
            Also return the probabilities (averaged over the ensemble).
        notes : list of str, optional
            Receives a line for each largest-component step that removed a component at least half the size of
            the one it kept (:data:`~medseg.postprocessing.CLOSE_CALL_SHARE`): the output may show the wrong one.

        Returns
        -------
        (Image, Image or None)
        """
        image = channels_for_model(image, self.config.input_channels)
        self._check_input(image, roi)
        cfg = self.config
        if roi is None and any(m.config.fov_diameter for m in self.models):
            from medseg.preprocessing.fov import fov_roi

            # found once: the rescaling, the intensity statistics and the background outside it (also at
            # the native size: statistics over the black surround would be another input distribution)
            roi = fov_roi(image)
        want_probs = probabilities or len(self.models) > 1
        total = None
        with torch.inference_mode():
            if want_probs:
                from medseg.inference.ensemble import mean_probabilities

                total = mean_probabilities(self._predict_one(m, image, roi, True)[1] for m in self.models)
                labels = labels_from_probabilities(total, self.ensemble_config)
            else:
                labels = self._predict_one(self.models[0], image, roi, False)[0]
        if roi is not None:
            labels = np.where(np.asarray(roi.array[0]) != 0, labels, 0).astype(labels.dtype)
        close: list[dict[str, Any]] | None = None if notes is None else []
        if self.postprocessing:
            labels = apply_steps(labels, self.postprocessing, spacing=image.spacing, close=close)
        if self.largest_component:
            labels = keep_largest_component(labels, connectivity=labels.ndim, close=close)
        if notes is not None:
            notes.extend(close_call_notes(close, cfg))
        label_image = image.with_array(labels[None], ("label",))
        prob_image = None
        if probabilities and total is not None:
            names = list(cfg.regions) if cfg.regions else _class_names(cfg)
            prob_image = image.with_array(total, names)
        return label_image, prob_image

    def predict(self, image: Image, roi: Image | None = None) -> Image:
        """The label map on the input's grid (see :meth:`predict_with_probabilities`)."""
        return self.predict_with_probabilities(image, roi, probabilities=False)[0]

    def predict_probabilities(self, image: Image, roi: Image | None = None) -> Image:
        """Per-class (or per-region) probabilities on the input's grid."""
        return self.predict_with_probabilities(image, roi, probabilities=True)[1]


def _class_names(config: ModelConfig) -> list[str]:
    by_value = {v: k for k, v in config.labels.items()}
    return [str(by_value.get(v, v)) for v in config.label_values]


def is_promptable(folder: str | Path) -> bool:
    """Whether a model folder holds a promptable network (``medseg train --net litemedsam``), run by ``medseg
    prompt`` rather than the Predictor."""
    from medseg.nets import NETWORKS

    network = load_config(folder).network
    return network in NETWORKS and bool(NETWORKS.entry(network).metadata.get("promptable"))


def _refuse_promptable(folder: str | Path) -> None:
    """A promptable model folder segments what a box points at: it has no meaning without prompts, so it is
    refused here with the command that runs it."""
    if is_promptable(folder):
        network = load_config(folder).network
        raise MedsegError(f"'{network}' segments from prompts: use medseg prompt --model {folder} --box ... "
                          "(or --boxes boxes.csv -i FOLDER)", folder)
