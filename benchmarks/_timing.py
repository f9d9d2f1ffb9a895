"""Best-of-N wall-clock timing shared by the micro-benchmarks (the least disturbed run on a shared machine)."""

from __future__ import annotations

import time
from typing import Callable


def best_of(run: Callable[[], object], repeats: int = 5, warmup: int = 2) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``run``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)
