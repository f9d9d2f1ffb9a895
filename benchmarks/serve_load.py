"""Load test of `medseg serve`: mixed requests on loopback with bounded concurrency, then the time from
upload to a viewable result for whole images.

Starts `medseg serve MODEL --port 0` in a subprocess, then C virtual users each loop: upload a case
(POST /predict), poll GET /jobs/{id} every POLL seconds until it is done, GET /models, GET the volumes —
until N requests have been sent in total. Every non-2xx answer (and every failed job) is an error.
Reports latency percentiles per request kind, jobs per second, and the server's peak memory (the peak RSS
of the server process and of each worker process, from /proc, summed: an upper bound of the joint peak).
Then, with the server idle, times `upload → job done → preview + image and label slices fetched` (what the
viewer needs to draw) for each --viewable image.

    .venv/bin/python benchmarks/serve_load.py MODEL --case CASE.png --requests 1000 --concurrency 8 \\
        --viewable ../shared/data/DRIVE/test/images/01_test.tif

The case must be one the model accepts: a fundus model that records its camera's field of view refuses an
image without an aperture to fit (a crop), so upload a whole photograph to such a model.

Needs httpx (the dev extra).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out + [g for c in out for g in _children(c)]


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemoryWatch(threading.Thread):
    """Samples the server tree's RSS every 0.1 s; keeps each process's peak (VmHWM) and the largest sum."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.stop, self.peaks, self.max_total, self.names = pid, threading.Event(), {}, 0, {}

    def run(self) -> None:
        while not self.stop.is_set():
            pids = [self.pid] + _children(self.pid)
            total = 0
            for p in pids:
                total += _status_kib(p, "VmRSS")
                self.peaks[p] = max(self.peaks.get(p, 0), _status_kib(p, "VmHWM"))
            self.max_total = max(self.max_total, total)
            for p in pids:
                if p not in self.names:
                    try:
                        cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                    except OSError:
                        cmd = ""
                    self.names[p] = ("server" if p == self.pid else "resource tracker" if "resource_tracker" in cmd
                                     else "worker")
            time.sleep(0.1)


def start_server(model: Path, work: Path, threads: int, extra: list[str]) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "medseg", "serve", str(model), "--port", "0", "--threads", str(threads),
               "--work-dir", str(work), *extra]
    print("$", shlex.join(command), flush=True)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, encoding="utf-8")
    line = proc.stdout.readline()
    if "viewer at " not in line:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, line.split("viewer at ")[1].split()[0]


def wait_ready(client, url: str, model: str, case: bytes) -> float:
    """One job end to end (the worker loads the models first); returns its seconds."""
    start = time.perf_counter()
    job = client.post(f"{url}predict", data={"model": model}, files={"file": ("case", case)}).json()["id"]
    while client.get(f"{url}jobs/{job}").json()["status"] not in ("done", "failed"):
        time.sleep(0.05)
    return time.perf_counter() - start


def load(url: str, model: str, case: bytes, requests: int, concurrency: int, poll: float) -> dict:
    import httpx

    lock = threading.Lock()
    sent = [0]
    latencies: dict[str, list[float]] = {"predict": [], "status": [], "models": [], "volumes": []}
    errors: list[str] = []
    jobs_done = [0]

    def take() -> bool:
        with lock:
            if sent[0] >= requests:
                return False
            sent[0] += 1
            return True

    def timed(client, kind: str, method: str, path: str, **kwargs):
        start = time.perf_counter()
        response = client.request(method, url + path, **kwargs)
        elapsed = time.perf_counter() - start
        with lock:
            latencies[kind].append(elapsed)
            if response.status_code >= 300:
                errors.append(f"{kind} {response.status_code} {response.text[:200]}")
        return response

    def user() -> None:
        with httpx.Client(timeout=120) as client:
            while take():
                job = timed(client, "predict", "POST", "predict", data={"model": model},
                            files={"file": ("case", case)}).json().get("id")
                while job is not None:
                    if not take():
                        return
                    status = timed(client, "status", "GET", f"jobs/{job}").json()
                    if status.get("status") == "failed":
                        with lock:
                            errors.append(f"job failed: {status.get('error')}")
                        break
                    if status.get("status") == "done":
                        with lock:
                            jobs_done[0] += 1
                        break
                    time.sleep(poll)
                if not take():
                    return
                timed(client, "models", "GET", "models")
                if job is not None and take():
                    timed(client, "volumes", "GET", f"jobs/{job}/volumes")

    start = time.perf_counter()
    threads = [threading.Thread(target=user) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"seconds": time.perf_counter() - start, "latencies": latencies, "errors": errors,
            "jobs_done": jobs_done[0], "sent": sent[0]}


