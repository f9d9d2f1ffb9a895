"""Memory format of a training run: channels-last or contiguous, chosen by timing both.

Measured on this project's 2-core CPU (torch 2.13, oneDNN), one training pass (forward, backward;
``benchmarks/memory_format.py``, and ACDC's start-up probe):

- 3D U-Net, instance norm, 2 × 48×48×64 and 2 × 8×96×128 (ACDC): channels-last 1.20× and 1.31× faster;
- 2D U-Net, batch norm, 4 × 128²: channels-last 1.15× faster;
- 2D U-Net, instance norm, 4 × 128²: channels-last 1.27× *slower*;
- DUNet (deformable convolutions, ``grid_sample``): 1.10× slower.

No static rule predicts that, so ``"auto"`` times a few steps of each format on the run's own network
and batch (as cuDNN's benchmark mode does for convolution algorithms) and keeps the faster one. The
choice is recorded in the training configuration, so ``--resume`` continues with it.
"""

from __future__ import annotations

import copy
import time
from typing import Callable

import torch

#: Rule: "auto" times the formats only when the probe, about 2 × (1 + PROBE_STEPS) passes, costs at most
#: this share of the run (estimated from the first pass); otherwise the run stays contiguous.
MAX_PROBE_SHARE = 0.02
PROBE_STEPS = 3


def torch_format(name: str, spatial_dims: int) -> torch.memory_format:
    """The torch memory format called ``name`` ("contiguous" or "channels_last") for this dimensionality."""
    if name == "channels_last":
        return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
    return torch.contiguous_format


def _pass_seconds(model: torch.nn.Module, loss_fn: Callable, image: torch.Tensor, label: torch.Tensor) -> float:
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    loss_fn(model(image), label, image).backward()
    seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return seconds


def choose_memory_format(model: torch.nn.Module, loss_fn: Callable, image: torch.Tensor, label: torch.Tensor,
                         spatial_dims: int, *, time_limit: float | None = None, iterations: int | None = None,
                         steps: int = PROBE_STEPS) -> tuple[str, dict[str, float]]:
    """The faster memory format for training ``model`` on batches like ``(image, label)``.

    Times ``steps`` forward/backward passes in each format (after one warm-up pass each) when the run
    (``time_limit`` seconds and/or ``iterations``) is long enough for the probe to cost at most
    :data:`MAX_PROBE_SHARE` of it. The model's parameters and buffers (batch-norm statistics) are
    restored afterwards and it is left in contiguous format.

    Returns
    -------
    name : {"contiguous", "channels_last"}
    seconds : dict
        Seconds per pass of each format timed (empty when the probe was skipped).
    """
    if spatial_dims not in (2, 3):
        return "contiguous", {}
    state = copy.deepcopy(model.state_dict())
    was_training = model.training
    model.train()
    try:
        first = _pass_seconds(model, loss_fn, image, label)  # warm-up: oneDNN builds its primitives
        budgets = [b for b in (time_limit, None if iterations is None else iterations * first) if b is not None]
        if not budgets or 2 * (1 + steps) * first > MAX_PROBE_SHARE * min(budgets):
            return "contiguous", {}
        seconds = {}
        for name in ("contiguous", "channels_last"):
            fmt = torch_format(name, spatial_dims)
            model.to(memory_format=fmt)
            batch = image.contiguous(memory_format=fmt)
            if name != "contiguous":
                _pass_seconds(model, loss_fn, batch, label)
            seconds[name] = min(_pass_seconds(model, loss_fn, batch, label) for _ in range(steps))
        return min(seconds, key=seconds.get), seconds
    finally:
        model.to(memory_format=torch.contiguous_format)
        model.load_state_dict(state)
        model.train(was_training)
