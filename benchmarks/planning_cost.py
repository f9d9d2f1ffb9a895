"""What planning costs when `medseg train` gets no plan: the dataset check alone, the check with the
fingerprint measured from the same read (what `medseg train` does) and the plan made from it, and a
separate fingerprint pass (what `medseg plan` does, reading every case again).

    .venv/bin/python benchmarks/planning_cost.py ../shared/data/ACDC ../shared/data/BraTS

One thread, one run each (the first read warms the page cache, so every timed pass reads cached
files: the numbers are CPU cost, not disk); wall-clock and CPU seconds (CPU time is less disturbed by
other jobs on a shared machine, wall-clock is what a user waits).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="+", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from medseg.datasets import check_dataset, load_dataset
    from medseg.planning.automatic import plan_dataset
    from medseg.planning.fingerprint import FingerprintCollector, compute_fingerprint

    for root in args.datasets:
        dataset = load_dataset(root)
        check_dataset(dataset)  # warm the page cache

        def timed(run):
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            return time.perf_counter() - wall, time.process_time() - cpu

        def check_and_plan():
            collector = FingerprintCollector(dataset)
            check_dataset(dataset, on_case=collector.add)
            plan_dataset(dataset, time_limit=1200.0, fingerprint=collector.fingerprint())

        check = timed(lambda: check_dataset(dataset))
        together = timed(check_and_plan)
        separate = timed(lambda: compute_fingerprint(dataset))
        print(f"{dataset.name}: {len(dataset.cases)} training + {len(dataset.test_cases)} test cases; seconds wall / "
              f"CPU: check {check[0]:.1f} / {check[1]:.1f}; check + fingerprint from the same read + plan "
              f"{together[0]:.1f} / {together[1]:.1f} (planning adds {together[1] - check[1]:.1f} s CPU); a separate "
              f"fingerprint pass (medseg plan) {separate[0]:.1f} / {separate[1]:.1f}", flush=True)

if __name__ == "__main__":
    main()
