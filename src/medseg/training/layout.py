"""The layout of a run: plan values, preprocessing, patch and batch size when nothing else decides."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medseg.errors import MedsegError
from medseg.model_folder import ModelConfig
from medseg.training.config import TrainingConfig

RASTER_ENDINGS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm")


# --- decisions made without a plan ---------------------------------------------------------------
def default_preprocessing(channel_names: Sequence[str], file_ending: str | None, has_roi: bool,
                          spatial_dims: int) -> list[dict[str, Any]]:
    """Automatic preprocessing when there is no plan.

    Rule: a 2D RGB photograph (three channels, raster file) is treated as a fundus image: the green
    channel carries the vessel contrast, CLAHE evens out illumination, then z-score inside the field of
    view. Everything else: per-channel z-score (inside the ROI when there is one).
    """
    zscore = {"name": "zscore", "mask": "roi"} if has_roi else {"name": "zscore"}
    names = [n.lower() for n in channel_names]
    rgb = len(names) == 3 and (names == ["r", "g", "b"] or names == ["red", "green", "blue"]
                               or (file_ending or "").lower() in RASTER_ENDINGS)
    if spatial_dims == 2 and rgb:
        return [{"name": "green_channel"}, {"name": "clahe"}, zscore]
    return [zscore]


def automatic_patch_size(shapes: Sequence[Sequence[int]], spatial_dims: int, divisor: int | Sequence[int] = 16,
                         ) -> tuple[int, ...]:
    """Patch size without a plan: 2D 128² (96² for images < 512 px would starve context less, but 128
    fits two cores well), 3D 64³ — each clipped to the median image size rounded up to the divisor."""
    target = 128 if spatial_dims == 2 else 64
    median = np.median(np.asarray(shapes), axis=0) if len(shapes) else np.full(spatial_dims, target)
    divs = [divisor] * spatial_dims if isinstance(divisor, int) else list(divisor)
    out = []
    for m, dv in zip(median, divs):
        size = min(target, int(m))
        out.append(max(dv, int(math.ceil(size / dv) * dv)))
    return tuple(out)


def automatic_batch_size(patch_size: Sequence[int], voxels_per_batch: int = 4 * 128 * 128) -> int:
    """Batch size from a CPU budget: about ``voxels_per_batch`` voxels per iteration, at least 2."""
    return int(max(2, min(32, voxels_per_batch // int(np.prod(patch_size)))))


def load_plan(plan: str | Path | dict | None, configuration: str | None = None) -> dict[str, Any] | None:
    """A plan as a dict: from plan.json (validated by :class:`medseg.planning.Plan`), a Plan or a dict.

    ``configuration`` ("2d" / "3d") switches to the plan's alternative configuration.
    """
    if plan is None:
        return None
    if isinstance(plan, dict):
        from medseg.planning import Plan

        plan = Plan.from_dict(plan)
    elif not hasattr(plan, "to_dict"):
        from medseg.planning import Plan

        plan = Plan.load(Path(plan))
    if configuration:
        plan = plan.use_configuration(configuration)
    return plan.to_dict()


def _plan_value(plan: dict | None, *keys: str) -> Any:
    """First present key, looking in the plan and in a nested configuration (plan["configuration"])."""
    if not plan:
        return None
    for source in (plan, plan.get("configuration") or {}):
        for key in keys:
            if isinstance(source, dict) and source.get(key) is not None:
                return source[key]
    return None


@dataclass
class DataLayout:
    """How cases are brought to the network: preprocessing, spacing, cropping, 2D/3D."""

    preprocessing: list[dict[str, Any]]
    target_spacing: list[float] | None
    spatial_dims: int
    slice_axis: int | None
    crop_to_nonzero: bool
    resampling: dict[str, Any] | None

    @classmethod
    def from_model_config(cls, c: ModelConfig) -> "DataLayout":
        return cls(c.preprocessing, c.target_spacing, c.spatial_dims, c.slice_axis, c.crop_to_nonzero, c.resampling)


def resolve_layout(plan: dict[str, Any] | None, config: TrainingConfig, dataset: Any, data_dims: int,
                   has_roi: bool, preprocessing: list[dict[str, Any]] | None = None) -> DataLayout:
    """Decisions from the plan (when there is one) or the automatic defaults; fills the plan's network,
    patch and batch size into ``config`` where the caller left them open."""
    # a plan may put a 2D network on 3D data (slices across `slice_axis`)
    spatial_dims = int(_plan_value(plan, "spatial_dims") or data_dims)
    slice_axis = _plan_value(plan, "slice_axis") if spatial_dims < data_dims else None
    if spatial_dims < data_dims and slice_axis is None:
        raise MedsegError("the plan puts a 2D network on 3D data but names no slice_axis")
    steps = preprocessing if preprocessing is not None else (
        _plan_value(plan, "preprocessing", "normalization_steps")
        or default_preprocessing(dataset.channel_names, dataset.file_ending, has_roi, data_dims))
    target_spacing = _plan_value(plan, "target_spacing", "spacing")
    net_plan = _plan_value(plan, "network")
    if isinstance(net_plan, dict) and net_plan.get("name", config.network) == config.network:
        # the plan's topology, with options given explicitly (e.g. --features) taking precedence
        options = {k: v for k, v in net_plan.items() if k not in ("name", "options")}
        options.update(net_plan.get("options", {}))
        options.update(config.network_options)
        config.network_options = options
    if not config.patch_size and _plan_value(plan, "patch_size"):
        config.patch_size = tuple(int(p) for p in _plan_value(plan, "patch_size"))
    if not config.batch_size and _plan_value(plan, "batch_size"):
        config.batch_size = int(_plan_value(plan, "batch_size"))
    return DataLayout(
        preprocessing=list(steps),
        target_spacing=[float(v) for v in target_spacing] if target_spacing is not None else None,
        spatial_dims=spatial_dims, slice_axis=slice_axis,
        crop_to_nonzero=bool(_plan_value(plan, "crop_to_nonzero") or False),
        resampling=_plan_value(plan, "resampling"),
    )
