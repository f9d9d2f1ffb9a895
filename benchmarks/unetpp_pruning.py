"""UNet++ pruning on DRIVE: parameters, speed and accuracy of every sub-network L1 … L4 of one trained model.

Takes a UNet++ model folder trained with deep supervision (e.g. the DRIVE-table model of
``benchmarks/drive_networks.py``) and the converted DRIVE folder, predicts the 20 test images once per
prune level (``medseg predict --prune-level L``, one whole-image tile, ONNX Runtime) and scores each level
inside the FOV against 1st_manual (``medseg evaluate``). Seconds per image are the median of the per-image
times ``medseg predict`` prints (so the one-time ONNX export of the first image does not count).

    .venv/bin/python benchmarks/unetpp_pruning.py --model /tmp/drive_nets/model_unet_plus_plus \
        --dataset /tmp/drive_nets/dataset --work /tmp/drive_nets/pruning
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from medseg.model_folder import load_model

METRICS = ("accuracy", "recall", "specificity", "f1", "roc_auc")
PER_IMAGE = re.compile(r"^\[\d+/\d+\] .* \((\d+\.\d+) s\)$")


def medseg(*args: str) -> str:
    """Run a medseg command; return what it printed (its messages go to stderr, unwrapped here)."""
    command = [sys.executable, "-m", "medseg", *args]
    print("$", shlex.join(command), flush=True)
    done = subprocess.run(command, check=True, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "1000"})
    return done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="UNet++ model folder (deep supervision).")
    parser.add_argument("--dataset", type=Path, required=True, help="DRIVE converted by `medseg convert drive`.")
    parser.add_argument("--work", type=Path, required=True, help="Folder for the predictions and evaluations.")
    args = parser.parse_args()

    _, network = load_model(args.model)
    if not hasattr(network, "set_prune_level"):
        parser.error(f"{args.model}: not a prunable network (UNet++)")
    data = args.dataset
    rows = []
    for level in range(1, network.depth + 1):
        pred, evaluation = args.work / f"pred_L{level}", args.work / f"eval_L{level}"
        out = medseg("predict", str(args.model), "-i", str(data / "imagesTs"), "-o", str(pred), "--roi",
                     str(data / "roisTs"), "--probabilities", "--overwrite", "--tile-size", "592,576",
                     "--backend", "onnx", "--prune-level", str(level))
        seconds = [float(m.group(1)) for line in out.splitlines() if (m := PER_IMAGE.match(line.strip()))]
        if not seconds:
            sys.exit(f"no per-image times in what `medseg predict` printed:\n{out}")
        medseg("evaluate", str(pred), str(data / "labelsTs"), "--roi", str(data / "roisTs"),
               "--probabilities", str(pred / "probabilities"), "--out", str(evaluation))
        summary = json.loads((evaluation / "summary.json").read_text(encoding="utf-8"))
        stats = summary["metrics"]["vessel"]
        rows.append({"level": level, "parameters": int(network.parameters_used(level)),
                     "seconds_per_image": statistics.median(seconds),
                     **{name: stats[name]["mean"] for name in METRICS}})

    header = "| level | parameters | s / image | accuracy | sensitivity | specificity | F1 | ROC AUC |"
    lines = [header, "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| L{r['level']} | {r['parameters'] / 1e6:.2f}M | {r['seconds_per_image']:.2f} | "
                     + " | ".join(f"{r[name]:.4f}" for name in METRICS) + " |")
    print("\n".join(lines))
    (args.work / "pruning_levels.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
