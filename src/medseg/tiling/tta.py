"""Test-time augmentation by mirroring: the network is run on every combination of flips along the
chosen spatial axes and the flipped-back logits are averaged (nnU-Net's mirroring; up to 8× the cost in
3D, so off by default on CPU)."""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

import torch


def mirror_axes_combinations(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of the spatial ``axes`` (0-based), the identity first.

    Examples
    --------
    >>> mirror_axes_combinations((0, 1))
    [(), (0,), (1,), (0, 1)]
    """
    axes = tuple(axes)
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def _logits(out):
    return out["logits"] if isinstance(out, dict) else out


def predict_mirrored(network: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor,
                     mirror_axes: Sequence[int] = ()) -> torch.Tensor:
    """Mean logits over all mirrorings of ``batch`` (``(N, C, *S)``) along ``mirror_axes`` (spatial, 0-based).

    With no axes this is just ``network(batch)`` as float32.
    """
    combos = mirror_axes_combinations(mirror_axes)
    total = _logits(network(batch)).float()
    for combo in combos[1:]:
        dims = [2 + a for a in combo]
        total = total + torch.flip(_logits(network(torch.flip(batch, dims))).float(), dims)
    return total / len(combos) if len(combos) > 1 else total
