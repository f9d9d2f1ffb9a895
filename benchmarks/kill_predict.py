"""Kill test: ``medseg predict`` of several cases, killed with SIGTERM and with SIGKILL at random moments.

A tiny vessel model is trained on a synthetic dataset, and one clean run gives the reference label maps
and probabilities and the time from the first written case to the end. Then each run starts
``medseg predict --probabilities`` into its own folder, waits until the first case appears, and after a
further random delay within that writing phase sends SIGTERM (even runs) or SIGKILL (odd runs), so the
signal lands while cases are being predicted and written. After each kill:

- every visible label map and probability file must be complete: readable and identical to the
  reference, and a probability file only beside its label map;
- after SIGTERM the exit code is 130 (or 0, or -15 from the default action, when every case was already
  written) and no hidden temporary remains;
  after SIGKILL hidden temporaries may remain (nothing can run on SIGKILL);
- a rerun (``--overwrite``) completes, every case equals the reference, and nothing hidden remains
  (the rerun removes what the killed run left).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/kill_predict.py --runs 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from medseg.datasets.synthetic import make_vessels2d
from medseg.io import read_image


def medseg(*args, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "medseg", *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)


def run(*args) -> float:
    t0 = time.perf_counter()
    proc = medseg(*args)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"medseg {' '.join(map(str, args))} failed: {err}")
    return time.perf_counter() - t0


def wait_first_output(out: Path, proc: subprocess.Popen, timeout: float = 300) -> float:
    """Seconds until ``out`` holds its first file (hidden temporaries included)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout and proc.poll() is None:
        if out.exists() and any(out.iterdir()):
            break
        time.sleep(0.01)
    return time.perf_counter() - t0


def files(folder: Path) -> tuple[dict[str, Path], list[Path]]:
    """Visible files by path relative to ``folder``, and hidden entries (anywhere below it)."""
    visible, hidden = {}, []
    if not folder.exists():
        return visible, hidden
    for path in folder.rglob("*"):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            hidden.append(path)
        elif path.is_file():
            visible[str(path.relative_to(folder))] = path
    return visible, hidden


def same(path: Path, reference: Path) -> bool:
    try:
        return np.array_equal(read_image(path).array, read_image(reference).array)
    except Exception:  # noqa: BLE001 - an unreadable file is an incomplete case
        return False


def check_complete(out: Path, ref: Path) -> list[str]:
    """Problems with the visible files in ``out`` (empty: only complete cases)."""
    problems = []
    visible, _ = files(out)
    for name, path in visible.items():
        if name == "volumes.csv":
            continue
        if not same(path, ref / name):
            problems.append(f"{name} differs from the reference or is unreadable")
        if name.startswith("probabilities/"):
            stem = Path(name).name.split(".")[0]
            if not any(Path(n).name.split(".")[0] == stem and "/" not in n for n in visible):
                problems.append(f"{name} without its label map")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cases", type=int, default=12, help="Test cases predicted per run.")
    parser.add_argument("--size", type=int, default=256, help="Image size (pixels).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="medseg-kill-") as tmp:
        work = Path(tmp)
        data = make_vessels2d(work / "data", cases=3, seed=0, size=args.size, test_cases=args.cases)
        run("train", data, "--out", work / "model", "--iterations", "3", "--patch-size", "64,64", "--batch-size", "2",
            "--features", "4", "--depth", "2", "--no-progress", "--threads", "1")
        ref = work / "ref"
        proc = medseg("predict", work / "model", "-i", data / "imagesTs", "-o", ref, "--probabilities", "--threads", "1")
        wait_first_output(ref, proc)
        t_first = time.perf_counter()
        proc.communicate()
        clean = time.perf_counter() - t_first  # the writing phase of a clean run
        if proc.returncode != 0:
            raise RuntimeError("the reference prediction failed")
        results = []
        for r in range(args.runs):
            sig = signal.SIGTERM if r % 2 == 0 else signal.SIGKILL
            out = work / f"out_{r}"
            delay = rnd.uniform(0.0, clean)
            proc = medseg("predict", work / "model", "-i", data / "imagesTs", "-o", out, "--probabilities",
                          "--threads", "1")
            wait_first_output(out, proc)
            time.sleep(delay)
            proc.send_signal(sig)
            _, err = proc.communicate()
            visible, hidden = files(out)
            cases_done = sum(1 for n in visible if n.endswith(".png"))
            problems = check_complete(out, ref)
            finished = cases_done == args.cases  # a signal after the last case ends the process by default
            if sig == signal.SIGTERM and proc.returncode not in (130, 0) and not finished:
                problems.append(f"SIGTERM exit code {proc.returncode}: {err.strip()[-200:]}")
            if sig == signal.SIGTERM and hidden:
                problems.append(f"hidden files after SIGTERM: {[p.name for p in hidden]}")
            hidden_after_kill = len(hidden)
            run("predict", work / "model", "-i", data / "imagesTs", "-o", out, "--probabilities", "--threads", "1",
                "--overwrite")
            visible, hidden = files(out)
            problems += check_complete(out, ref)
            if sum(1 for n in visible if n.endswith(".png")) != args.cases:
                problems.append("rerun did not complete every case")
            if hidden:
                problems.append(f"hidden files after the rerun: {[p.name for p in hidden]}")
            results.append({"run": r, "signal": sig.name, "delay_s": round(delay, 2), "exit": proc.returncode,
                            "cases_done_before_kill": cases_done, "hidden_left_by_kill": hidden_after_kill,
                            "problems": problems})
            print(json.dumps(results[-1]), flush=True)
        print(json.dumps({"runs": args.runs, "cases": args.cases, "writing_phase_s": round(clean, 2),
                          "runs_with_problems": sum(bool(r["problems"]) for r in results)}))


if __name__ == "__main__":
    main()
