"""What planning costs when `medseg train` gets no plan: the dataset check alone, the check with the
fingerprint measured from the same read (what `medseg train` does) and the plan made from it, and a
separate fingerprint pass (what `medseg plan` does, reading every case again).

    .venv/bin/python benchmarks/planning_cost.py ../shared/data/ACDC ../shared/data/BraTS

One thread, one run each (the first read warms the page cache, so every timed pass reads cached
files: the numbers are CPU cost, not disk). Timings on a shared machine are noisy.
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
        t0 = time.perf_counter()
        check_dataset(dataset)
        check = time.perf_counter() - t0
        t0 = time.perf_counter()
        collector = FingerprintCollector(dataset)
        check_dataset(dataset, on_case=collector.add)
        plan_dataset(dataset, time_limit=1200.0, fingerprint=collector.fingerprint())
        together = time.perf_counter() - t0
        t0 = time.perf_counter()
        compute_fingerprint(dataset)
        separate = time.perf_counter() - t0
        print(f"{dataset.name}: {len(dataset.cases)} training + {len(dataset.test_cases)} test cases; check "
              f"{check:.1f} s; check + fingerprint from the same read + plan {together:.1f} s (planning adds "
              f"{together - check:.1f} s); a separate fingerprint pass {separate:.1f} s", flush=True)


if __name__ == "__main__":
    main()
