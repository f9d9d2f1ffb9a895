"""The ViT segmenter (`vit_seg`, patch tokens → transformer → light upsampling head) vs the U-Net under the
same wall-clock budgets on DRIVE and ACDC: accuracy, steps, seconds per step, seconds per image.

Each (dataset, network, budget) is one run of the dataset's own benchmark script with `--net` and `--tag`
(benchmarks/drive.py: train on the 20 training images, score the 20 test images inside the FOV;
benchmarks/acdc.py: plan → train on splits.json "train" → score the 20 "val" volumes), so both networks get
the same data, planner, rules, trainer and budget. Seconds per step come from the training log (training
time only); seconds per image from the prediction command (including its process start-up).

    # the benchmark (quiet machine: 2 datasets × 2 networks × (20 + 60) minutes ≈ 5.5 hours)
    .venv/bin/python benchmarks/vit_vs_unet.py --data ../shared/data --work /tmp/vit_vs_unet --minutes 20,60
    # smoke run
    .venv/bin/python benchmarks/vit_vs_unet.py --work /tmp/vit_smoke --minutes 0.5 --datasets drive

Then `--report-only` prints the table again from the result files. `--speed-only` times one whole DRIVE-sized
image (592 × 576, the whole-image tile) through each network in eager PyTorch and in ONNX Runtime
(untrained weights, interleaved, one thread).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _timing import run  # benchmarks/ is on sys.path when a script runs

NETS = ("unet", "vit_seg")


def log_steps(model: Path) -> tuple[int, float]:
    rows = (model / "training_log.csv").read_text(encoding="utf-8").strip().splitlines()
    last = dict(zip(rows[0].split(","), rows[-1].split(",")))
    return int(last["iteration"]), float(last["elapsed"])


def run_one(dataset: str, net: str, minutes: float, args: argparse.Namespace) -> dict:
    here = Path(__file__).resolve().parent
    tag = f"{net}_{minutes:g}m"
    work = args.work / dataset
    result_file = work / f"result_{tag}.json"
    if not args.report_only:
        if dataset == "drive":
            run([sys.executable, here / "drive.py", "--drive", args.data / "DRIVE", "--work", work, "--minutes",
                 str(minutes), "--net", net, "--tag", tag])
        else:
            plan = work / "plan.json"  # one plan for both networks (acdc.py plans when it is missing)
            run([sys.executable, here / "acdc.py", "--acdc", args.data / "ACDC", "--work", work, "--minutes",
                 str(minutes), "--net", net, "--tag", tag, "--configuration", "2d",
                 *(["--plan", plan] if plan.exists() else [])])
    result = json.loads(result_file.read_text(encoding="utf-8"))
    steps, seconds = log_steps(work / f"model_{tag}")
    row = {"dataset": dataset, "net": net, "minutes": minutes, "steps": steps, "seconds_per_step": seconds / max(1, steps)}
    if dataset == "drive":
        ours = result["ours"]
        row.update(accuracy=ours["accuracy"], roc_auc=ours.get("roc_auc"), f1=ours["f1"],
                   seconds_per_image=result["predict_seconds_total"] / 20)
    else:
        scored = result["recorded_postprocessing"]
        row.update(mean_dice=scored["mean_dice"], dice=scored["dice"], seconds_per_image=scored["seconds_per_volume"])
    return row


def speed(size: tuple[int, int] = (592, 576), repeats: int = 5) -> list[dict]:
    """Eager vs ONNX Runtime seconds for one 2D image of ``size``, per network (best and median)."""
    import statistics
    import tempfile
    import time

    import torch

    from medseg.nets import create_network
    from medseg.nets.export import export_onnx, onnx_session

    torch.set_num_threads(1)
    out = []
    options = {"unet": {"features": 16}, "vit_seg": {}}
    for net in NETS:
        model = create_network(net, 1, 2, 2, **options[net]).eval()
        x = torch.randn(1, 1, *size)
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(model, Path(tmp) / "net.onnx", (1, 1, *size))
            session = onnx_session(path, threads=1)
            eager, onnx = [], []
            with torch.inference_mode():
                model(x), session.run(None, {"image": x.numpy()})  # warm-up
                for _ in range(repeats):
                    for f, times in ((lambda: model(x), eager), (lambda: session.run(None, {"image": x.numpy()}), onnx)):
                        start = time.perf_counter()
                        f()
                        times.append(time.perf_counter() - start)
        out.append({"net": net, "parameters": sum(p.numel() for p in model.parameters()), "size": list(size),
                    "eager_best_s": min(eager), "eager_median_s": statistics.median(eager),
                    "onnx_best_s": min(onnx), "onnx_median_s": statistics.median(onnx)})
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--minutes", default="20,60", help="Comma-separated budgets.")
    parser.add_argument("--datasets", default="drive,acdc")
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--speed-only", action="store_true", help="Only eager vs ONNX Runtime per image.")
    args = parser.parse_args()
    if args.speed_only:
        speed()
        return
    args.data = args.data.resolve()
    args.work = args.work.resolve()
    rows = []
    for dataset in args.datasets.split(","):
        for minutes in (float(m) for m in args.minutes.split(",")):
            for net in args.nets.split(","):
                rows.append(run_one(dataset, net, minutes, args))
                print(json.dumps(rows[-1]), flush=True)
    (args.work / "results.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print("\n| dataset | network | budget | accuracy | steps | s/step | s/image |\n|---|---|---|---|---|---|---|")
    for r in rows:
        score = (f"acc {r['accuracy']:.4f}, AUC {r['roc_auc']:.4f}, F1 {r['f1']:.4f}" if r["dataset"] == "drive"
                 else "Dice " + ", ".join(f"{k} {v:.3f}" for k, v in r["dice"].items()) + f" (mean {r['mean_dice']:.3f})")
        print(f"| {r['dataset']} | {r['net']} | {r['minutes']:g} min | {score} | {r['steps']} | "
              f"{r['seconds_per_step']:.3f} | {r['seconds_per_image']:.2f} |")


if __name__ == "__main__":
    main()