def viewable(client, url: str, model: str, path: Path) -> float:
    """Seconds from the upload to the job done and the first preview slices (image + labels) fetched."""
    start = time.perf_counter()
    response = client.post(f"{url}predict", data={"model": model}, files={"file": (path.name, path.read_bytes())})
    response.raise_for_status()
    job = response.json()["id"]
    while (status := client.get(f"{url}jobs/{job}").json())["status"] not in ("done", "failed"):
        time.sleep(0.05)
    if status["status"] != "done":
        raise SystemExit(f"{path}: job failed: {status['error']}")
    preview = client.get(f"{url}jobs/{job}/preview").json()
    middle = (preview["slices"] - 1) // 2
    for kind in ("image", "labels"):
        client.get(f"{url}jobs/{job}/preview/{kind}/{middle}.png").raise_for_status()
    client.get(f"{url}jobs/{job}/volumes").raise_for_status()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--case", type=Path, required=True, help="the image the load test uploads")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between status polls of one user")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the server's worker")
    parser.add_argument("--viewable", type=Path, nargs="*", default=[], help="images to time upload → viewable")
    parser.add_argument("--backend", default="auto", help="the server's --backend (its default: auto)")
    parser.add_argument("--tile-size", default=None, help="the server's --tile-size")
    args = parser.parse_args()

    import httpx

    model = args.model.resolve().name
    case = args.case.read_bytes()
    with tempfile.TemporaryDirectory() as work:
        extra = ["--backend", args.backend] + (["--tile-size", args.tile_size] if args.tile_size else [])
        proc, url = start_server(args.model, Path(work), args.threads, extra)
        watch = MemoryWatch(proc.pid)
        watch.start()
        try:
            with httpx.Client(timeout=300) as client:
                first = wait_ready(client, url, model, case)
                print(f"server at {url}; first job (worker start + model load + predict): {first:.2f} s", flush=True)
                result = load(url, model, case, args.requests, args.concurrency, args.poll)
                times = {p: viewable(client, url, model, p) for p in args.viewable}
        finally:
            watch.stop.set()
            watch.join()
            proc.terminate()
            proc.wait(60)
        leftover = list(Path(work).iterdir())

    all_latencies = [x for values in result["latencies"].values() for x in values]
    print(f"\n{result['sent']} requests, concurrency {args.concurrency}, {result['seconds']:.1f} s "
          f"({result['sent'] / result['seconds']:.0f} requests/s), {result['jobs_done']} jobs done "
          f"({result['jobs_done'] / result['seconds']:.2f} jobs/s), errors: {len(result['errors'])}")
    for line in result["errors"][:10]:
        print("  error:", line)
    print("| request | count | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|")
    for kind, values in [*result["latencies"].items(), ("all", all_latencies)]:
        if values:
            p = np.percentile(np.asarray(values) * 1000, [50, 90, 99, 100])
            print(f"| {kind} | {len(values)} | {p[0]:.1f} | {p[1]:.1f} | {p[2]:.1f} | {p[3]:.1f} |")
    peaks = sorted(watch.peaks.values(), reverse=True)
    print("peak RSS: " + ", ".join(f"{watch.names.get(k, '?')} {v / 1024:.0f} MiB" for k, v in watch.peaks.items())
          + f"; "
          f"sum of peaks {sum(peaks) / 1024:.0f} MiB; largest sampled joint RSS {watch.max_total / 1024:.0f} MiB")
    for path, seconds in times.items():
        print(f"upload → viewable: {path.name}: {seconds:.2f} s")
    print(f"server folder left behind: {leftover or 'nothing'}")
    return 0 if not result["errors"] and not leftover else 1


if __name__ == "__main__":
    sys.exit(main())
