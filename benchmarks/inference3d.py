"""3D sliding-window inference: medseg (torch and ONNX Runtime backends) vs MONAI, speed and peak memory.

Issue 5 benchmark. On a synthetic single-channel volume (default 160×192×160) with the network the
planner chooses for a 3D dataset of that shape on THIS machine (medseg.planning rules on a synthetic
fingerprint: isotropic 1 mm, one MR channel, background + one label), it times

- ``medseg-torch``: :func:`medseg.tiling.sliding_window.sliding_window_inference` with the torch
  network (Gaussian weighting, streaming accumulation, uint8 argmax labels);
- ``medseg-onnx``: the same sliding window with an ONNX Runtime session as the ``predict_fn``;
- ``medseg-compile``: the same sliding window with the network compiled by TorchInductor into a package
  (:class:`medseg.inference.compiled.CompiledNetwork`, what ``medseg predict --backend compile|auto`` runs
  in 3D). The one-off cost before the timed pass is reported separately: compiling the package (first
  overlap: nothing cached) or loading it (later overlaps: the package is kept, as in a model folder);
- ``monai``: ``monai.inferers.sliding_window_inference`` with the SAME network and weights, same roi
  size, overlap, Gaussian mode (sigma 0.125 × roi, as medseg), sw_batch_size, then argmax;

each run in its own subprocess, reporting seconds per volume (median over ``--repeats`` after one
warm-up network call) and the peak resident set size of that process (``ru_maxrss``, the honest number:
it includes everything the process holds) and its growth over the process baseline measured just before
inference (imports, network, input volume already loaded). Labels of every run are compared with
``medseg-torch`` at the same overlap (argmax agreement %; the tilings differ slightly — MONAI places its
last tile differently and normalises its Gaussian differently — so a few boundary voxels may differ).

``--memory-shape`` (default 512×512×400) measures what the streaming accumulation costs on a large
volume: the real sliding window with a 1×1×1 convolution of the same number of classes (so the network
costs nothing and only the accumulation/outputs are measured), next to an analytic projection.

Run (MONAI is installed in the project venv; ``/work/peers-venv`` works too with ``src`` on the path)::

    .venv/bin/python benchmarks/inference3d.py --out benchmarks/results/inference3d.json
    .venv/bin/python benchmarks/inference3d.py --shape 32,48,40 --memory-shape 48,64,40   # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:  # runnable from any interpreter that has torch (e.g. the peers venv)
    sys.path.insert(0, str(SRC))

BACKENDS = ("medseg-torch", "medseg-onnx", "medseg-compile", "monai")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.replace("x", ",").split(",") if v)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v)


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


# --- the planned network -------------------------------------------------------------------------
def synthetic_fingerprint(shape: tuple[int, ...], num_cases: int = 10, num_classes: int = 2) -> dict:
    """A fingerprint as :func:`medseg.planning.compute_fingerprint` returns it, for ``num_cases``
    isotropic 1 mm single-channel MR volumes of ``shape``."""
    from medseg.planning.fingerprint import SPACING_PERCENTILES

    labels = {"background": 0, **{f"label{i}": i for i in range(1, num_classes)}}
    spacing = [1.0] * len(shape)
    stats = {"mean": 0.0, "std": 1.0, "median": 0.0, "percentile_00_5": -2.5, "percentile_99_5": 2.5,
             "min": -5.0, "max": 5.0}
    return {
        "dataset": "synthetic-inference3d", "channel_names": ["MR"], "labels": labels, "regions": None,
        "ignore_label": None, "num_cases": num_cases, "warnings": [],
        "cases": [{"name": f"case{i}", "shape": list(shape), "spacing": spacing} for i in range(num_cases)],
        "summary": {
            "spatial_dims": len(shape), "median_shape": list(shape), "median_spacing": spacing,
            "spacing_percentiles": {str(p): spacing for p in SPACING_PERCENTILES}, "anisotropy": 1.0,
            "median_nonzero_crop_fraction": 1.0, "intensity": [stats],
        },
    }


def planned_network(shape: tuple[int, ...], num_classes: int) -> tuple[dict, list[int], int, list[str]]:
    """(network options, patch size, batch size, rules fired) of the 3D configuration planned here."""
    from medseg.planning import detect_machine, make_plan

    plan = make_plan(synthetic_fingerprint(shape, num_classes=num_classes), detect_machine())
    notes = [f"{r['rule']}: {r['decision']} — {r['reason']}" for r in plan.rules_fired
             if r["rule"] in ("configuration", "3d.patch_size", "3d.network", "3d.batch_size")]
    cfg = plan if plan.configuration == "3d" else plan.use_configuration("3d")
    return dict(cfg.network), list(cfg.patch_size), int(cfg.batch_size), notes


def build_network(spec: dict):
    from medseg.nets import create_network

    options = dict(spec["network"])
    return create_network(options.pop("name"), in_channels=1, num_classes=spec["classes"], spatial_dims=3,
                          **options).eval()


def synthetic_volume(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """``(1, *shape)`` float32: smooth texture plus bright and dark ellipsoids, z-scored."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    vol = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 2.0)
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    for _ in range(6):
        centre = [rng.uniform(0.2, 0.8) * s for s in shape]
        radii = [rng.uniform(0.05, 0.2) * s for s in shape]
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0
        vol[inside] += rng.choice([-1.0, 1.0]) * 2.0
    vol = (vol - vol.mean()) / (vol.std() + 1e-8)
    return vol[None].astype(np.float32)


