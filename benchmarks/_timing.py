"""Timing shared by the benchmarks: best-of-N wall clock for micro-benchmarks (the least disturbed run on a
shared machine), and one printed, timed command for the end-to-end scripts."""

from __future__ import annotations

import shlex
import subprocess
import time
from typing import Callable, Sequence


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


def run(args: Sequence[object]) -> float:
    """Run a command (printed first, so the sequence can be repeated by hand); seconds it took."""
    print("$", shlex.join(map(str, args)), flush=True)
    start = time.perf_counter()
    subprocess.run(list(map(str, args)), check=True)
    return time.perf_counter() - start
