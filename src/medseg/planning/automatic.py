"""Planning a dataset in one call: fingerprint → machine → :class:`~medseg.planning.plan.Plan`.

``medseg plan`` runs it, and so does ``medseg train`` when it is given no plan (then with the
fingerprint measured during the dataset check's read of every case, so that no voxel is read twice).
"""

from __future__ import annotations

from typing import Any, Callable

from medseg.planning.fingerprint import compute_fingerprint
from medseg.planning.machine import Machine, detect_machine, measure_throughput
from medseg.planning.plan import Plan
from medseg.planning.rules import make_plan


def plan_dataset(dataset: Any, *, time_limit: float = 3600.0, step_seconds: float | None = None,
                 configuration: str | None = None, fingerprint: dict[str, Any] | None = None,
                 machine: Machine | None = None, measure: bool = False, use_gpu: bool = True, workers: int = 1,
                 progress: Callable[[int, int], None] | None = None) -> tuple[Plan, dict[str, Any]]:
    """Fingerprint ``dataset`` (unless ``fingerprint`` is given) and plan it for this machine.

    Parameters
    ----------
    dataset : Dataset
        From :func:`medseg.datasets.load_dataset`.
    time_limit : float
        Training wall-clock budget in seconds (sets the plan's iteration estimate).
    step_seconds : float, optional
        Target seconds per training step (default: the planner's, 1.5 in 2D, 4 in 3D; 2
        for a 3D short stack on a machine without bfloat16 units).
    configuration : {"2d", "3d"}, optional
        Force a configuration instead of the rule's choice (recorded as forced).
    fingerprint : dict, optional
        An already measured fingerprint (:class:`medseg.planning.fingerprint.FingerprintCollector`).
    machine : Machine, optional
        The budget; default :func:`detect_machine` (with ``use_gpu``), timed when ``measure``.
    measure : bool
        Time a small training step to measure this machine's throughput.
    workers : int
        Threads reading cases for the fingerprint.
    progress : callable, optional
        ``progress(done, total)`` after each fingerprinted case.

    Returns
    -------
    (Plan, dict)
        The plan and the fingerprint it was made from.

    Examples
    --------
    >>> import tempfile
    >>> from medseg.datasets import load_dataset, make_organs3d
    >>> ds = load_dataset(make_organs3d(tempfile.mkdtemp() + "/o", cases=2, shape=(8, 16, 16)))
    >>> plan, fingerprint = plan_dataset(ds, time_limit=60)
    >>> plan.data_dims, fingerprint["num_cases"]
    (3, 2)
    """
    if fingerprint is None:
        fingerprint = compute_fingerprint(dataset, workers=max(1, workers), progress=progress)
    machine = machine or detect_machine(use_gpu=use_gpu)
    if measure:
        machine = measure_throughput(machine, fingerprint["summary"]["spatial_dims"])
    plan = make_plan(fingerprint, machine, time_limit=time_limit, step_seconds=step_seconds,
                     configuration=configuration.lower() if configuration else None)
    return plan, fingerprint
