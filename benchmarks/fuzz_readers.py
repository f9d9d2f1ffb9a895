"""Reader fuzzing: mutated NIfTI, MHA, NRRD, PNG, TIFF and DICOM files through ``medseg.io.read_image``.

For each format a small valid seed file is written, then N mutants are made from it with a fixed seed:
bit flips (1-16 random bits), truncations (random length), and header field edits (random bytes, or
extreme numbers written over the numeric fields of the header: dimensions, sizes, data type, offsets).
Each mutant is read in a worker process; a result is "ok" (read), "clean" (medseg's MedsegError, one
line naming the file), "net" (a library exception turned into that one line only by read_image's
safety net: a place to add a proper check) or "crash" (any other exception, or the worker dying on a
signal). The worker's
peak resident memory (ru_maxrss) is reported against the bound the header checks guarantee:
2 × 4096 × the seed file size (medseg.io.limits: declared bytes ≤ 4096 × file size, two copies) plus a
fixed 32 MiB allowance, above the worker's memory after a warm-up read of the seed and of a truncated seed.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fuzz_readers.py --mutants 10000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Memory the interpreter and the libraries may add beyond the warmed-up baseline (caches, first use of
#: a code path in a plug-in), independent of what a header declares.
ALLOWANCE = 32 * 2**20
FORMATS = {"nifti": ".nii.gz", "nifti_raw": ".nii", "mha": ".mha", "nrrd": ".nrrd", "png": ".png", "tiff": ".tif",
           "dicom": ".dcm"}


def make_seed(fmt: str, folder: Path) -> Path:
    import numpy as np
    import SimpleITK as sitk

    from medseg.image import Image
    from medseg.io import write_image

    rng = np.random.default_rng(0)
    path = folder / f"seed{FORMATS[fmt]}"
    if fmt in ("png", "tiff"):
        write_image(Image(rng.integers(0, 255, (1, 24, 32)).astype(np.uint8)), path)
    elif fmt == "dicom":
        sitk.WriteImage(sitk.GetImageFromArray(rng.integers(0, 1000, (24, 32)).astype(np.int16)), str(path))
    else:
        write_image(Image(rng.random((1, 4, 12, 16)).astype(np.float32), spacing=(2.0, 0.5, 0.5)), path)
    return path


def mutate(data: bytes, rnd: random.Random) -> tuple[str, bytes]:
    kind = rnd.choice(("flip", "truncate", "header"))
    buf = bytearray(data)
    if kind == "flip":
        for _ in range(rnd.randint(1, 16)):
            i = rnd.randrange(len(buf))
            buf[i] ^= 1 << rnd.randrange(8)
    elif kind == "truncate":
        buf = buf[: rnd.randrange(len(buf))]
    else:
        head = min(len(buf), 512)
        text_numbers = [m for m in re.finditer(rb"\d+", bytes(buf[:head]))]
        if text_numbers and rnd.random() < 0.5:  # text headers (MHA, NRRD): an extreme number in a field
            m = rnd.choice(text_numbers)
            new = str(rnd.choice((0, 1, 2**15, 2**31 - 1, 2**32, 10**12, rnd.randrange(10**6)))).encode()
            buf = buf[: m.start()] + new + buf[m.end():]
        else:  # binary headers: random or extreme little-endian values at a random header offset
            i = rnd.randrange(max(head - 4, 1))
            value = rnd.choice((0xFFFFFFFF, 0x7FFFFFFF, 0, 0x8000, rnd.randrange(2**32)))
            buf[i:i + 4] = value.to_bytes(4, "little")
    return kind, bytes(buf)


def worker(fmt: str, start: int, count: int, seed: int, folder: Path) -> None:
    """Read mutants start..start+count-1, printing one JSON line per mutant (flushed before the next)."""
    from medseg.errors import MedsegError
    from medseg.io import read_image

    data = (folder / f"seed{FORMATS[fmt]}").read_bytes()
    target = folder / f"mutant_{fmt}{FORMATS[fmt]}"
    # warm up: the valid seed and a truncated copy load every library and error path once
    read_image(folder / f"seed{FORMATS[fmt]}")
    target.write_bytes(data[: len(data) // 2])
    try:
        read_image(target)
    except MedsegError:
        pass
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"baseline_kib": baseline}), flush=True)
    for index in range(start, start + count):
        rnd = random.Random(seed * 1_000_003 + index)
        kind, mutant = mutate(data, rnd)
        target.write_bytes(mutant)
        print(json.dumps({"start": index}), flush=True)
        try:
            read_image(target)
            result = "ok"
        except MedsegError as exc:
            if str(target) not in str(exc) or "\n" in str(exc):
                result = "unnamed"
            elif "unexpected reader failure" in str(exc):  # caught by read_image's safety net only
                result = f"net:{str(exc)[:160]}"
            else:
                result = "clean"
        except Exception as exc:  # noqa: BLE001 - any other exception is what the fuzzing looks for
            result = f"crash:{type(exc).__name__}:{str(exc)[:120]}"
        print(json.dumps({"index": index, "kind": kind, "result": result,
                          "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), flush=True)


def fuzz_format(fmt: str, mutants: int, seed: int, folder: Path) -> dict:
    seed_path = make_seed(fmt, folder)
    counts: dict[str, int] = {}
    crashes: list[dict] = []
    peak, baseline, index = 0, None, 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    while index < mutants:
        proc = subprocess.Popen([sys.executable, __file__, "--worker", fmt, "--start", str(index), "--count",
                                 str(mutants - index), "--seed", str(seed), "--folder", str(folder)],
                                stdout=subprocess.PIPE, text=True, env=env)
        started = None
        for line in proc.stdout:
            record = json.loads(line)
            if "baseline_kib" in record:
                baseline = record["baseline_kib"] if baseline is None else min(baseline, record["baseline_kib"])
            elif "start" in record:
                started = record["start"]
            else:
                counts[record["result"].split(":")[0]] = counts.get(record["result"].split(":")[0], 0) + 1
                if record["result"].startswith(("crash", "unnamed", "net")):
                    crashes.append(record)
                peak = max(peak, record["rss_kib"])
                index = record["index"] + 1
                started = None
        proc.wait()
        if proc.returncode != 0 and started is not None:  # the worker died on this mutant (a signal)
            counts["crash"] = counts.get("crash", 0) + 1
            crashes.append({"index": started, "result": f"crash:worker exit {proc.returncode}"})
            index = started + 1
        elif proc.returncode != 0:
            raise RuntimeError(f"worker for {fmt} failed with {proc.returncode}")
    bound_kib = baseline + (2 * 4096 * seed_path.stat().st_size + ALLOWANCE) // 1024
    return {"format": fmt, "seed_bytes": seed_path.stat().st_size, "mutants": mutants, "results": counts,
            "crashes": crashes[:10], "baseline_rss_mib": round(baseline / 1024, 1),
            "peak_rss_mib": round(peak / 1024, 1), "bound_rss_mib": round(bound_kib / 1024, 1),
            "within_bound": peak <= bound_kib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=10000, help="Mutants per format.")
    parser.add_argument("--formats", default=",".join(FORMATS), help="Comma list of " + ", ".join(FORMATS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.start, args.count, args.seed, args.folder)
        return
    with tempfile.TemporaryDirectory(prefix="medseg-fuzz-") as tmp:
        for fmt in args.formats.split(","):
            t0 = time.perf_counter()
            result = fuzz_format(fmt, args.mutants, args.seed, Path(tmp))
            result["seconds"] = round(time.perf_counter() - t0, 1)
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
