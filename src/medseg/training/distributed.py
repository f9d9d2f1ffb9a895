"""Training on several processes and machines: PyTorch DistributedDataParallel, launched by PyTorch's own
elastic launcher (the engine behind ``torchrun``).

``medseg train --nproc N`` (``train(..., nproc=N)``) starts N worker processes on this machine with
:func:`torch.distributed.launcher.api.elastic_launch`; ``torchrun --nproc-per-node N [--nnodes M ...] -m
medseg train ...`` starts the same workers itself (also across machines). Either way each worker runs the
ordinary :func:`medseg.training.loop.train`, which joins the process group that the launcher describes
(:func:`joined`) and trains through the hooks of :class:`DistributedRun`:

- the model is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` (gradients averaged over
  the ranks after each backward pass);
- batch ``i`` of rank ``r`` is slice ``r`` of one global batch of ``batch × world size`` patches
  (:func:`medseg.training.data.make_batch` with ``shard``), so ranks see different patches, the run is
  reproducible from the seed and the same global batch trains like one process;
- rank 0 alone writes the model folder (checkpoints, log, weights, rules) and validates; the others
  never write into it;
- the wall-clock reading that drives the schedule and the time limit is rank 0's, broadcast every step,
  so every rank takes the same learning rate and stops at the same iteration (no rank left waiting);
- one failing rank ends all of them: the launcher stops the others and :func:`launch` raises its error as
  one line; the process group has a timeout (:data:`TIMEOUT`) for a machine that disappears.

The automatic choices (backend, threads per process, global batch, timeout) are named rules, recorded in
the model folder's rules.json and printed.
"""

from __future__ import annotations

import logging
import os
import signal
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator, Mapping

import torch
import torch.distributed as dist

from medseg.errors import MedsegError
from medseg.planning.training_rules import Rule, user_rule

