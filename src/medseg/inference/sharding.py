"""Prediction beyond one process: a deterministic share of the cases for one job of an array (``--shard
I/N``) and a pool of worker processes sharing the cores (``--workers K``).

Both keep outputs identical to a single run: a shard is a fixed subset of the sorted case names, and every
worker runs the very function a single run calls, with its own copy of the predictor.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from medseg.errors import MedsegError

T = TypeVar("T")
R = TypeVar("R")

# The state a worker process builds once (its predictor) and hands to every case it runs. One slot per
# worker *process*: it is set by the pool's initializer, never in the parent.
_worker_state: Any = None


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``1 <= I <= N`` (shard I of N, as array-job indices 1..N).

    Examples
    --------
    >>> parse_shard("2/5")
    (2, 5)
    """
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise MedsegError(f"--shard takes I/N (shard I of N, 1 <= I <= N), e.g. 1/4; got '{text}'") from None
    if count < 1 or not 1 <= index <= count:
        raise MedsegError(f"--shard I/N needs 1 <= I <= N; got '{text}'")
    return index, count


def shard_items(items: Iterable[T], index: int, count: int, key: Callable[[T], str]) -> list[T]:
    """The ``index``-th of ``count`` disjoint shares of ``items`` (1-based), whatever their order.

    Items are sorted by ``key`` (the case name) and dealt round-robin, so shards differ in size by one at
    most and the N shards together hold every item exactly once.

    Examples
    --------
    >>> names = ["c", "a", "e", "b", "d"]
    >>> [shard_items(names, i, 2, key=str) for i in (1, 2)]
    [['a', 'c', 'e'], ['b', 'd']]
    """
    ordered = sorted(items, key=key)
    keys = [key(item) for item in ordered]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:  # the split must not depend on the input order
        raise MedsegError("case names are not unique, so shards would not be well defined: "
                          + ", ".join(duplicates[:5]))
    return ordered[index - 1::count]


def shard_file_name(name: str, index: int, count: int) -> str:
    """A per-shard name for a file that every shard would otherwise rewrite in a shared output folder.

    Examples
    --------
    >>> shard_file_name("volumes.csv", 2, 4)
    'volumes.shard-2-of-4.csv'
    """
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.shard-{index}-of-{count}.{suffix}" if dot else f"{name}.shard-{index}-of-{count}"


def threads_per_worker(workers: int, threads: int | None = None) -> int:
    """Threads for each of ``workers`` processes sharing ``threads`` (default: all cores); one at least."""
    total = threads or os.cpu_count() or 1
    return max(1, total // max(1, workers))


def _init_worker(make_state: Callable[[], Any], threads: int) -> None:
    global _worker_state
    import torch

    torch.set_num_threads(threads)
    _worker_state = make_state()


def _run_in_worker(fn: Callable[[Any, T], R], item: T) -> R:
    return fn(_worker_state, item)


def map_cases(fn: Callable[[Any, T], R], items: Sequence[T], *, state: Any = None,
              make_state: Callable[[], Any] | None = None, workers: int = 1,
              threads: int | None = None) -> Iterator[R]:
    """``fn(state, item)`` for every item, in order, in this process or in ``workers`` processes.

    Parameters
    ----------
    fn : callable
        A module-level function (workers import it by name), e.g. the per-case body of ``medseg predict``.
    items : sequence
        Picklable work items (case name, input files, output paths...).
    state : object, optional
        What ``fn`` receives in a single-process run (the predictor already built).
    make_state : callable, optional
        Picklable factory that each worker process calls once to build its own ``state``
        (e.g. ``functools.partial(Predictor.from_folders, folders)``); required when ``workers > 1``.
    workers : int
        1 runs in this process. K > 1 starts K processes (``spawn``: no thread pool or lock is
        inherited), each with ``threads // K`` threads, and yields their results in item order.
    threads : int, optional
        Threads to share (default: all cores).

    Yields
    ------
    The results of ``fn``, in the order of ``items``.

    Examples
    --------
    >>> list(map_cases(lambda state, x: state + x, [1, 2], state=10))
    [11, 12]
    """
    if workers < 1:
        raise MedsegError(f"--workers must be 1 or more; got {workers}")
    workers = min(workers, len(items)) or 1
    if workers == 1:
        if state is None and make_state is not None:
            state = make_state()
        for item in items:
            yield fn(state, item)
        return
    if make_state is None:
        raise MedsegError("a process pool needs make_state to build each worker's predictor")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker,
                               initargs=(make_state, threads_per_worker(workers, threads)))
    try:
        futures = [pool.submit(_run_in_worker, fn, item) for item in items]
        for future in futures:
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
