"""Process-wide state a run touches, scoped: thread count and random number generators are set for the
run and restored afterwards, so training from Python leaves the caller's process as it found it."""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch


@contextmanager
def scoped_run_state(threads: int | None, seed: int) -> Iterator[None]:
    """Within the block: ``threads`` intra-op threads (None: unchanged) and torch / numpy / random seeded
    with ``seed``; on exit (also on errors and interruptions) the previous thread count and every
    generator's state are restored.

    Examples
    --------
    >>> before = torch.get_num_threads(); state = torch.get_rng_state()
    >>> with scoped_run_state(1, seed=0):
    ...     _ = torch.rand(1)
    >>> torch.get_num_threads() == before and torch.equal(torch.get_rng_state(), state)
    True
    """
    previous_threads = torch.get_num_threads()
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        try:
            if threads:
                torch.set_num_threads(int(threads))
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
            yield
        finally:
            torch.set_num_threads(previous_threads)
            np.random.set_state(numpy_state)
            random.setstate(python_state)