# --- workers (one subprocess per measurement) ----------------------------------------------------
def _predict_fn(spec: dict, net):
    """The callable the sliding window runs: the torch network or an ONNX Runtime session."""
    if spec["backend"] == "medseg-compile":
        from medseg.inference.compiled import CompiledNetwork

        return CompiledNetwork(net, spec["package_dir"])
    if spec["backend"] != "medseg-onnx":
        return net
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = spec["threads"]
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(spec["onnx"], options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch.numpy()})[0]  # numpy logits are accepted


def _infer(spec: dict, image: np.ndarray, fn, keep: dict | None = None) -> np.ndarray:
    """Labels ``(*S)`` uint8 of one sliding-window pass (MONAI's averaged logits go to ``keep``)."""
    import torch

    patch, overlap, bs = tuple(spec["patch"]), spec["overlap"], spec["sw_batch_size"]
    if spec["backend"] == "monai":
        from monai.inferers import sliding_window_inference as monai_swi

        with torch.no_grad():
            logits = monai_swi(torch.from_numpy(image)[None], roi_size=patch, sw_batch_size=bs, predictor=fn,
                               overlap=overlap, mode="gaussian", sigma_scale=0.125, padding_mode="constant",
                               cval=0.0)
            if keep is not None:
                keep["logits"] = logits[0]
            # argmax of the averaged logits = argmax of their softmax (medseg applies the softmax)
            return torch.argmax(logits[0], 0).to(torch.uint8).numpy()
    from medseg.tiling.sliding_window import sliding_window_inference

    return sliding_window_inference(image, fn, patch, overlap=overlap, batch_size=bs, sigma_scale=0.125).labels


