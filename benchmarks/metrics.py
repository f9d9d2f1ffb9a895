"""Surface-distance metrics on 256³ masks: medseg vs MONAI vs MedPy, side by side (seconds and values).

Two overlapping perturbed spheres on an anisotropic grid. MONAI and MedPy are optional peers (they are
not medseg dependencies): install them beside medseg to compare, e.g. ``pip install monai medpy``.

Usage::

    python benchmarks/metrics.py [--size 256] [--spacing 1.5 0.8 0.8] [--repeats 3] [--tolerance 1.0]

Each tool computes its own surface distances in every call (no sharing between metrics); the time is
the median over ``--repeats`` calls (MedPy, much slower, is called once), wall-clock and CPU time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def perturbed_sphere(shape, spacing, centre_mm, radius_mm, amplitude_mm, seed):
    """A ball whose radius varies smoothly with direction by up to ``amplitude_mm``: a sum of three
    random low-frequency waves on the unit sphere (cheap, unlike smoothing a 256³ noise volume)."""
    rng = np.random.default_rng(seed)
    grids = [((np.arange(n, dtype=np.float32) * s) - c).reshape([-1 if i == a else 1 for i in range(3)])
             for a, (n, s, c) in enumerate(zip(shape, spacing, centre_mm))]
    dist = np.sqrt(grids[0] ** 2 + grids[1] ** 2 + grids[2] ** 2) + np.float32(1e-6)
    wave = np.zeros(shape, np.float32)
    for _ in range(3):
        k = rng.normal(size=3) * 3.0
        wave += np.sin((k[0] * grids[0] + k[1] * grids[1] + k[2] * grids[2]) / dist + rng.uniform(0, 2 * np.pi))
    return dist < radius_mm + amplitude_mm / 3.0 * wave


def make_masks(size: int, spacing):
    extent = [size * s for s in spacing]
    centre = [e / 2 for e in extent]
    radius = 0.33 * min(extent)
    reference = perturbed_sphere((size,) * 3, spacing, centre, radius, 0.08 * radius, seed=0)
    shifted = [c + 0.04 * radius for c in centre]
    prediction = perturbed_sphere((size,) * 3, spacing, shifted, radius * 0.95, 0.08 * radius, seed=1)
    return prediction, reference


def timed(function, repeats):
    """Median wall-clock and CPU seconds over ``repeats`` calls (CPU time is less disturbed when other
    processes share the cores; every tool here runs on one thread, so the two agree on an idle machine)."""
    walls, cpus, value = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        value = function()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return statistics.median(walls), statistics.median(cpus), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--spacing", type=float, nargs=3, default=(1.5, 0.8, 0.8))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=1.0, help="NSD tolerance (mm)")
    args = parser.parse_args()
    spacing = tuple(args.spacing)
    import torch

    torch.set_num_threads(1)  # same single thread for every tool (edt and the KD-tree use one too)

    import medseg.metrics as ms
    from medseg.metrics.surface import _bbox, _surfaces

    prediction, reference = make_masks(args.size, spacing)
    sp, sr = _surfaces(prediction, reference, 1)
    box = _bbox(sp | sr)
    print(f"masks {prediction.shape}, spacing {spacing} mm, voxels pred/ref {prediction.sum()}/{reference.sum()}, "
          f"surface voxels {sp.sum()}/{sr.sum()}, surface box {tuple(s.stop - s.start for s in box)}, "
          f"load {os.getloadavg()[0]:.1f}")
    tol = args.tolerance
    rows = []  # (metric, definition, tool, wall seconds, CPU seconds, value)

    def add(metric, definition, tool, function, repeats=args.repeats):
        try:
            wall, cpu, value = timed(function, repeats)
        except Exception as exc:  # a peer missing or failing must not hide the other rows
            rows.append((metric, definition, tool, float("nan"), float("nan"), f"error: {type(exc).__name__}: {exc}"))
            return
        rows.append((metric, definition, tool, wall, cpu, float(value)))

    for method in ("auto", "kdtree", "edt"):
        tag = f"medseg[{method}]"
        add("HD95", "max directed P95", tag, lambda method=method: ms.hd95(prediction, reference, spacing, method=method))
    add("HD95", "pooled P95", "medseg", lambda: ms.hd95(prediction, reference, spacing, percentile_mode="pooled"))
    add("ASSD", "pooled mean", "medseg", lambda: ms.assd(prediction, reference, spacing))
    add("ASSD", "mean of means", "medseg", lambda: ms.assd(prediction, reference, spacing, average_mode="mean_of_means"))
    add(f"NSD@{tol}mm", "boundary voxels", "medseg",
        lambda: ms.normalized_surface_dice(prediction, reference, spacing, tolerance=tol))
    add("all four", "HD, HD95, ASSD, NSD", "medseg",
        lambda: ms.surface_metrics(prediction, reference, spacing, tolerance=tol)["hd95"])

    try:
        import monai
        from monai.metrics import (
            compute_average_surface_distance,
            compute_hausdorff_distance,
            compute_surface_dice,
        )

        p_t = torch.from_numpy(prediction)[None, None]
        r_t = torch.from_numpy(reference)[None, None]
        tool = f"MONAI {monai.__version__}"
        add("HD95", "max directed P95", tool, lambda: compute_hausdorff_distance(
            p_t, r_t, include_background=True, percentile=95, spacing=spacing).item())
        add("ASSD", "pooled mean", tool, lambda: compute_average_surface_distance(
            p_t, r_t, include_background=True, symmetric=True, spacing=spacing).item())
        add(f"NSD@{tol}mm", "boundary voxels", tool, lambda: compute_surface_dice(
            p_t, r_t, class_thresholds=[tol], include_background=True, spacing=spacing).item())
    except ImportError:
        print("MONAI not installed: skipped")
    try:
        from importlib.metadata import version

        from medpy.metric import binary as medpy_binary

        tool = f"MedPy {version('medpy')}"
        add("HD95", "pooled P95", tool, lambda: medpy_binary.hd95(prediction, reference, voxelspacing=spacing), 1)
        add("ASSD", "pooled mean", tool, lambda: medpy_binary.assd(prediction, reference, voxelspacing=spacing), 1)
    except ImportError:
        print("MedPy not installed: skipped")

    print()
    print("| metric | definition | tool | wall s | CPU s | value |")
    print("|---|---|---|---|---|---|")
    for metric, definition, tool, wall, cpu, value in rows:
        v = f"{value:.6f}" if isinstance(value, float) else value
        print(f"| {metric} | {definition} | {tool} | {wall:.3f} | {cpu:.3f} | {v} |")
    print(f"\nload average after the run: {os.getloadavg()[0]:.1f} (2 cores shared)")


if __name__ == "__main__":
    main()
