"""Memory format of a training run: channels-last or contiguous, chosen by timing both.

Measured on this project's 2-core CPU (torch 2.13, oneDNN), one training pass (forward, backward;
``benchmarks/memory_format.py``, and ACDC's start-up probe):

- 3D U-Net, instance norm, 2 × 48×48×64 and 2 × 8×96×128 (ACDC): channels-last 1.20× and 1.31× faster;
- 2D U-Net, batch norm, 4 × 128²: channels-last 1.15× faster;
- 2D U-Net, instance norm, 4 × 128²: channels-last 1.27× *slower*;
- DUNet (deformable convolutions, ``grid_sample``): 1.10× slower.

No static rule predicts that, so ``"auto"`` times a few steps of each format on the run's own network
and batch (:mod:`medseg.training.probe`) and keeps channels-last when it is clearly faster. The choice is
recorded in the training configuration, so ``--resume`` continues with it.
"""

from __future__ import annotations

from typing import Callable

import torch

from medseg.training.probe import PROBE_STEPS, fastest_variant


def torch_format(name: str, spatial_dims: int) -> torch.memory_format:
    """The torch memory format called ``name`` ("contiguous" or "channels_last") for this dimensionality."""
    if name == "channels_last":
        return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
    return torch.contiguous_format


def choose_memory_format(model: torch.nn.Module, loss_fn: Callable, image: torch.Tensor, label: torch.Tensor,
                         spatial_dims: int, *, time_limit: float | None = None, iterations: int | None = None,
                         steps: int = PROBE_STEPS) -> tuple[str, dict[str, float]]:
    """The faster memory format for training ``model`` on batches like ``(image, label)``.

    Times a few forward/backward passes in each format when the run is long enough for the probe
    (:func:`medseg.training.probe.fastest_variant`); the model is left in contiguous format.

    Returns
    -------
    name : {"contiguous", "channels_last"}
    seconds : dict
        Seconds per pass of each format timed (empty when the probe was skipped).
    """
    if spatial_dims not in (2, 3):
        return "contiguous", {}

    def variant(name: str):
        def prepare():
            fmt = torch_format(name, spatial_dims)
            model.to(memory_format=fmt)
            return image.contiguous(memory_format=fmt), lambda: model.to(memory_format=torch.contiguous_format)
        return prepare

    return fastest_variant(model, loss_fn, image, label, {n: variant(n) for n in ("contiguous", "channels_last")},
                           time_limit=time_limit, iterations=iterations, steps=steps)
