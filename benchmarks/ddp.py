"""Multi-process training on one machine: 2 processes × 1 thread (DistributedDataParallel over gloo,
`medseg train --nproc 2`) against 1 process × 2 threads, on DRIVE patches with the same global batch.

Prints training steps per second of each (from the runs' training_log.csv, first logged row to last, so
start-up, case preparation and the final validation are not counted), the wall-clock seconds of each whole
command, and the equivalence check: the two loss curves (means over the log interval) side by side and
their largest relative difference. Both runs use instance norm and no augmentation, the conditions under
which the two are the same computation (batch-norm statistics stay per process; ranks above 0 draw their
own augmentation).

    .venv/bin/python benchmarks/ddp.py --drive ../shared/data/DRIVE --work /tmp/ddp_bench --iterations 300

Smoke run (tiny): add `--iterations 20 --patch-size 64`.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from _timing import run  # benchmarks/ is on sys.path when a script runs

VAL_CASES = "drive_39,drive_40"


def read_log(folder: Path) -> list[dict[str, float]]:
    with open(folder / "training_log.csv", newline="", encoding="utf-8") as fh:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(fh)]


def steps_per_second(rows: list[dict[str, float]]) -> float:
    """Iterations per second between the first and the last logged row (the steady state)."""
    timed = [r for r in rows if "loss" in r]
    first, last = timed[0], timed[-1]
    return (last["iteration"] - first["iteration"]) / max(1e-9, last["elapsed"] - first["elapsed"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drive", type=Path, default=Path("../shared/data/DRIVE"))
    parser.add_argument("--work", type=Path, required=True, help="Folder for the dataset and the two models.")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--patch-size", default="128")
    parser.add_argument("--global-batch", type=int, default=4, help="Patches per step over all processes.")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    n = args.processes
    if args.global_batch % n:
        parser.error(f"--global-batch {args.global_batch} is not divisible by {n} processes")

    medseg = [sys.executable, "-m", "medseg"]
    data = args.work / "dataset"
    if not data.exists():
        run(medseg + ["convert", "drive", str(args.drive), str(data)])
    common = ["--iterations", str(args.iterations), "--patch-size", args.patch_size, "--val-cases", VAL_CASES,
              "--val-every", str(args.iterations + 1), "--net-option", "norm=instance", "--no-augmentation",
              "--memory-format", "contiguous", "--seed", "0", "--overwrite", "--no-progress"]
    one, many = args.work / "model_1x{}".format(n), args.work / "model_{}x1".format(n)
    seconds_one = run(medseg + ["train", str(data), "--out", str(one), "--threads", str(n),
                                "--batch-size", str(args.global_batch), *common])
    seconds_many = run(medseg + ["train", str(data), "--out", str(many), "--threads", "1", "--nproc", str(n),
                                 "--batch-size", str(args.global_batch // n), *common])

    log_one, log_many = read_log(one), read_log(many)
    curve = [(a["iteration"], a["loss"], b["loss"]) for a, b in zip(log_one, log_many) if "loss" in a and "loss" in b]
    worst = max(abs(b - a) / abs(a) for _, a, b in curve)
    result = {
        "iterations": args.iterations, "patch_size": args.patch_size, "global_batch": args.global_batch,
        f"steps_per_second_1x{n}_threads": steps_per_second(log_one),
        f"steps_per_second_{n}x1_processes": steps_per_second(log_many),
        f"command_seconds_1x{n}_threads": seconds_one, f"command_seconds_{n}x1_processes": seconds_many,
        "loss_curve_max_relative_difference": worst,
    }
    (args.work / "result_ddp.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("\n| setting | steps/s (steady) | whole command (s) |\n|---|---|---|")
    print(f"| 1 process × {n} threads, batch {args.global_batch} | {result[f'steps_per_second_1x{n}_threads']:.3f} "
          f"| {seconds_one:.0f} |")
    print(f"| {n} processes × 1 thread, batch {args.global_batch // n} each | "
          f"{result[f'steps_per_second_{n}x1_processes']:.3f} | {seconds_many:.0f} |")
    print(f"\nloss curves (iteration, 1×{n}, {n}×1):")
    for iteration, a, b in curve:
        print(f"  {int(iteration):>6} {a:.6f} {b:.6f}")
    print(f"largest relative difference: {worst:.2e}")


if __name__ == "__main__":
    main()
