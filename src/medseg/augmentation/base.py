"""Base class of the random transforms: JSON config in and out, per-sample probability, shared checks."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Sequence

import torch

from medseg.errors import MedsegError

Tensor = torch.Tensor


def check_range(name: str, value: Any, low: float | None = None, high: float | None = None) -> tuple[float, float]:
    """A ``(min, max)`` pair with ``min <= max`` inside ``[low, high]``."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise MedsegError(f"{name} must be a pair [min, max]; got {value!r}") from None
    if not (math.isfinite(a) and math.isfinite(b)) or a > b:
        raise MedsegError(f"{name} must be an increasing pair of finite numbers; got {value!r}")
    if (low is not None and a < low) or (high is not None and b > high):
        raise MedsegError(f"{name} must lie within [{low}, {high}]; got {value!r}")
    return (a, b)


def uniform(n: int, bounds: Sequence[float], generator: torch.Generator | None, columns: int | None = None) -> Tensor:
    """``n`` (or ``n × columns``) draws from U(bounds) on the CPU generator."""
    shape = (n,) if columns is None else (n, columns)
    lo, hi = float(bounds[0]), float(bounds[1])
    return lo + (hi - lo) * torch.rand(shape, generator=generator)


@dataclasses.dataclass
class RandomTransform:
    """A transform that samples per-sample parameters from a ``torch.Generator`` and calls a twin.

    Subclasses set ``name`` and implement :meth:`apply`. ``p`` is the probability that a given sample
    of the batch is transformed. All draws happen on the CPU generator in a fixed order, whatever
    the device of the data, so the same seed gives the same result.
    """

    name: ClassVar[str] = ""
    spatial: ClassVar[bool] = False  # True: moves voxels (label transformed too)

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.p) <= 1.0:  # type: ignore[attr-defined]
            raise MedsegError(f"{self.name}: p must be in [0, 1]; got {self.p!r}")  # type: ignore[attr-defined]

    def __call__(
        self, image: Tensor, label: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor | None]:
        from medseg.augmentation.functional import check_batch

        check_batch(image, label)
        n = image.shape[0]
        selected = torch.rand(n, generator=generator) < float(self.p)  # type: ignore[attr-defined]
        return self.apply(image, label, selected, generator)

    def apply(
        self, image: Tensor, label: Tensor | None, selected: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def check_axes(self, spatial_dims: int) -> None:
        """Raise when configured axes do not exist for ``spatial_dims``."""
        axes = getattr(self, "axes", None)
        if axes is not None and (not axes or any(not 0 <= int(a) < spatial_dims for a in axes)):
            raise MedsegError(f"{self.name}: axes {list(axes)} invalid for {spatial_dims}D data (use 0..{spatial_dims - 1})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable config: ``{"name": ..., <field>: <value>}``."""
        out: dict[str, Any] = {"name": self.name}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> "RandomTransform":
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in config.items() if k != "name"}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise MedsegError(f"{cls.name}: unknown field '{unknown[0]}'; fields: {', '.join(sorted(known))}")
        return cls(**fields)


def apply_selected(x: Tensor, selected: Tensor, out_selected: Tensor) -> Tensor:
    """``x`` with the selected samples replaced by ``out_selected`` (computed on them only)."""
    if bool(selected.all()):
        return out_selected.to(x.dtype)
    result = x.clone()
    result[selected.to(x.device)] = out_selected.to(x.dtype)
    return result
