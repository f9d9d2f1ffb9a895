"""What one ``medseg serve`` process accepts: upload size, image size, concurrent and queued jobs, job time.

Every limit is a plain number in :class:`ServeLimits`; :func:`create_app` takes one and the CLI builds it
from its options. The defaults suit a 2-core, few-GiB machine: one job at a time (a second job would only
halve the speed of the first), a 2D fundus photograph or a 3D CT volume of a few hundred slices.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from medseg.errors import MedsegError

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServeLimits:
    """Limits of one service.

    Parameters
    ----------
    max_upload_bytes : int
        Largest request body of ``POST /predict`` (the uploaded file); larger → 413.
    max_unzipped_bytes : int
        Largest total size of a zipped DICOM series once extracted (zip bombs stop here).
    max_zip_members : int
        Most files in a zipped DICOM series.
    max_voxels : int
        Largest image (voxels × channels) accepted, checked from the header before the pixels are read.
    max_concurrent_jobs : int
        Jobs predicting at once, each in its own worker process.
    max_queued_jobs : int
        Jobs waiting or running; a further upload gets 503 until one finishes.
    job_timeout_s : float
        A job still running after this many seconds is stopped (its worker process is ended and replaced).
    result_ttl_s : float
        Finished jobs' files are removed this many seconds after they finished.
    max_kept_jobs : int
        Most finished jobs kept; the oldest are removed first.
    threads_per_job : int
        Torch threads of each worker (default: the cores shared among the concurrent jobs).

    Examples
    --------
    >>> ServeLimits(max_concurrent_jobs=2).max_concurrent_jobs
    2
    """

    max_upload_bytes: int = 512 * MIB
    max_unzipped_bytes: int = 2048 * MIB
    max_zip_members: int = 5000
    max_voxels: int = 512 * 512 * 512
    max_concurrent_jobs: int = 1
    max_queued_jobs: int = 32
    job_timeout_s: float = 600.0
    result_ttl_s: float = 3600.0
    max_kept_jobs: int = 100
    threads_per_job: int = 0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name == "threads_per_job":
                if value < 0:
                    raise MedsegError(f"serve limit {name} must be ≥ 0 (0: automatic), not {value}")
            elif not value > 0:
                raise MedsegError(f"serve limit {name} must be positive, not {value}")
        if self.max_queued_jobs < self.max_concurrent_jobs:
            raise MedsegError(f"max_queued_jobs ({self.max_queued_jobs}) must be at least max_concurrent_jobs "
                              f"({self.max_concurrent_jobs})")

    @property
    def threads(self) -> int:
        """Torch threads per worker: the machine's cores shared among the concurrent jobs unless set."""
        if self.threads_per_job:
            return self.threads_per_job
        return max(1, (os.cpu_count() or 1) // self.max_concurrent_jobs)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "threads_per_job": self.threads}
