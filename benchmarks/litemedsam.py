"""Zero-shot LiteMedSAM with jittered reference boxes (the MedSAM protocol), and its speed on one thread.

Per 2D slice and structure: the reference label's bounding box, each side pushed out by 0-5 pixels of the
256-pixel frame (seeded), → one decoder pass on the slice's embedding → Dice against the reference on that
slice (each structure on its own, as MedSAM evaluates). Slices are subsampled (seeded) to keep the run
under 10 minutes on one thread:

- ACDC: splits.json "val" volumes, slices showing any of RV (1), MYO (2), LV (3); each present structure.
- PROMISE12: one slice with prostate per case (all 16 cases; these are not held out from anything).
- BraTS: whole tumour (labels 1, 2, 4) on FLAIR (channel 0), slices with tumour.
- DukeDME: B-scans with fluid; one box per connected fluid component of >= 20 pixels (fluid is scattered).

Timing: the image encoder once per slice, the prompt encoder + mask decoder once per box, each in eager
PyTorch and in ONNX Runtime (interleaved, best and median). The Dice loop runs both with ONNX Runtime
(`Prompter(onnx_dir=...)`, what `medseg prompt --onnx DIR` does).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/litemedsam.py --data ../shared/data --work /tmp/litemedsam_bench
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from medseg.inference.boxes import MEDSAM_JITTER, boxes_from_label_map
from medseg.inference.prompt import Prompter, intensity_window, slice_frame
from medseg.io import read_image
from medseg.metrics import dice
from medseg.nets.litemedsam import LiteMedSAM

ACDC = {"RV": [1], "MYO": [2], "LV": [3]}
BRATS = {"whole tumour": [1, 2, 4]}


def acdc_cases(data: Path) -> list[tuple[Path, Path]]:
    val = json.loads((data / "ACDC" / "splits.json").read_text(encoding="utf-8"))["val"]
    return [(data / "ACDC" / "imagesTr" / f"{c}_0000.nii.gz", data / "ACDC" / "labelsTr" / f"{c}.nii.gz") for c in val]


def nnunet_cases(folder: Path, suffix: str) -> list[tuple[Path, Path]]:
    labels = sorted((folder / "labelsTr").glob(f"*{suffix}"))
    return [(folder / "imagesTr" / (p.name[: -len(suffix)] + "_0000" + suffix), p) for p in labels]


class Runner:
    def __init__(self, prompter: Prompter, seed: int):
        self.prompter = prompter
        self.rng = np.random.default_rng(seed)
        self.encoder_times: list[float] = []
        self.decoder_times: list[float] = []

    def embed(self, frame: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        emb = self.prompter.encode(frame)
        self.encoder_times.append(time.perf_counter() - start)
        return emb

    def score_slice(self, image2d: np.ndarray, label2d: np.ndarray, window: tuple[float, float],
                    structures: dict[str, list[int]], per_component: bool = False) -> dict[str, float]:
        """Dice per structure present on this slice (image2d: (C, Y, X))."""
        frame, scale = slice_frame(image2d, *window)
        emb = self.embed(frame)
        out = {}
        for name, values in structures.items():
            truth = np.isin(label2d, values)
            if not truth.any():
                continue
            boxes = boxes_from_label_map(truth.astype(np.uint8), jitter=MEDSAM_JITTER,
                                         seed=int(self.rng.integers(1 << 31)), per_component=per_component,
                                         min_voxels=20 if per_component else 1)
            pred = np.zeros_like(truth)
            for box in boxes:
                start = time.perf_counter()
                logits, _ = self.prompter.segment_slice(emb, truth.shape, scale, (box.lower, box.upper))
                self.decoder_times.append(time.perf_counter() - start)
                pred |= logits > 0
            out[name] = dice(pred, truth)
        return out


def pick_slices(label: np.ndarray, values: list[int], count: int, rng: np.random.Generator) -> list[int]:
    present = [z for z in range(label.shape[0]) if np.isin(label[z], values).any()]
    return sorted(rng.choice(present, size=min(count, len(present)), replace=False).tolist()) if present else []


def run_volumes(runner: Runner, cases, structures, slices_per_case: int, channel: int = 0) -> dict[str, list[float]]:
    scores: dict[str, list[float]] = {k: [] for k in structures}
    values = sorted({v for vs in structures.values() for v in vs})
    for image_path, label_path in cases:
        image = read_image(image_path)
        if image.num_channels == 1 and channel > 0:  # nnU-Net layout: one file per channel
            image = read_image(Path(str(image_path).replace("_0000", f"_{channel:04d}")))
        array = image.array[min(channel, image.num_channels - 1)][None].astype(np.float32)
        label = read_image(label_path).array[0]
        window = intensity_window(array)
        for z in pick_slices(label, values, slices_per_case, runner.rng):
            for name, d in runner.score_slice(array[:, z], label[z], window, structures).items():
                scores[name].append(d)
    return scores


def run_duke(runner: Runner, data: Path, scans: int) -> dict[str, list[float]]:
    cases = nnunet_cases(data / "DukeDME", ".png")
    with_fluid = [(i, l) for i, l in cases if read_image(l).array.any()]
    chosen = runner.rng.choice(len(with_fluid), size=min(scans, len(with_fluid)), replace=False)
    scores = []
    for k in sorted(chosen):
        image_path, label_path = with_fluid[k]
        image = read_image(image_path)
        label = read_image(label_path).array[0]
        d = runner.score_slice(image.array, label, intensity_window(image.array), {"fluid": [1]}, per_component=True)
        scores += list(d.values())
    return {"fluid": scores}


def _interleaved(a, b, repeats: int) -> tuple[list[float], list[float]]:
    a(), b()  # warm-up
    ta, tb = [], []
    for _ in range(repeats):
        for f, times in ((a, ta), (b, tb)):
            start = time.perf_counter()
            f()
            times.append(time.perf_counter() - start)
    return ta, tb


def time_parts(eager: Prompter, onnx: Prompter, repeats: int) -> dict[str, float]:
    """Encoder and box decoder, eager vs ONNX Runtime, interleaved (both see the same load)."""
    frame = torch.rand(1, 3, 256, 256)
    out = {}
    te, to = _interleaved(lambda: eager.encode(frame), lambda: onnx.encode(frame), repeats)
    out.update(encoder_eager_best_s=min(te), encoder_eager_median_s=statistics.median(te),
               encoder_onnx_best_s=min(to), encoder_onnx_median_s=statistics.median(to),
               encoder_max_abs_diff=float((eager.encode(frame) - onnx.encode(frame)).abs().max()))
    emb = eager.encode(frame)
    box = torch.tensor([[60.0, 70.0, 150.0, 180.0]])
    te, to = _interleaved(lambda: eager.decode(emb, box), lambda: onnx.decode(emb, box), 4 * repeats)
    out.update(decoder_eager_best_s=min(te), decoder_eager_median_s=statistics.median(te),
               decoder_onnx_best_s=min(to), decoder_onnx_median_s=statistics.median(to),
               decoder_max_abs_diff=float((eager.decode(emb, box)[0] - onnx.decode(emb, box)[0]).abs().max()))
    return out


def random_weights_lv(data: Path, slices: int, seed: int) -> dict[str, float]:
    """The same protocol on ACDC LV with an untrained network (eager): what chance gives."""
    torch.manual_seed(seed)
    runner = Runner(Prompter(LiteMedSAM().eval()), seed)
    scores = run_volumes(runner, acdc_cases(data)[:slices], {"LV": [3]}, 1)
    return {"LV_random_weights": float(np.mean(scores["LV"])), "slices": len(scores["LV"])}


def summary(scores: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {k: {"mean": float(np.mean(v)), "median": float(np.median(v)), "n": len(v)} for k, v in scores.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, required=True, help="Folder for the exported encoder and results.json.")
    parser.add_argument("--acdc-slices", type=int, default=2, help="Slices per ACDC val volume.")
    parser.add_argument("--promise-slices", type=int, default=1, help="Slices per PROMISE12 case.")
    parser.add_argument("--brats-slices", type=int, default=2, help="Slices per BraTS case.")
    parser.add_argument("--duke-scans", type=int, default=16, help="DukeDME B-scans with fluid.")
    parser.add_argument("--random-slices", type=int, default=4, help="ACDC LV slices with random weights.")
    parser.add_argument("--timing-repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timing-only", action="store_true", help="Only the encoder / decoder timings.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    eager = Prompter()
    start = time.perf_counter()
    prompter = Prompter(eager.model, onnx_dir=args.work)  # exports on the first run only
    results: dict = {"onnx_export_and_sessions_s": time.perf_counter() - start,
                     "timing": time_parts(eager, prompter, args.timing_repeats)}
    print(json.dumps(results, indent=1), flush=True)
    if args.timing_only:
        return
    runner = Runner(prompter, args.seed)
    sets = {
        "ACDC val": lambda: run_volumes(runner, acdc_cases(args.data), ACDC, args.acdc_slices),
        "PROMISE12": lambda: run_volumes(runner, nnunet_cases(args.data / "PROMISE12", ".nii.gz"), {"prostate": [1]},
                                         args.promise_slices),
        "BraTS FLAIR": lambda: run_volumes(runner, nnunet_cases(args.data / "BraTS", ".nii.gz"), BRATS,
                                           args.brats_slices, channel=0),
        "DukeDME": lambda: run_duke(runner, args.data, args.duke_scans),
    }
    for name, run in sets.items():
        t = time.perf_counter()
        results[name] = summary(run())
        results[name]["seconds"] = time.perf_counter() - t
        print(name, json.dumps(results[name]), flush=True)
    results["decoder_per_box"] = {"median_s": statistics.median(runner.decoder_times),
                                  "n": len(runner.decoder_times)}
    results["encoder_in_loop"] = {"median_s": statistics.median(runner.encoder_times), "n": len(runner.encoder_times)}
    results["random_weights"] = random_weights_lv(args.data, args.random_slices, args.seed)
    results["total_s"] = time.perf_counter() - started
    (args.work / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(json.dumps({k: results[k] for k in ("decoder_per_box", "encoder_in_loop", "random_weights", "total_s")},
                     indent=1))


if __name__ == "__main__":
    main()
