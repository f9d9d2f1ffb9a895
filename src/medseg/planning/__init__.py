"""Automatic configuration: dataset fingerprint → rules → :class:`Plan` (plan.json, editable).

Typical use::

    from medseg.datasets import load_dataset
    from medseg.planning import compute_fingerprint, make_plan
    plan = make_plan(compute_fingerprint(load_dataset("data/ACDC")))
    plan.save("plan.json"); plan = Plan.load("plan.json")
"""

from medseg.planning.cost import unet_step_cost
from medseg.planning.fingerprint import compute_fingerprint
from medseg.planning.machine import Machine, detect_machine, measure_throughput
from medseg.planning.plan import Plan, PlanError, validate_plan
from medseg.planning.rules import make_plan
from medseg.planning.topology import network_topology

__all__ = [
    "compute_fingerprint", "make_plan", "Plan", "PlanError", "validate_plan", "Machine", "detect_machine",
    "measure_throughput", "network_topology", "unet_step_cost",
]
