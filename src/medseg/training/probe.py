"""Timing a few training passes of the run's own network and batch, to choose how a run computes.

The memory format (:mod:`medseg.training.memory_format`) and the numeric precision
(:mod:`medseg.training.precision`) have no static rule that predicts the faster choice on a given machine, so
``"auto"`` times each variant (as cuDNN's benchmark mode does for convolution algorithms) and keeps the faster
when it is clearly faster (:data:`MIN_SPEEDUP`).
"""

from __future__ import annotations

import copy
import time
from typing import Callable

import torch

#: Rule: a probe runs only when its passes, about len(variants) × (1 + PROBE_STEPS), cost at most this share
#: of the run (estimated from the first pass); otherwise the run keeps the first variant.
MAX_PROBE_SHARE = 0.02
PROBE_STEPS = 3
#: Rule: another variant replaces the first (the reference: contiguous, float32) only when its pass is at least this
#: many times faster. A smaller gain is within the noise of 3 timed passes on a shared machine, and a choice that
#: flips between runs of one command would make them differ for nothing.
MIN_SPEEDUP = 1.1

#: A variant prepares the model and returns the batch image to time it on and a function that undoes it.
Variant = Callable[[], tuple[torch.Tensor, Callable[[], None]]]


def pass_seconds(model: torch.nn.Module, loss_fn: Callable, image: torch.Tensor, label: torch.Tensor) -> float:
    """Seconds of one forward and backward pass; the gradients are cleared again."""
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    loss_fn(model(image), label, image).backward()
    seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return seconds


def fastest_variant(model: torch.nn.Module, loss_fn: Callable, image: torch.Tensor, label: torch.Tensor,
                    variants: dict[str, Variant], *, time_limit: float | None = None, iterations: int | None = None,
                    steps: int = PROBE_STEPS) -> tuple[str, dict[str, float]]:
    """The variant whose training pass is fastest (by :data:`MIN_SPEEDUP` over the first), and the seconds per
    pass of each variant timed.

    Each variant is timed over ``steps`` passes after one warm-up pass (oneDNN builds its primitives), when the
    run (``time_limit`` seconds and/or ``iterations``) is long enough for the probe to cost at most
    :data:`MAX_PROBE_SHARE` of it; otherwise the first variant is returned with no timings. The model's
    parameters and buffers (batch-norm statistics) and its training mode are restored afterwards.
    """
    first_name = next(iter(variants))
    state = copy.deepcopy(model.state_dict())
    was_training = model.training
    model.train()
    try:
        first = pass_seconds(model, loss_fn, image, label)
        budgets = [b for b in (time_limit, None if iterations is None else iterations * first) if b is not None]
        if not budgets or len(variants) * (1 + steps) * first > MAX_PROBE_SHARE * min(budgets):
            return first_name, {}
        seconds = {}
        for name, prepare in variants.items():
            batch, undo = prepare()
            try:
                pass_seconds(model, loss_fn, batch, label)
                seconds[name] = min(pass_seconds(model, loss_fn, batch, label) for _ in range(steps))
            finally:
                undo()
        fastest = min(seconds, key=seconds.get)
        return (fastest if seconds[first_name] >= MIN_SPEEDUP * seconds[fastest] else first_name), seconds
    finally:
        model.load_state_dict(state)
        model.train(was_training)


def kept_note(chosen: str, seconds: dict[str, float]) -> str:
    """Why :func:`fastest_variant` kept a slower variant (another was faster, but by less than :data:`MIN_SPEEDUP`),
    as words to append to the probe's printed timings; empty when ``chosen`` is the fastest."""
    fastest = min(seconds, key=seconds.get)
    if fastest == chosen:
        return ""
    return f" (kept: {fastest} is {seconds[chosen] / seconds[fastest]:.2f}x faster, less than the {MIN_SPEEDUP:g}x " \
        "a switch needs)"
