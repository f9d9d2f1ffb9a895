"""A trained model is a folder, self-contained and relocatable (no absolute paths inside):

    MODEL/
      config.json          network name + options, channels, labels, preprocessing steps (with any
                           fitted statistics), target spacing, patch size, augmentation, training config
      plan.json            the plan it was trained from (when there was one)
      model.safetensors    final weights (safetensors: no code is executed when loading)
      checkpoint_last.pt   resumable state (weights, optimizer, RNG, iteration, elapsed)
      checkpoint_best.pt   the same at the best validation score (when validated)
      training_log.csv, training_curve.png
      model.onnx           optional ONNX export (``medseg predict --backend onnx``; model_best.onnx,
                           model_L2.onnx for other checkpoints and pruned UNet++ levels)
      model_<shape>_....pt2  optional compiled networks (``medseg predict --backend compile``), one per
                           tile-batch shape, torch version, instruction set and thread count
      rules.json           every automatic choice of the run (name, inputs, value, reason, and whether
                           the user overrode it), see :mod:`medseg.planning.training_rules`
      pruning.json         prunable networks (UNet++): validation Dice, parameters and seconds per case
                           of every level, and the level chosen (used by the predictor by default)

Examples
--------
>>> cfg = ModelConfig(network="unet", network_options={}, in_channels=1, num_classes=2, spatial_dims=2,
...                   channel_names=["0"], labels={"background": 0, "vessel": 1}, label_values=[0, 1],
...                   patch_size=[64, 64])
>>> ModelConfig.from_dict(cfg.to_dict()) == cfg
True
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medseg.constants import REGION_THRESHOLD
from medseg.errors import MedsegError
from medseg.fileutil import atomic_path, write_text_atomic

if TYPE_CHECKING:  # reading config.json must not pay for importing torch
    from torch import nn

CONFIG_NAME = "config.json"
PLAN_NAME = "plan.json"
WEIGHTS_NAME = "model.safetensors"
LAST_CHECKPOINT = "checkpoint_last.pt"
BEST_CHECKPOINT = "checkpoint_best.pt"
PRUNING_NAME = "pruning.json"
RULES_NAME = "rules.json"
FORMAT_VERSION = 1


@dataclass
class ModelConfig:
    """What a model folder's config.json holds (everything needed to rebuild and apply the model).

    ``labels`` maps names to the dataset's label values; the network's output channel ``i`` is label
    value ``label_values[i]`` (softmax), or region ``i`` of ``regions`` (sigmoid heads).
    ``decision_threshold`` (binary softmax models only): label foreground where its probability is at
    least this value instead of taking the argmax (chosen on the validation cases after training).
    ``tile_size``: the sliding-window tile the predictor uses by default (None: the patch size).
    ``postprocessing``: per-label steps applied to every prediction (see
    :func:`medseg.postprocessing.apply_steps`), kept after training where they raised validation Dice.
    ``tta_axes``: the axes of mirroring test-time augmentation every prediction averages over by default
    (chosen after training on the validation cases; empty: none).
    ``fov_diameter`` (fundus photographs): the training camera's field-of-view diameter in pixels; every
    case is rescaled so that its FOV (found automatically when no ROI is given) has it, and predictions
    come back at the input's size (see :class:`medseg.preprocessing.grid.GridLayout`).
    ``field_extent`` (volumes whose spacing was lost): ``{"side", "axes"}``, every case's larger side across
    ``axes`` brought to ``side`` voxels of the network grid (same class); with ``"outlier_ratio"`` only the
    cases whose side is that many times ``side`` or more (or less); with ``"prediction_only"`` the network
    trained on the cases as stored.
    ``lineage``: a fine-tuned model's source (``medseg train --init-from``): its folder, the SHA-256 of its
    weights and of its config.json, its dataset, and the source's own lineage.
    """

    network: str
    network_options: dict[str, Any]
    in_channels: int
    num_classes: int
    spatial_dims: int
    channel_names: list[str]
    labels: dict[str, int]
    label_values: list[int]
    patch_size: list[int]
    regions: dict[str, list[int]] | None = None
    region_class_order: list[int] | None = None
    ignore_label: int | None = None
    preprocessing: list[dict[str, Any]] = field(default_factory=list)
    target_spacing: list[float] | None = None
    file_ending: str | None = None
    uses_roi: bool = False
    mirror_axes: list[int] = field(default_factory=list)
    overlap: float = 0.5
    augmentation: dict[str, Any] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    train_cases: list[str] = field(default_factory=list)
    val_cases: list[str] = field(default_factory=list)
    input_channels: int = 0
    data_dims: int = 0
    slice_axis: int | None = None
    crop_to_nonzero: bool = False
    resampling: dict[str, Any] | None = None
    decision_threshold: float | None = None
    tile_size: list[int] | None = None
    postprocessing: list[dict[str, Any]] = field(default_factory=list)
    tta_axes: list[int] = field(default_factory=list)
    fov_diameter: float | None = None
    field_extent: dict[str, Any] | None = None
    lineage: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        # channels of the raw input (in_channels counts them after preprocessing, e.g. green channel)
        if not self.input_channels:
            self.input_channels = self.in_channels
        # a 2D network on 3D data works slice by slice across `slice_axis`
        if not self.data_dims:
            self.data_dims = self.spatial_dims
        if self.data_dims == self.spatial_dims:
            self.slice_axis = None
        elif self.slice_axis is None:
            raise MedsegError(f"a {self.spatial_dims}D network on {self.data_dims}D data needs slice_axis")
        if self.decision_threshold is not None:
            if self.regions or self.num_classes != 2:
                raise MedsegError("decision_threshold applies to binary (2-class softmax) models only")
            if not 0.0 < self.decision_threshold < 1.0:
                raise MedsegError(f"decision_threshold must lie in (0, 1); got {self.decision_threshold}")

    @property
    def data_patch_size(self) -> tuple[int, ...]:
        """Patch size in the data's dimensions (1 along the slice axis of a 2D-on-3D model)."""
        from medseg.tiling.slices import volume_patch_size

        return volume_patch_size(self.patch_size, self.slice_axis)

    @property
    def data_tile_size(self) -> tuple[int, ...]:
        """The default sliding-window tile in the data's dimensions (the recorded tile, else the patch)."""
        from medseg.tiling.slices import volume_patch_size

        return volume_patch_size(self.tile_size, self.slice_axis) if self.tile_size else self.data_patch_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | None = None) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise MedsegError(f"incomplete model configuration: {exc}", path) from None

    @property
    def activation(self) -> str:
        return "sigmoid" if self.regions else "softmax"