#: Seconds a rank waits in a collective before the run fails: longer than rank 0's validation (the others
#: wait for it in their next step) on the large 3D sets, short enough that a lost machine ends the run.
TIMEOUT = 1800.0
#: What the launchers (torchrun, elastic_launch) put in each worker's environment.
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedRun:
    """This process's place in the run; the single-process run is ``DistributedRun()``.

    Every collective method is a no-op returning its input when ``world_size == 1``.
    """

    rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that prints, validates and writes the model folder."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank, self.world_size

    def agree(self, value: float) -> float:
        """Rank 0's ``value`` on every rank (the clock that decides the schedule and when to stop)."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks (the logged loss is the global batch's)."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def from_main(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object) on every rank."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def batch_note(self, batch_size: int) -> str:
        """`` per process × 2 processes = 8`` for the run's summary line ('' in a single process)."""
        if not self.distributed:
            return ""
        return f" per process × {self.world_size} processes = {batch_size * self.world_size}"

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the optimisation step calls: DistributedDataParallel over ``model`` (its parameters
        are broadcast from rank 0), or ``model`` itself in a single process.

        ``static_graph``: the parameters a step uses are the same at every step (the loop never changes
        them under DDP), which lets DDP skip those that get no gradient (LiteMedSAM's unused prompt
        embeddings) without searching the graph at every step as ``find_unused_parameters`` does.
        """
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, static_graph=True)


class NullLog:
    """The training log of the ranks other than 0: rows are not kept, nothing is written."""

    @property
    def rows(self) -> list:
        return []

    def add(self, row: dict[str, Any]) -> None:
        pass

    def write(self) -> None:
        pass

    def plot(self) -> None:
        return None

    def close(self) -> None:
        pass


def launcher_environment(environ: Mapping[str, str] | None = None) -> dict[str, int] | None:
    """``{"rank", "world_size", "local_world_size"}`` when a launcher started this process as one of
    several workers (torchrun, elastic_launch), else None."""
    env = os.environ if environ is None else environ
    if not all(env.get(k) for k in LAUNCHER_VARIABLES):
        return None
    try:
        world = int(env["WORLD_SIZE"])
        rank = int(env["RANK"])
        local_world = int(env.get("LOCAL_WORLD_SIZE") or world)
    except ValueError:
        raise MedsegError(f"cannot read the launcher's RANK={env['RANK']!r} / WORLD_SIZE={env['WORLD_SIZE']!r}") \
            from None
    return {"rank": rank, "world_size": world, "local_world_size": local_world} if world > 1 else None


@contextmanager
def joined(timeout: float = TIMEOUT) -> Iterator[DistributedRun]:
    """The process group this process belongs to, for the duration of a run.

    Joins (and afterwards leaves) the group that a launcher described in the environment; uses one the
    caller already initialised as it is; a plain process is ``DistributedRun()``.
    """
    if dist.is_available() and dist.is_initialized():
        yield DistributedRun(dist.get_rank(), dist.get_world_size(),
                             int(os.environ.get("LOCAL_WORLD_SIZE") or dist.get_world_size()), dist.get_backend())
        return
    place = launcher_environment()
    if place is None:
        yield DistributedRun()
        return
    backend = rule_backend("cpu").value
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
    except (RuntimeError, ValueError) as exc:
        raise MedsegError(f"cannot join the process group at {os.environ.get('MASTER_ADDR')}:"
                          f"{os.environ.get('MASTER_PORT')}: {exc}") from None
    try:
        yield DistributedRun(place["rank"], place["world_size"], place["local_world_size"], backend)
    finally:
        dist.destroy_process_group()


# --- the rules ---------------------------------------------------------------------------------------
def rule_backend(device_type: str) -> Rule:
    """NCCL for tensors on CUDA GPUs, gloo for tensors on the CPU (medseg's trainer trains on the CPU)."""
    value = "nccl" if device_type == "cuda" else "gloo"
    reason = ("NCCL reduces gradients between GPUs" if value == "nccl" else
              "the training tensors are on the CPU, where gloo reduces gradients (NCCL needs CUDA tensors)")
    return Rule("distributed.backend", "Process-group backend", value, value, reason, {"device": device_type})


def rule_threads(requested: int | None, cores: int, local_world_size: int) -> Rule:
    """The user's ``--threads`` per process; else this machine's cores divided among its processes."""
    title = "Threads per process"
    if requested:
        return user_rule("distributed.threads", title, int(requested), f"{requested} per process", "--threads")
    value = max(1, cores // local_world_size)
    return Rule("distributed.threads", title, value, f"{value} per process",
                f"{cores} core(s) shared by {local_world_size} process(es) on this machine, so that they do not "
                "compete for cores", {"cores": cores, "local_processes": local_world_size})


def rule_global_batch(batch_size: int, world_size: int) -> Rule:
    """Each rank trains on ``batch_size`` patches; the gradient is the mean over all ranks' patches."""
    value = {"per_process": int(batch_size), "processes": int(world_size), "global": int(batch_size * world_size)}
    return Rule("distributed.global_batch", "Global batch", value,
                f"{batch_size} patches per process × {world_size} processes = {batch_size * world_size} per step",
                "gradients are averaged over the processes (DistributedDataParallel), so a step learns from the "
                "patches of every process; batch-norm statistics stay per process (SyncBatchNorm needs GPUs)",
                {"batch_size": int(batch_size), "world_size": int(world_size)})


def rule_timeout(world_size: int) -> Rule:
    return Rule("distributed.timeout", "Process-group timeout", TIMEOUT, f"{TIMEOUT / 60:.0f} minutes",
                "longer than a validation on rank 0, which the other processes wait for; a process that fails "
                "ends all of them at once (the launcher stops the rest)", {"world_size": int(world_size)})


def run_rules(run: DistributedRun, batch_size: int, threads: Rule | None) -> list[Rule]:
    """The rules of a multi-process run, for rules.json (none for a single process)."""
    if not run.distributed:
        return []
    rules = [rule_backend("cpu")] + ([threads] if threads is not None else [])
    return rules + [rule_global_batch(batch_size, run.world_size), rule_timeout(run.world_size)]


def threads_rule(requested: int | None, environ: Mapping[str, str] | None = None) -> Rule | None:
    """:func:`rule_threads` for a worker of a multi-process run (None in a single process)."""
    place = launcher_environment(environ)
    if place is None and not (dist.is_available() and dist.is_initialized()):
        return None
    from medseg.planning.machine import cpu_cores

    local = place["local_world_size"] if place else int(os.environ.get("LOCAL_WORLD_SIZE") or dist.get_world_size())
    return rule_threads(requested, cpu_cores(), local)


# --- launching ---------------------------------------------------------------------------------------
def launch(nproc: int, function: Callable[..., Any], *args: Any) -> Any:
    """Run ``function(*args)`` in ``nproc`` worker processes on this machine; return rank 0's result.

    The workers are started by :func:`torch.distributed.launcher.api.elastic_launch` (what ``torchrun
    --standalone`` uses: a c10d rendezvous on a free loopback port, no restarts), which puts RANK,
    WORLD_SIZE, MASTER_ADDR/PORT... in each worker's environment. If one worker fails, the launcher stops
    the others and its error is raised here as one :class:`MedsegError` line.

    Parameters
    ----------
    nproc : int
        Worker processes (>= 1).
    function : callable
        A module-level (picklable) function; its arguments must be picklable too.

    Returns
    -------
    What ``function`` returned on rank 0.
    """
    if nproc < 1:
        raise MedsegError(f"--nproc must be at least 1, not {nproc}")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"medseg-{uuid.uuid4().hex[:12]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1,
                          start_method="spawn")
    with _quiet_launcher():
        try:
            results = elastic_launch(config, _worker)(function, *args)
        except ChildFailedError as exc:
            raise MedsegError(failure_line(exc)) from None
        except SignalException as exc:  # Ctrl-C / kill: the launcher has stopped the workers (rank 0 checkpoints)
            raise KeyboardInterrupt(str(exc)) from None
    return results[0]


def _worker(function: Callable[..., Any], *args: Any) -> Any:
    """A worker's body: the error file the launcher reads is written by its ``record`` wrapper.

    The launcher stops workers with SIGTERM (Ctrl-C or kill of ``medseg train``, or another worker's
    failure); as in the single-process command it becomes KeyboardInterrupt, so rank 0 keeps the finished
    iterations in checkpoint_last.pt for ``--resume``.
    """
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    return function(*args)


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def failure_line(exc: Any) -> str:
    """One line for a failed run: the first failing rank and its exception's message."""
    rank, failure = exc.get_first_failure()
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message", "")
    text = str(message or "").strip().splitlines()
    if not text or text[0].startswith("To enable traceback"):  # no Python exception was recorded (e.g. a
        # script calling train(..., nproc=N) without `if __name__ == "__main__":`, which spawn needs)
        return f"training process {rank} ended with exit code {failure.exitcode} without reporting an error"
    line = text[0]
    kind, _, rest = line.partition(": ")
    if kind in _medseg_error_names():  # worded for the user already
        line = rest
    elif "Signal" in line:
        line = f"stopped ({line})"
    return f"training process {rank} failed: {line}"


def _medseg_error_names() -> set[str]:
    names, todo = set(), [MedsegError]
    while todo:
        kind = todo.pop()
        names.add(kind.__name__)
        todo += kind.__subclasses__()
    return names


@contextmanager
def _quiet_launcher() -> Iterator[None]:
    """The elastic agent logs every start and stop (and the stopping of the other workers after a failure)
    at INFO/WARNING; :func:`launch` reports a failure itself, in one line."""
    # torch's elastic modules set their own loggers' levels, so each one is quietened, not just the parent
    prefixes = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing")
    names = [n for n in list(logging.root.manager.loggerDict) if n.startswith(prefixes)]
    loggers = [logging.getLogger(name) for name in {*names, *prefixes}]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, previous):
            logger.setLevel(level)
