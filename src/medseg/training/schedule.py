"""Learning-rate schedules as plain functions of training progress.

Progress is the fraction of the budget used: ``iteration / iterations``, or ``elapsed / time_limit`` when
only a wall-clock budget is given, or the larger of the two when both are. A schedule that is a pure
function of (progress, iteration) needs no state of its own, so resuming restores it exactly.
"""

from __future__ import annotations

import math


def training_progress(
    iteration: int, elapsed: float, iterations: int | None, time_limit: float | None
) -> float:
    """Fraction of the budget used, in [0, 1].

    Examples
    --------
    >>> training_progress(50, 10.0, 100, None)
    0.5
    >>> training_progress(50, 30.0, 100, 40.0)
    0.75
    """
    parts = []
    if iterations:
        parts.append(iteration / iterations)
    if time_limit:
        parts.append(elapsed / time_limit)
    return min(1.0, max(parts)) if parts else 0.0


def learning_rate_factor(progress: float, iteration: int, schedule: str = "poly", warmup_iterations: int = 0) -> float:
    """Multiplier of the base learning rate.

    Parameters
    ----------
    progress : float
        See :func:`training_progress`.
    iteration : int
        Completed iterations (for the linear warm-up).
    schedule : {"poly", "cosine", "constant"}
        ``poly``: ``(1 - progress) ** 0.9`` (nnU-Net); ``cosine``: half a cosine down to 0.
    warmup_iterations : int
        Linear ramp from ``1 / warmup`` to 1 over the first iterations.

    Examples
    --------
    >>> learning_rate_factor(0.0, 100, "poly")
    1.0
    >>> round(learning_rate_factor(0.5, 100, "cosine"), 3)
    0.5
    """
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "poly":
        factor = (1.0 - progress) ** 0.9
    elif schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule == "constant":
        factor = 1.0
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    if warmup_iterations and iteration < warmup_iterations:
        factor *= (iteration + 1) / warmup_iterations
    # never exactly zero: the last iterations of a time-limited run should still move a little
    return max(factor, 1e-3)