def save_config(folder: str | Path, config: ModelConfig) -> Path:
    """Write ``config.json`` atomically."""
    from medseg.provenance import provenance

    path = Path(folder) / CONFIG_NAME
    # versions, machine and date of the run that wrote it (not read back into ModelConfig)
    write_text_atomic(path, json.dumps({**config.to_dict(), "provenance": provenance()}, indent=2) + "\n")
    return path


def load_config(folder: str | Path) -> ModelConfig:
    """Read a model folder's ``config.json``."""
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not folder.is_dir():
        raise MedsegError("model folder not found", folder)
    if not path.is_file():
        raise MedsegError(f"not a model folder (no {CONFIG_NAME})", folder)
    from medseg.io.jsonfile import read_json

    from medseg.io.jsonfile import check_fields

    data = read_json(path, "model configuration")
    check_fields(data, {"network": str, "num_classes": int, "in_channels": int, "spatial_dims": int, "labels": dict,
                        "label_values": list, "patch_size": list, "network_options": dict}, path, "model configuration")
    try:
        if int(data.get("format_version", 1)) > FORMAT_VERSION:
            raise MedsegError(f"written by a newer medseg (format {data['format_version']}); upgrade medseg", path)
        return ModelConfig.from_dict(data, path)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # a hand-edited or foreign config.json: name the file, not a Python error
        raise MedsegError(f"model configuration has a missing or mistyped field ({type(exc).__name__}: {exc})",
                          path) from None


def save_pruning(folder: str | Path, pruning: dict[str, Any]) -> Path:
    """Write ``pruning.json`` (see :func:`medseg.training.validation.select_prune_level`) atomically."""
    path = Path(folder) / PRUNING_NAME
    write_text_atomic(path, json.dumps(pruning, indent=2) + "\n")
    return path


def load_pruning(folder: str | Path) -> dict[str, Any] | None:
    """A model folder's ``pruning.json``, or None when the model has no recorded pruning choice."""
    path = Path(folder) / PRUNING_NAME
    if not path.is_file():
        return None
    from medseg.io.jsonfile import read_json

    data = read_json(path, "UNet++ pruning choice")
    if not isinstance(data.get("level"), int):
        raise MedsegError("pruning.json has no integer 'level'", path)
    return data


def save_rules(folder: str | Path, rules: list[dict[str, Any]]) -> Path:
    """Write ``rules.json`` (a list of rule records) atomically."""
    path = Path(folder) / RULES_NAME
    write_text_atomic(path, json.dumps(rules, indent=2, ensure_ascii=False) + "\n")
    return path


