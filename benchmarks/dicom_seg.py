"""Time and peak memory of writing and reading back a DICOM SEG for a 512×512×300 series.

A synthetic MR series (300 single-frame files, 512×512, 0.7×0.7×1.5 mm, oblique) and a label map with
three labels (ellipsoids of a few % of the volume each, like abdominal organs) are generated once; then the
SEG is written (:func:`medseg.io.dicom_seg.write_dicom_seg`, headers read, frames encoded, file saved) and
read back onto the source grid (:func:`medseg.io.dicom_seg.read_dicom_seg`) each in a fresh process, so
that each peak RSS is that step's alone. The read-back label map is checked equal to the written one.

    python benchmarks/dicom_seg.py                       # 300×512×512, prints a Markdown table
    python benchmarks/dicom_seg.py --shape 40,128,128    # a quick check
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LABELS = {"liver": 1, "kidney": 2, "spleen": 3}


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mib() -> float:
    return _status_mib("VmRSS")


def _peak_mib() -> float:
    # VmHWM is this process image's own high-water mark; getrusage's ru_maxrss would carry over the
    # parent's peak through fork + exec
    return _status_mib("VmHWM")


def make_case(folder: Path, shape: tuple[int, int, int]) -> None:
    from scipy.spatial.transform import Rotation

    from medseg.image import Image
    from medseg.io.dicom_series import write_dicom_series

    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    volume = ((x + 2 * y) % 1200 + 5 * z).astype(np.int16)[None]
    direction = Rotation.from_euler("xyz", [10, -5, 20], degrees=True).as_matrix()
    image = Image(volume, spacing=(1.5, 0.7, 0.7), origin=(-200.0, -180.0, 150.0), direction=direction)
    series = write_dicom_series(image, folder / "series", seed=0)
    label_map = np.zeros(shape, np.uint8)
    centres = [(0.5, 0.35, 0.3), (0.45, 0.6, 0.7), (0.55, 0.3, 0.75)]
    radii = [(0.3, 0.2, 0.18), (0.15, 0.08, 0.07), (0.2, 0.1, 0.08)]
    for value, (c, r) in enumerate(zip(centres, radii), start=1):
        inside = sum(((ax - ci * n) / (ri * n)) ** 2 for ax, ci, ri, n in zip((z, y, x), c, r, shape)) <= 1
        label_map[inside] = value
    np.save(folder / "label_map.npy", label_map)
    print(f"series {series.series_uid}: {len(series.files)} files; labelled fraction "
          f"{np.count_nonzero(label_map) / label_map.size:.3f}", file=sys.stderr)


def run_write(folder: Path) -> dict:
    from medseg.io.dicom_seg import write_dicom_seg
    from medseg.io.dicom_series import read_series_grid

    import highdicom  # noqa: F401  (a one-off import per process, not part of the step)

    label_map = np.load(folder / "label_map.npy")
    baseline = _rss_mib()
    start = time.perf_counter()
    series = read_series_grid(folder / "series")
    headers = time.perf_counter() - start
    path = write_dicom_seg(series.grid.with_array(label_map[None]), series, folder / "case.seg.dcm", labels=LABELS)
    seconds = time.perf_counter() - start
    return {"step": "write", "seconds": seconds, "headers_seconds": headers, "peak_mib": _peak_mib(),
            "baseline_mib": baseline, "file_mib": path.stat().st_size / 2**20}


def run_read(folder: Path) -> dict:
    from medseg.io.dicom_seg import read_dicom_seg

    import highdicom  # noqa: F401  (a one-off import per process, not part of the step)

    label_map = np.load(folder / "label_map.npy")
    baseline = _rss_mib()
    start = time.perf_counter()
    back = read_dicom_seg(folder / "case.seg.dcm", folder / "series", labels=LABELS)
    seconds = time.perf_counter() - start
    equal = bool(np.array_equal(back.label_map.array[0], label_map))
    return {"step": "read", "seconds": seconds, "peak_mib": _peak_mib(), "baseline_mib": baseline, "equal": equal}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="300,512,512", help="Z,Y,X of the series")
    parser.add_argument("--workdir", type=Path, default=None, help="folder for the series (default: temporary)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each step (the fastest is reported)")
    parser.add_argument("--step", choices=["write", "read"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:  # a child process: one step, its result as JSON on stdout
        print(json.dumps((run_write if args.step == "write" else run_read)(args.workdir)))
        return
    shape = tuple(int(v) for v in args.shape.split(","))
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(tmp)
        make_case(folder, shape)
        results = {"write": [], "read": []}
        for _ in range(args.repeats):
            for step in ("write", "read"):
                out = subprocess.run([sys.executable, __file__, "--step", step, "--workdir", str(folder)],
                                     check=True, capture_output=True, text=True).stdout
                results[step].append(json.loads(out.strip().splitlines()[-1]))
    print(f"| step ({shape[2]}×{shape[1]}×{shape[0]}, 3 labels) | s (best of {args.repeats}) | peak RSS (MiB) | "
          "RSS before the step (MiB) | notes |")
    print("|---|---|---|---|---|")
    for step, runs in results.items():
        best = min(runs, key=lambda r: r["seconds"])
        if step == "write":
            note = f"of which headers {best['headers_seconds']:.2f} s; SEG file {best['file_mib']:.1f} MiB"
        else:
            note = "read-back equals the label map: " + ("yes" if all(r["equal"] for r in runs) else "NO")
        print(f"| {step} | {best['seconds']:.2f} | {max(r['peak_mib'] for r in runs):,.0f} | "
              f"{best['baseline_mib']:,.0f} | {note} |")


if __name__ == "__main__":
    main()
