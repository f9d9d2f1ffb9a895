"""What this machine can give a run now: memory (and the check made before any large allocation).

The lowest layer that needs it (image readers checking header-declared sizes) and the highest (the
planner's budgets) share these functions, so "available memory" means one thing everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def available_ram() -> int:
    """Bytes of RAM available now: ``MemAvailable`` from /proc/meminfo (else total physical memory),
    capped by a cgroup v2 memory limit when one is set."""
    ram = None
    meminfo = _read_text(Path("/proc/meminfo"))
    if meminfo:
        for line in meminfo.splitlines():
            if line.startswith("MemAvailable:"):
                ram = int(line.split()[1]) * 1024
                break
    if ram is None:
        try:
            ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            ram = 4 * 2**30  # nothing to go by: assume a small laptop
    limit = _read_text(Path("/sys/fs/cgroup/memory.max"))
    if limit and limit.strip().isdigit():
        ram = min(ram, int(limit.strip()))
    return int(ram)


def check_memory(needed_bytes: float, what: str, advice: str, path: str | Path | None = None) -> None:
    """Stop with a clear error, before the work starts, when ``what`` needs more RAM than is available.

    Parameters
    ----------
    needed_bytes : float
        Estimated peak memory of the step.
    what : str
        The step and its subject, e.g. ``"preparing case 'la_003' at spacing 0.3×0.3×0.3 mm"``.
    advice : str
        What the user can change.
    path : path, optional
        The file concerned (named in the error).

    Raises
    ------
    MedsegError
        ``needed_bytes`` exceeds :func:`available_ram`.

    Examples
    --------
    >>> check_memory(1024, "a tiny image", "nothing to change")
    """
    available = available_ram()
    if needed_bytes > available:
        from medseg.errors import MedsegError

        raise MedsegError(f"{what} needs about {needed_bytes / 2**30:.1f} GiB of memory but "
                          f"{available / 2**30:.1f} GiB is available: {advice}", path)