def worker(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    if spec["kind"] == "memory":
        torch.manual_seed(0)
        net = torch.nn.Conv3d(1, spec["classes"], 1).eval()  # costs nothing: only accumulation is measured
        image = np.random.default_rng(0).standard_normal((1, *spec["shape"]), dtype=np.float32)
        fn = net
    else:
        net = build_network(spec)
        net.load_state_dict(torch.load(spec["weights"], weights_only=True))
        image = np.load(spec["image"])
        fn = _predict_fn(spec, net)
    prepare = time.perf_counter()
    if spec["backend"] == "medseg-compile":  # compile (or load) the package for full tile batches
        with torch.no_grad():
            fn(torch.zeros((spec["sw_batch_size"], 1, *spec["patch"])))
    prepare = time.perf_counter() - prepare
    # warm-up: one whole (tiny) sliding-window pass, so lazy imports, first-call allocations and kernel
    # selection are timed for neither library
    _infer(spec, np.zeros((1, *spec["patch"]), np.float32), fn)
    baseline = _maxrss_bytes()
    times, labels, keep = [], None, {}
    for _ in range(spec["repeats"]):
        keep.clear()
        t0 = time.perf_counter()
        labels = _infer(spec, image, fn, keep)
        times.append(time.perf_counter() - t0)
    peak = _maxrss_bytes()
    if spec.get("labels_out"):
        np.save(spec["labels_out"], labels)
    if spec.get("margin_out") and "logits" in keep:
        # (untimed) confidence of each voxel: top-1 minus top-2 softmax probability
        top = torch.topk(torch.softmax(keep.pop("logits").float(), 0), 2, dim=0).values
        np.save(spec["margin_out"], (top[0] - top[1]).to(torch.float16).numpy())
    return {"backend": spec["backend"], "kind": spec["kind"], "overlap": spec["overlap"],
            "sw_batch_size": spec["sw_batch_size"], "shape": list(spec["shape"]), "patch": list(spec["patch"]),
            "seconds": statistics.median(times), "all_seconds": times, "prepare_seconds": prepare, "peak_rss_bytes": peak,
            "baseline_rss_bytes": baseline, "threads": spec["threads"]}


def run_worker(spec: dict, python: str) -> dict:
    """Run one measurement in a fresh interpreter (so each peak RSS is that run's alone)."""
    proc = subprocess.run([python, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"worker {spec['backend']} (overlap {spec['overlap']}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- projection ------------------------------------------------------------------------------------
def projected_bytes(shape: tuple[int, ...], patch: tuple[int, ...], overlap: float, batch_size: int,
                    classes: int) -> dict[str, int]:
    """What medseg's streaming sliding window holds for a ``(1, *shape)`` float32 input, labels only
    (excluding the interpreter, torch and the network): the input, uint8 labels, K float32 accumulator
    rows spanning one tile batch along axis 0 (the window computed as the implementation does; no weight
    sum is needed for argmax labels) and chunk / tile-batch temporaries."""
    import itertools

    from medseg.tiling.sliding_window import FINALISE_BYTES, tile_starts

    padded = tuple(max(s, p) for s, p in zip(shape, patch))
    tiles = list(itertools.product(*[tile_starts(s, p, overlap) for s, p in zip(padded, patch)]))
    batches = [tiles[b : b + batch_size] for b in range(0, len(tiles), batch_size)]
    window = max(min(padded[0], c[-1][0] + patch[0]) - c[0][0] for c in batches)
    plane = math.prod(padded[1:])
    voxels = math.prod(padded)
    out = {
        "input_float32": 4 * voxels,
        "labels_uint8": voxels,
        "accumulator": 4 * classes * window * plane,
        "finalise_temporaries": 2 * max(FINALISE_BYTES, 4 * classes * plane),  # int64 argmax of a chunk
        "tile_batch": 4 * batch_size * (1 + 2 * classes) * math.prod(patch),
        "window_rows": window,
        "naive_accumulator": 4 * (classes + 1) * voxels,  # C × volume float32 + weight sum
    }
    out["total"] = sum(v for k, v in out.items() if k not in ("window_rows", "naive_accumulator"))
    return out


# --- driver ------------------------------------------------------------------------------------------
def _mib(b: float) -> str:
    return f"{b / 2**20:,.0f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--shape", type=_ints, default=(160, 192, 160), help="speed benchmark volume (default 160,192,160)")
    ap.add_argument("--classes", type=int, default=2, help="output classes incl. background (default 2)")
    ap.add_argument("--features", type=int, help="override the planned width (first-level features)")
    ap.add_argument("--depth", type=int, help="override the planned depth (stride 2 on every axis)")
    ap.add_argument("--patch", type=_ints, help="override the planned patch (roi) size, e.g. 64,64,64")
    ap.add_argument("--overlaps", type=_floats, default=(0.5, 0.25), help="default 0.5,0.25")
    ap.add_argument("--sw-batch-size", type=int, help="tiles per network call (default: the planned batch size)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch/ORT threads per run")
    ap.add_argument("--repeats", type=int, default=1, help="timed passes per run (median reported)")
    ap.add_argument("--backends", default=",".join(BACKENDS), help=f"subset of {','.join(BACKENDS)}")
    ap.add_argument("--memory-shape", type=_ints, default=(512, 512, 400),
                    help="large volume for the streaming memory measurement (default 512,512,400)")
    ap.add_argument("--memory-backends", default="medseg-torch,monai",
                    help="backends measured on --memory-shape (medseg-torch, monai); empty = projection only")
    ap.add_argument("--skip-speed", action="store_true", help="only the memory measurement")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the workers")
    ap.add_argument("--out", type=Path, help="write all results as JSON here")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    import torch

    network, patch, batch, notes = planned_network(args.shape, args.classes)
    if args.features:
        network["features"] = args.features
    if args.depth:
        network.update(depth=args.depth, strides=[[2, 2, 2]] * args.depth, kernel_sizes=[[3, 3, 3]] * (args.depth + 1))
    patch = list(args.patch or patch)
    bs = args.sw_batch_size or batch
    backends = [b for b in args.backends.split(",") if b]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise SystemExit(f"unknown backends {sorted(unknown)} (choose from {', '.join(BACKENDS)})")
    print(f"machine: {os.cpu_count()} CPUs, {args.threads} thread(s) per run; python {sys.version.split()[0]}, "
          f"torch {torch.__version__}")
    print("plan:\n  " + "\n  ".join(notes))
    print(f"network: {network}; patch {patch}; sw_batch_size {bs}; classes {args.classes}")
    results: dict = {"shape": list(args.shape), "network": network, "patch": patch, "sw_batch_size": bs,
                     "classes": args.classes, "threads": args.threads, "plan_rules": notes, "speed": [], "memory": []}

    with tempfile.TemporaryDirectory(prefix="inference3d-") as tmp:
        tmp = Path(tmp)
        if not args.skip_speed:
            base = {"kind": "speed", "network": network, "classes": args.classes, "patch": patch,
                    "sw_batch_size": bs, "threads": args.threads, "repeats": args.repeats, "shape": list(args.shape),
                    "image": str(tmp / "image.npy"), "weights": str(tmp / "weights.pt"), "onnx": str(tmp / "net.onnx"),
                    "package_dir": str(tmp)}
            np.save(base["image"], synthetic_volume(args.shape))
            torch.manual_seed(0)
            net = build_network(base)
            torch.save(net.state_dict(), base["weights"])
            if "medseg-onnx" in backends:
                from medseg.nets.export import export_onnx

                export_onnx(net, base["onnx"], (1, 1, *patch))
            print(f"\n## Speed: {'×'.join(map(str, args.shape))} volume\n")
            print("| backend | overlap | sw batch | s / volume | one-off s (compile or load) | peak RSS (MiB) | "
                  "RSS growth (MiB) | argmax agreement vs medseg-torch |")
            print("|---|---|---|---|---|---|---|---|")
            for overlap in args.overlaps:
                reference = None
                for backend in backends:
                    spec = {**base, "backend": backend, "overlap": overlap,
                            "labels_out": str(tmp / f"{backend}-{overlap}.npy"),
                            "margin_out": str(tmp / f"{backend}-{overlap}-margin.npy")}
                    r = run_worker(spec, args.python)
                    labels = np.load(spec["labels_out"])
                    if backend == "medseg-torch":
                        reference = labels
                    r["agreement"] = None if reference is None else float((labels == reference).mean())
                    if reference is not None and Path(spec["margin_out"]).is_file():
                        # an untrained network has many near-ties that any change of tiling flips: also
                        # report agreement where MONAI is confident (top-2 probability gap > 0.1)
                        sure = np.load(spec["margin_out"]) > 0.1
                        r["confident_fraction"] = float(sure.mean())
                        r["confident_agreement"] = float((labels == reference)[sure].mean()) if sure.any() else None
                    r["label_fractions"] = np.bincount(labels.ravel(), minlength=args.classes).tolist()
                    results["speed"].append(r)
                    agree = "—" if r["agreement"] is None else f"{100 * r['agreement']:.3f} %"
                    if r.get("confident_agreement") is not None:
                        agree += (f" ({100 * r['confident_agreement']:.3f} % on the {100 * r['confident_fraction']:.0f} %"
                                  " of voxels with margin > 0.1)")
                    once = f"{r['prepare_seconds']:.1f}" if backend == "medseg-compile" else "–"
                    print(f"| {backend} | {overlap:g} | {bs} | {r['seconds']:.2f} | {once} | {_mib(r['peak_rss_bytes'])} | "
                          f"{_mib(r['peak_rss_bytes'] - r['baseline_rss_bytes'])} | {agree} |", flush=True)

            if {"medseg-torch"} <= set(backends) and len(args.overlaps) > 1:
                # context for the MONAI agreement: how many labels of this (untrained, near-tie) network
                # flip when only the tiling changes, within medseg itself
                a, b = (np.load(tmp / f"medseg-torch-{o}.npy") for o in args.overlaps[:2])
                results["tiling_sensitivity"] = float((a == b).mean())
                print(f"\ntiling sensitivity: medseg-torch overlap {args.overlaps[0]:g} vs {args.overlaps[1]:g} "
                      f"agree on {100 * results['tiling_sensitivity']:.3f} % of voxels")

        shape = tuple(args.memory_shape)
        proj = projected_bytes(shape, tuple(patch), 0.5, bs, args.classes)
        results["memory_projection"] = proj
        print(f"\n## Memory: {'×'.join(map(str, shape))} volume, {args.classes} classes, patch {patch}, overlap 0.5, "
              f"1×1×1 conv network\n")
        print(f"projection (medseg streaming, beyond the interpreter): input {_mib(proj['input_float32'])} MiB + "
              f"labels {_mib(proj['labels_uint8'])} MiB + accumulator {_mib(proj['accumulator'])} MiB "
              f"({proj['window_rows']} rows) + temporaries {_mib(proj['finalise_temporaries'] + proj['tile_batch'])} MiB "
              f"= {_mib(proj['total'])} MiB; a C×volume float32 accumulator + weight sum alone would be "
              f"{_mib(proj['naive_accumulator'])} MiB\n")
        print("| backend | s / volume | peak RSS (MiB) | RSS growth (MiB) | ≤ 3 GiB |")
        print("|---|---|---|---|---|")
        for backend in [b for b in args.memory_backends.split(",") if b]:
            spec = {"kind": "memory", "backend": backend, "classes": args.classes, "patch": patch, "overlap": 0.5,
                    "sw_batch_size": bs, "threads": args.threads, "repeats": 1, "shape": list(shape)}
            r = run_worker(spec, args.python)
            results["memory"].append(r)
            print(f"| {backend} | {r['seconds']:.2f} | {_mib(r['peak_rss_bytes'])} | "
                  f"{_mib(r['peak_rss_bytes'] - r['baseline_rss_bytes'])} | "
                  f"{'yes' if r['peak_rss_bytes'] <= 3 * 2**30 else 'NO'} |", flush=True)

    if args.out:
        from medseg.fileutil import write_text_atomic

        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out, json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