def load_rules(folder: str | Path) -> list[dict[str, Any]]:
    """A model folder's ``rules.json`` (empty when the model predates it)."""
    path = Path(folder) / RULES_NAME
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MedsegError(f"not valid JSON: {exc}", path) from None
    if not isinstance(data, list):
        raise MedsegError("rules.json must hold a list of rules", path)
    return data


def weights_sha256(folder: str | Path) -> str:
    """SHA-256 of a segmentation model folder's final weights (``model.safetensors``)."""
    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise MedsegError(f"not a trained segmentation model (no {WEIGHTS_NAME})", folder)
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def config_sha256(folder: str | Path) -> str:
    """SHA-256 of a segmentation model's configuration (canonical JSON of config.json): its preprocessing,
    labels and decision threshold decide the tissue maps as much as the weights do."""
    path = Path(folder) / CONFIG_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MedsegError(f"not a segmentation model folder ({CONFIG_NAME}: {exc})", folder) from None
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()


def build_network(config: ModelConfig) -> nn.Module:
    """The untrained network described by ``config``."""
    from medseg.nets import create_network

    return create_network(config.network, config.in_channels, config.num_classes, config.spatial_dims,
                          **config.network_options)


def save_weights(model, path: str | Path) -> None:
    """Weights as safetensors, written atomically (shared tensors handled by safetensors)."""
    from safetensors.torch import save_model

    with atomic_path(path) as tmp:
        save_model(model, str(tmp))


def load_weights(model, path: str | Path) -> None:
    """Load safetensors weights, or the model state of a ``.pt`` checkpoint (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise MedsegError("weights not found", path)
    from medseg.io.weights import mismatch_message

    if path.suffix == ".safetensors":
        from safetensors.torch import load_model

        try:
            load_model(model, str(path), strict=True)
        except Exception as exc:
            raise MedsegError(f"weights do not fit the network: {mismatch_message(exc)}", path) from None
        return
    from medseg.io.weights import load_torch_file

    payload = load_torch_file(path, "weights file")
    try:
        # a checkpoint of a run with a weight average predicts with the average, like model.safetensors
        model.load_state_dict(payload.get("averaged_model", payload.get("model", payload)))
    except RuntimeError as exc:
        raise MedsegError(f"weights do not fit the network: {mismatch_message(exc)}", path) from None


def weights_path(folder: str | Path, which: str = "final") -> Path:
    """The weights file of a folder: ``final`` (model.safetensors, else checkpoint_last.pt) or ``best``."""
    folder = Path(folder)
    if which == "best":
        candidates = [folder / BEST_CHECKPOINT, folder / WEIGHTS_NAME, folder / LAST_CHECKPOINT]
    elif which == "final":
        candidates = [folder / WEIGHTS_NAME, folder / LAST_CHECKPOINT]
    else:
        raise MedsegError(f"unknown checkpoint '{which}' (final, best)")
    for c in candidates:
        if c.is_file():
            return c
    raise MedsegError(f"no trained weights ({WEIGHTS_NAME}) in the model folder", folder)


def load_model(folder: str | Path, which: str = "final") -> tuple[ModelConfig, nn.Module]:
    """``(config, network in eval mode)`` from a model folder."""
    config = load_config(folder)
    model = build_network(config)
    load_weights(model, weights_path(folder, which))
    model.eval()
    return config, model


def region_label_values(config: ModelConfig) -> list[int]:
    """The label value painted for each region, in region order (nnU-Net's ``regions_class_order``).

    Without an explicit order, a region paints the smallest of its values that no nested (strictly
    smaller) region contains: whole tumour [1, 2, 3] ⊃ core [2, 3] ⊃ enhancing [3] → 1, 2, 3.
    """
    regions = [set(v) for v in (config.regions or {}).values()]
    if config.region_class_order:
        return [int(v) for v in config.region_class_order]
    out = []
    for r in regions:
        nested = set().union(*[o for o in regions if o < r]) if any(o < r for o in regions) else set()
        own = sorted(r - nested)
        out.append(int(own[0] if own else max(r)))
    return out


def paint_regions(probabilities: np.ndarray, config: ModelConfig, threshold: float = REGION_THRESHOLD) -> np.ndarray:
    """Label values from region probabilities ``(regions, *S)``: each region above ``threshold`` painted with
    its value (:func:`region_label_values`) in region order, so nested regions paint over the outer ones."""
    values = region_label_values(config)
    out = np.zeros(tuple(probabilities.shape[1:]), dtype=np.uint8 if max(values + [0]) < 256 else np.int32)
    for region, value in enumerate(values):
        out[np.asarray(probabilities[region]) > threshold] = value
    return out
