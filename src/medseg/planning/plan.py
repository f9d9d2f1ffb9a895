"""The Plan: every decision needed to preprocess, train and predict, as editable data (plan.json).

A Plan is produced by :func:`medseg.planning.rules.make_plan` from a dataset fingerprint and the
machine's budget; users may edit plan.json by hand. :meth:`Plan.load` validates every field and rejects
an invalid edit with a message that names the field (``plan.json: field 'patch_size' ...``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from medseg.errors import MedsegError
from medseg.fileutil import write_text_atomic

PLAN_VERSION = 1
CONFIGURATIONS = ("2d", "3d")
#: Fields a configuration (2d / 3d) owns; the rest is shared.
CONFIGURATION_FIELDS = ("configuration", "spatial_dims", "slice_axis", "target_spacing", "patch_size", "batch_size",
                        "network", "training")
LABEL_RESAMPLING = ("linear", "nearest")


class PlanError(MedsegError):
    """A plan (or an edit of plan.json) is invalid; the message names the field."""


@dataclass
class Plan:
    """Every decision for one dataset on one machine (see each field's rule in ``rules_fired``).

    Attributes
    ----------
    dataset : str
        Dataset name.
    configuration : {"2d", "3d"}
        The network's dimensionality for this plan; ``alternatives`` holds the other one.
    spatial_dims : int
        2 or 3 (the network's).
    data_dims : int
        2 or 3 (the images').
    slice_axis : int or None
        For a 2D network on 3D data: the array axis slices are taken across (the thick-slice axis).
    channel_names, labels, regions, ignore_label, num_classes
        From the dataset (``labels`` without the ignore label; ``num_classes`` = network outputs).
    target_spacing : list of float
        Spacing (mm, array-axis order, ``data_dims`` entries) every case is resampled to. Per
        configuration: the 3D one may be coarser (the low-resolution rule).
    resampling : dict
        ``{"image_order": 3, "label": "linear"|"nearest", "separate_axis": int|None, "separate_order": 0}``.
    crop_to_nonzero : bool
        Crop each case to the bounding box of its non-zero voxels before anything else.
    preprocessing : list of dict
        Intensity steps for :func:`medseg.preprocessing.apply_pipeline`, e.g.
        ``[{"name": "zscore", "mask": "nonzero", "channels": [0]}]``.
    patch_size : list of int
        ``spatial_dims`` entries, divisible per axis by the product of the network's strides.
    batch_size : int
    network : dict
        ``{"name": "unet", "features", "depth", "max_features", "strides", "kernel_sizes"}`` where
        ``strides`` has ``depth`` entries and ``kernel_sizes`` ``depth + 1`` (per axis lists).
    training : dict
        ``{"iterations", "time_limit" (s), "estimated_step_seconds", "num_threads"}``.
    machine : dict
        The budget the plan was made for.
    rules_fired : list of dict
        ``{"rule", "decision", "reason"}`` for each decision.
    alternatives : dict
        The other configuration's fields (``{"3d": {...}}``); see :meth:`use_configuration`.
    fingerprint_summary : dict
        The fingerprint summary the plan was made from.
    """

    dataset: str
    configuration: str
    spatial_dims: int
    data_dims: int
    slice_axis: int | None
    channel_names: list[str]
    labels: dict[str, int]
    regions: dict[str, list[int]] | None
    ignore_label: int | None
    num_classes: int
    target_spacing: list[float]
    resampling: dict[str, Any]
    crop_to_nonzero: bool
    preprocessing: list[dict[str, Any]]
    patch_size: list[int]
    batch_size: int
    network: dict[str, Any]
    training: dict[str, Any]
    machine: dict[str, Any] = field(default_factory=dict)
    rules_fired: list[dict[str, str]] = field(default_factory=list)
    alternatives: dict[str, dict[str, Any]] = field(default_factory=dict)
    fingerprint_summary: dict[str, Any] = field(default_factory=dict)
    version: int = PLAN_VERSION

    # --- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | os.PathLike) -> Path:
        """Validate and write plan.json atomically; return its path."""
        validate_plan(self.to_dict())
        path = Path(path)
        write_text_atomic(path, self.to_json() + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "plan") -> "Plan":
        """Build a Plan from a dict, validating every field (errors name the field and ``source``)."""
        validate_plan(data, source)
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Plan":
        """Read and validate plan.json.

        Raises
        ------
        PlanError
            The file is not JSON, or a field is missing, unknown or invalid (named in the message).
        """
        from medseg.io.jsonfile import read_json

        path = Path(path)
        data = read_json(path, "plan file", dict, PlanError)
        return cls.from_dict(data, str(path))

    # --- configurations ----------------------------------------------------------------------
    def use_configuration(self, configuration: str) -> "Plan":
        """This plan with the ``"2d"`` or ``"3d"`` configuration active (the other moves to alternatives).

        Examples
        --------
        >>> # plan.use_configuration("3d").spatial_dims == 3
        """
        if configuration == self.configuration:
            return self
        if configuration not in self.alternatives:
            raise PlanError(f"field 'alternatives': no '{configuration}' configuration in this plan "
                            f"(available: {[self.configuration, *self.alternatives]})")
        current = {name: getattr(self, name) for name in CONFIGURATION_FIELDS}
        other = {"target_spacing": self.target_spacing, **self.alternatives[configuration]}  # older plans: shared
        alternatives = {k: v for k, v in self.alternatives.items() if k != configuration}
        alternatives[self.configuration] = current
        plan = replace(self, **{k: other[k] for k in CONFIGURATION_FIELDS}, alternatives=alternatives)
        validate_plan(plan.to_dict())
        return plan


# --- validation ---------------------------------------------------------------------------------
_REQUIRED = [f.name for f in fields(Plan) if f.default is MISSING and f.default_factory is MISSING]


def _fail(source: str, name: str, message: str) -> None:
    raise PlanError(f"{source}: field '{name}' {message}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _int_list(source: str, name: str, value: Any, length: int, minimum: int = 1) -> None:
    if not isinstance(value, list) or len(value) != length or not all(_is_int(v) and v >= minimum for v in value):
        _fail(source, name, f"must be a list of {length} integers >= {minimum}; got {value!r}")


def validate_configuration(cfg: dict[str, Any], source: str = "plan", prefix: str = "",
                           data_dims: int | None = None) -> None:
    """Check the fields of one configuration (patch, batch, network, training)."""
    def name(field_name: str) -> str:
        return prefix + field_name

    if cfg.get("configuration") not in CONFIGURATIONS:
        _fail(source, name("configuration"), f"must be one of {list(CONFIGURATIONS)}; got {cfg.get('configuration')!r}")
    dims = cfg.get("spatial_dims")
    if dims not in (2, 3) or not _is_int(dims):
        _fail(source, name("spatial_dims"), f"must be 2 or 3; got {dims!r}")
    if cfg["configuration"] != f"{dims}d":
        _fail(source, name("spatial_dims"), f"is {dims} but the configuration is '{cfg['configuration']}'")
    if data_dims is not None and dims > data_dims:
        _fail(source, name("spatial_dims"), f"is {dims} but the images are {data_dims}D")
    slice_axis = cfg.get("slice_axis")
    if slice_axis is not None:
        if not _is_int(slice_axis) or not (data_dims is None or 0 <= slice_axis < data_dims):
            _fail(source, name("slice_axis"), f"must be an array axis of the images or null; got {slice_axis!r}")
    elif data_dims == 3 and dims == 2:
        _fail(source, name("slice_axis"), "must name the axis to slice across for a 2D network on 3D images")
    spacing = cfg.get("target_spacing")  # required at the top level; older plans' alternatives lack it
    malformed = (not isinstance(spacing, list) or (data_dims is not None and len(spacing) != data_dims)
                 or not all(_is_number(s) and s > 0 for s in spacing))
    if "target_spacing" in cfg and malformed:
        _fail(source, name("target_spacing"), f"must be {data_dims} positive numbers (mm); got {spacing!r}")
    _int_list(source, name("patch_size"), cfg.get("patch_size"), dims)
    batch = cfg.get("batch_size")
    if not _is_int(batch) or batch < 1:
        _fail(source, name("batch_size"), f"must be an integer >= 1; got {batch!r}")
    net = cfg.get("network")
    if not isinstance(net, dict) or not isinstance(net.get("name"), str):
        _fail(source, name("network"), f"must be an object with a 'name'; got {net!r}")
    if net["name"] in ("unet", "unet3d"):
        features, depth = net.get("features"), net.get("depth")
        if not _is_int(features) or features < 1:
            _fail(source, name("network.features"), f"must be an integer >= 1; got {features!r}")
        if not _is_int(depth) or depth < 0:
            _fail(source, name("network.depth"), f"must be an integer >= 0; got {depth!r}")
        strides = net.get("strides")
        if strides is not None:
            if not isinstance(strides, list) or len(strides) != depth:
                _fail(source, name("network.strides"), f"must have depth={depth} entries; got {strides!r}")
            for level, s in enumerate(strides):
                _int_list(source, name(f"network.strides[{level}]"), s, dims)
            for axis in range(dims):
                factor = math.prod(s[axis] for s in strides)
                if cfg["patch_size"][axis] % factor:
                    _fail(source, name("patch_size"),
                          f"{cfg['patch_size']} must be divisible by the strides' product "
                          f"{[math.prod(s[a] for s in strides) for a in range(dims)]} along every axis")
        kernels = net.get("kernel_sizes")
        if kernels is not None:
            if not isinstance(kernels, list) or len(kernels) != depth + 1:
                _fail(source, name("network.kernel_sizes"), f"must have depth+1={depth + 1} entries; got {kernels!r}")
            for level, k in enumerate(kernels):
                _int_list(source, name(f"network.kernel_sizes[{level}]"), k, dims)
                if any(v % 2 == 0 for v in k):
                    _fail(source, name(f"network.kernel_sizes[{level}]"), f"must be odd; got {k}")
    training = cfg.get("training")
    if not isinstance(training, dict):
        _fail(source, name("training"), f"must be an object; got {training!r}")
    for key in ("iterations",):
        if key in training and (not _is_int(training[key]) or training[key] < 1):
            _fail(source, name(f"training.{key}"), f"must be an integer >= 1; got {training[key]!r}")
    for key in ("time_limit", "estimated_step_seconds"):
        if training.get(key) is not None and (not _is_number(training[key]) or training[key] <= 0):
            _fail(source, name(f"training.{key}"), f"must be a positive number (seconds) or null; got {training[key]!r}")


def validate_plan(data: dict[str, Any], source: str = "plan") -> None:
    """Check a plan dict field by field; raise :class:`PlanError` naming the first invalid field.

    Examples
    --------
    >>> validate_plan({"dataset": "x"})
    Traceback (most recent call last):
    ...
    medseg.planning.plan.PlanError: plan: field 'configuration' is missing
    """
    known = {f.name for f in fields(Plan)}
    for key in data:
        if key not in known:
            _fail(source, key, f"is not a plan field (known: {', '.join(sorted(known))})")
    for key in _REQUIRED:
        if key not in data:
            _fail(source, key, "is missing")
    if data.get("version", PLAN_VERSION) != PLAN_VERSION:
        _fail(source, "version", f"is {data['version']!r}; this medseg reads version {PLAN_VERSION}")
    if not isinstance(data["dataset"], str):
        _fail(source, "dataset", f"must be a string; got {data['dataset']!r}")
    data_dims = data["data_dims"]
    if data_dims not in (2, 3) or not _is_int(data_dims):
        _fail(source, "data_dims", f"must be 2 or 3; got {data_dims!r}")
    names = data["channel_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        _fail(source, "channel_names", f"must be a non-empty list of strings; got {names!r}")
    labels = data["labels"]
    if (not isinstance(labels, dict) or not labels
            or not all(isinstance(k, str) and _is_int(v) and v >= 0 for k, v in labels.items())):
        _fail(source, "labels", f"must map label names to integer values >= 0; got {labels!r}")
    if 0 not in labels.values():
        _fail(source, "labels", "must include the background (value 0)")
    if len(set(labels.values())) != len(labels):
        _fail(source, "labels", f"values must be unique; got {labels}")
    ignore = data["ignore_label"]
    if ignore is not None and (not _is_int(ignore) or ignore in labels.values() or ignore <= max(labels.values())):
        _fail(source, "ignore_label", f"must be null or an integer above every label value; got {ignore!r}")
    regions = data["regions"]
    if regions is not None and (not isinstance(regions, dict) or not all(
            isinstance(v, list) and v and all(_is_int(x) for x in v) for v in regions.values())):
        _fail(source, "regions", f"must be null or map region names to lists of label values; got {regions!r}")
    expected_classes = len(regions) if regions else len(labels)
    if data["num_classes"] != expected_classes:
        _fail(source, "num_classes", f"is {data['num_classes']!r} but the labels/regions give {expected_classes}")
    res = data["resampling"]
    if not isinstance(res, dict):
        _fail(source, "resampling", f"must be an object; got {res!r}")
    if res.get("image_order", 3) not in (0, 1, 2, 3, 4, 5):
        _fail(source, "resampling.image_order", f"must be a spline order 0–5; got {res.get('image_order')!r}")
    if res.get("label", "linear") not in LABEL_RESAMPLING:
        _fail(source, "resampling.label", f"must be one of {list(LABEL_RESAMPLING)}; got {res.get('label')!r}")
    axis = res.get("separate_axis")
    if axis is not None and (not _is_int(axis) or not 0 <= axis < data_dims):
        _fail(source, "resampling.separate_axis", f"must be null or an axis < {data_dims}; got {axis!r}")
    if res.get("separate_order", 0) not in (0, 1):
        _fail(source, "resampling.separate_order", f"must be 0 or 1; got {res.get('separate_order')!r}")
    if not isinstance(data["crop_to_nonzero"], bool):
        _fail(source, "crop_to_nonzero", f"must be true or false; got {data['crop_to_nonzero']!r}")
    steps = data["preprocessing"]
    if not isinstance(steps, list):
        _fail(source, "preprocessing", f"must be a list of steps; got {steps!r}")
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or not isinstance(step.get("name"), str):
            _fail(source, f"preprocessing[{i}]", f"must be an object with a 'name'; got {step!r}")
        channels = step.get("channels")
        if channels is not None and (not isinstance(channels, list)
                                     or not all(_is_int(c) and 0 <= c < len(names) for c in channels)):
            _fail(source, f"preprocessing[{i}].channels", f"must list channel indices < {len(names)}; got {channels!r}")
    # The preprocessing package checks step names and parameters (one source of truth); imported here
    # because it pulls in scikit-image and SimpleITK, which reading a plan should not pay for up front.
    from medseg.preprocessing.pipeline import validate_pipeline

    try:
        validate_pipeline(steps)
    except MedsegError as exc:
        _fail(source, "preprocessing", f"is invalid: {exc.message}")
    validate_configuration(data, source, "", data_dims)
    alternatives = data.get("alternatives", {})
    if not isinstance(alternatives, dict):
        _fail(source, "alternatives", f"must be an object; got {alternatives!r}")
    for key, cfg in alternatives.items():
        if key not in CONFIGURATIONS or not isinstance(cfg, dict):
            _fail(source, f"alternatives.{key}", "must be a '2d' or '3d' configuration object")
        missing = [k for k in CONFIGURATION_FIELDS if k not in cfg and k != "target_spacing"]  # older plans
        if missing:
            _fail(source, f"alternatives.{key}.{missing[0]}", "is missing")
        validate_configuration(cfg, source, f"alternatives.{key}.", data_dims)
    if not isinstance(data.get("rules_fired", []), list):
        _fail(source, "rules_fired", "must be a list")
