"""The job queue: bounded concurrency (one worker process per slot), a time limit per job, and cleanup.

A job is queued by ``POST /predict`` once its upload has been read and checked. Each of
``limits.max_concurrent_jobs`` slots is a thread that owns one worker process (:mod:`medseg.serve.worker`):
it hands the worker one job at a time and relays its progress. A job over ``limits.job_timeout_s`` has its
worker ended (the only way to stop native code for certain) and a fresh worker is started for the next
job. Finished jobs keep their files for ``limits.result_ttl_s`` seconds (at most ``limits.max_kept_jobs``
of them); failed and expired jobs' folders are removed at once.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.constants import DEFAULT_BACKEND
from medseg.serve.errors import RequestError
from medseg.serve.limits import ServeLimits
from medseg.serve.uploads import remove_tree

ACTIVE = ("queued", "running")
WORKER_SCRATCH = "worker-tmp"  # the workers' temporary folder inside the server's; job ids are hex, never this


@dataclass
class Job:
    """One prediction request and its state."""

    id: str
    model: str
    folder: Path
    source: Path
    kind: str
    status: str = "queued"  # queued → running → done | failed
    stage: str = "queued"
    progress: float = 0.0
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """What ``GET /jobs/{id}`` shows (no server paths)."""
        now = time.time()
        return {
            "id": self.id, "model": self.model, "status": self.status, "stage": self.stage,
            "progress": round(self.progress, 3), "error": self.error,
            "queued_seconds": round((self.started or now) - self.created, 3),
            "run_seconds": round((self.finished or now) - self.started, 3) if self.started else 0.0,
            "formats": self.info.get("formats", []), "notes": self.info.get("notes", {}),
            "shape": self.info.get("shape"), "warnings": self.info.get("warnings", []),
        }


def new_job_id() -> str:
    """An unguessable job id (128 random bits, hex)."""
    return uuid.uuid4().hex


class _Slot(threading.Thread):
    """One concurrent job: a thread that drives one worker process."""

    def __init__(self, jobs: "JobQueue", index: int):
        super().__init__(name=f"medseg-serve-slot-{index}", daemon=True)
        self.jobs = jobs
        self.process = None
        self.conn = None

    def _start_worker(self) -> str | None:
        """Start a worker and wait until its models are loaded; returns an error message or None."""
        from medseg.serve.worker import worker_main

        context = multiprocessing.get_context("spawn")  # fork is unsafe beside torch and server threads
        parent, child = context.Pipe()
        self.process = context.Process(target=worker_main, args=(child, self.jobs.model_folders,
                                                                   self.jobs.limits.threads, self.jobs.backend,
                                                                   self.jobs.predictor_options,
                                                                   str(self.jobs.scratch)),
                                       daemon=True, name="medseg-serve-worker")
        try:
            self.process.start()
        except Exception as exc:  # noqa: BLE001 — the slot must live on to fail its jobs with the reason
            self.process = None
            parent.close()
            return f"the worker process could not start: {type(exc).__name__}: {exc}"
        finally:
            child.close()
        self.conn = parent
        while not self.jobs.stopping.is_set():
            if parent.poll(0.2):
                try:
                    message = parent.recv()
                except EOFError:
                    break
                if message[0] == "ready":
                    return None
                self._stop_worker()
                return f"the worker could not load the models: {message[1]}"
            if not self.process.is_alive():
                break
        code = self.process.exitcode if self.process is not None else None
        self._stop_worker()
        return f"the worker process ended while loading the models (exit code {code})"

    def _stop_worker(self, graceful: bool = False) -> None:
        if self.process is None:
            return
        if graceful and self.process.is_alive():
            try:
                self.conn.send(None)
            except (OSError, ValueError):
                pass
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        if self.conn is not None:
            self.conn.close()
        self.process = self.conn = None

    def run(self) -> None:
        error = self._start_worker()  # warm: models loaded before the first upload
        while True:
            job = self.jobs.pending.get()
            if job is None:
                break
            if self.process is None or not self.process.is_alive():
                error = self._start_worker()
            if error:
                self.jobs.finish(job, "failed", error=error)
                error = None  # try a fresh worker for the next job
                continue
            self._run(job)
        self._stop_worker(graceful=True)

    def _run(self, job: Job) -> None:
        limits = self.jobs.limits
        self.jobs.update(job, status="running", stage="starting", started=time.time())
        deadline = time.monotonic() + limits.job_timeout_s
        try:
            self.conn.send(("job", job.id, job.model, str(job.source), str(job.folder), job.kind))
        except (OSError, ValueError):
            self._stop_worker()
            self.jobs.finish(job, "failed", error="the worker process was not reachable; try again")
            return
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._stop_worker()
                self.jobs.finish(job, "failed", error=f"stopped after the time limit of {limits.job_timeout_s:g} s")
                return
            if self.jobs.stopping.is_set():
                self._stop_worker()
                self.jobs.finish(job, "failed", error="the server is shutting down")
                return
            try:
                ready = self.conn.poll(min(remaining, 0.25))
                message = self.conn.recv() if ready else None
            except (EOFError, OSError):
                message, ready = None, True
            if message is None:
                if ready or not self.process.is_alive():
                    code = self.process.exitcode
                    self._stop_worker()
                    self.jobs.finish(job, "failed", error=f"the worker process ended (exit code {code}); "
                                     "the image may need more memory than the server has")
                    return
                continue
            kind = message[0]
            if kind == "progress":
                self.jobs.update(job, progress=message[2], stage=message[3])
            elif kind == "done":
                self.jobs.finish(job, "done", info=message[2])
                return
            elif kind == "failed":
                self.jobs.finish(job, "failed", error=message[2])
                return


class JobQueue:
    """Jobs of one service: submit, look up, expire; ``start``/``stop`` the worker slots.

    Parameters
    ----------
    model_folders : dict
        Model name → folder.
    limits : ServeLimits
    root : Path
        The server-owned folder that holds one sub-folder per job, and the workers' temporary folder
        (:data:`WORKER_SCRATCH`), removed by :meth:`stop`.
    backend : str
        Inference backend of the workers (see :meth:`medseg.Predictor.from_folder`).
    predictor_options : dict, optional
        Further options of :meth:`medseg.Predictor.from_folder` (tile size, TTA, ...).
    """

    def __init__(self, model_folders: dict[str, str], limits: ServeLimits, root: Path, backend: str = DEFAULT_BACKEND,
                 predictor_options: dict[str, Any] | None = None):
        self.model_folders = {k: str(v) for k, v in model_folders.items()}
        self.limits = limits
        self.root = Path(root)
        self.scratch = self.root / WORKER_SCRATCH
        self.backend = backend
        self.predictor_options = dict(predictor_options or {})
        self.pending: queue.Queue[Job | None] = queue.Queue()
        self.stopping = threading.Event()
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._slots = [_Slot(self, i) for i in range(limits.max_concurrent_jobs)]

    def start(self) -> None:
        self.scratch.mkdir(parents=True, exist_ok=True)
        for slot in self._slots:
            slot.start()

    def stop(self) -> None:
        """Stop the workers (running jobs fail) and remove every job's files."""
        self.stopping.set()
        for _ in self._slots:
            self.pending.put(None)
        for slot in self._slots:
            if slot.is_alive():
                slot.join(15)
        with self._lock:
            for job in self._jobs.values():
                remove_tree(job.folder)
            self._jobs.clear()
        remove_tree(self.scratch)

    def new_folder(self) -> tuple[str, Path]:
        """A fresh job id and its (created) folder under the root."""
        job_id = new_job_id()
        folder = self.root / job_id
        folder.mkdir(parents=True)
        return job_id, folder

    def check_capacity(self) -> None:
        """503 when ``max_queued_jobs`` jobs are already waiting or running."""
        with self._lock:
            active = sum(job.status in ACTIVE for job in self._jobs.values())
        if active >= self.limits.max_queued_jobs:
            raise RequestError(503, f"the server is busy ({active} jobs queued or running); try again later")

    def submit(self, job: Job) -> Job:
        self.expire()
        self.check_capacity()
        with self._lock:
            self._jobs[job.id] = job
        self.pending.put(job)
        return job

    def get(self, job_id: str) -> Job:
        self.expire()
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise RequestError(404, f"unknown or expired job '{job_id[:64]}'")
        return job

    def update(self, job: Job, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(job, key, value)

    def finish(self, job: Job, status: str, error: str | None = None, info: dict[str, Any] | None = None) -> None:
        if status == "failed":
            remove_tree(job.folder)  # nothing left behind, and gone before anyone sees "failed"
        with self._lock:
            job.status, job.error, job.finished = status, error, time.time()
            job.stage = status
            if status == "done":
                job.progress, job.info = 1.0, dict(info or {})
        self.expire()

    def expire(self) -> None:
        """Remove finished jobs older than ``result_ttl_s`` and the oldest beyond ``max_kept_jobs``."""
        now = time.time()
        with self._lock:
            finished = sorted((j for j in self._jobs.values() if j.status not in ACTIVE), key=lambda j: j.finished)
            excess = len(finished) - self.limits.max_kept_jobs
            gone = [j for i, j in enumerate(finished) if i < excess or now - j.finished > self.limits.result_ttl_s]
            for job in gone:  # under the lock: once a job answers 404 its files are gone too
                remove_tree(job.folder)
                del self._jobs[job.id]

    def counts(self) -> dict[str, int]:
        with self._lock:
            out: dict[str, int] = {}
            for job in self._jobs.values():
                out[job.status] = out.get(job.status, 0) + 1
        return out
