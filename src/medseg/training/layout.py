"""A plan as the trainer reads it: its values, and the grid layout (spacing, 2D/3D, crop, resampling) it implies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.errors import MedsegError
from medseg.model_folder import ModelConfig
from medseg.preprocessing.grid import GridLayout


def load_plan(plan: str | Path | dict | None, configuration: str | None = None,
              preferred: str | None = None) -> dict[str, Any] | None:
    """A plan as a dict: from plan.json (validated by :class:`medseg.planning.Plan`), a Plan or a dict.

    ``configuration`` ("2d" / "3d") switches to the plan's alternative configuration; ``preferred`` (what the
    network or the patch implies, see :func:`medseg.training.networks.implied_configuration`) does where the
    plan has it.
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
    elif preferred in plan.alternatives:
        plan = plan.use_configuration(preferred)
    return plan.to_dict()


def plan_value(plan: dict | None, *keys: str) -> Any:
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
    fov_diameter: float | None = None
    field_extent: dict[str, Any] | None = None

    @classmethod
    def from_model_config(cls, c: ModelConfig) -> "DataLayout":
        return cls(c.preprocessing, c.target_spacing, c.spatial_dims, c.slice_axis, c.crop_to_nonzero, c.resampling,
                   c.fov_diameter, c.field_extent)

    @property
    def grid(self) -> GridLayout:
        """The case ↔ network-grid transform of this layout."""
        return GridLayout.of(self)


def resolve_layout(plan: dict[str, Any] | None, network: str, data_dims: int, steps: list[dict[str, Any]],
                   ) -> tuple[DataLayout, dict[str, Any], tuple[int, ...] | None, int | None]:
    """The layout a plan implies (or the data's own without a plan), and the plan's network options
    (when the plan is for ``network``), patch size and batch size."""
    # a plan may put a 2D network on 3D data (slices across `slice_axis`)
    spatial_dims = int(plan_value(plan, "spatial_dims") or data_dims)
    slice_axis = plan_value(plan, "slice_axis") if spatial_dims < data_dims else None
    if spatial_dims < data_dims and slice_axis is None:
        raise MedsegError("the plan puts a 2D network on 3D data but names no slice_axis")
    target_spacing = plan_value(plan, "target_spacing", "spacing")
    net_plan = plan_value(plan, "network")
    options: dict[str, Any] = {}
    if isinstance(net_plan, dict) and net_plan.get("name", network) == network:
        options = {k: v for k, v in net_plan.items() if k not in ("name", "options")}
        options.update(net_plan.get("options", {}))
    patch = plan_value(plan, "patch_size")
    batch = plan_value(plan, "batch_size")
    layout = DataLayout(
        preprocessing=list(steps),
        target_spacing=[float(v) for v in target_spacing] if target_spacing is not None else None,
        spatial_dims=spatial_dims, slice_axis=slice_axis,
        crop_to_nonzero=bool(plan_value(plan, "crop_to_nonzero") or False),
        resampling=plan_value(plan, "resampling"),
    )
    return layout, options, tuple(int(p) for p in patch) if patch else None, int(batch) if batch else None
