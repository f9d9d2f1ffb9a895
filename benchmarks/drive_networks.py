"""DRIVE table: every 2D network of medseg under the same training budget and the same evaluation.

Runs ``benchmarks/drive.py`` once per network (convert → train with a wall-clock budget → predict the
20 test images as one tile each → evaluate inside the FOV against 1st_manual), then prints and writes a
Markdown table: accuracy, sensitivity, specificity, F1, ROC AUC, parameters, iterations, training minutes
and inference seconds per image.

    .venv/bin/python benchmarks/drive_networks.py --drive ../shared/data/DRIVE --work /tmp/drive_nets --minutes 7

Every network gets the same data pipeline (green channel → CLAHE → z-score in the FOV, 128² patches,
batch 4, 20 % foreground-centred patches, the augmentation of ``configs/drive_augmentation.json``); the
only per-network option is batch norm where a network offers a choice (so that one whole-image tile is
normalised with the statistics seen in training). A network whose result file exists in ``--work`` is
not trained again (delete ``result_<net>.json`` to redo it).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMMON = f"--foreground-share 0.2 --augmentation {HERE / 'configs' / 'drive_augmentation.json'}"
# name → network options (the paper's configuration; batch norm where the network offers a choice)
NETWORKS: dict[str, dict[str, str]] = {
    "unet": {"norm": "batch"},
    "unet_plus_plus": {"norm": "batch"},
    "dunet": {},
    "encoder_unet": {},
    "fcn8s": {},
    "segnet": {},
    "deeplabv3plus": {},
    "patch_cnn": {},
}
METRICS = ("accuracy", "sensitivity", "specificity", "f1", "roc_auc")


def trained_parameters(model_folder: Path) -> int:
    """Parameters of the network as trained (the trainer may add options, e.g. the U-Net's CPU width)."""
    from medseg.model_folder import load_config
    from medseg.nets import create_network
    from medseg.nets.meta import count_parameters

    cfg = load_config(model_folder)
    return count_parameters(create_network, cfg.network, cfg.in_channels, cfg.num_classes, cfg.spatial_dims,
                            **cfg.network_options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drive", type=Path, default=Path("../shared/data/DRIVE"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=7.0, help="Training budget per network.")
    parser.add_argument("--nets", nargs="*", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--out", type=Path, help="Write the Markdown table here too.")
    args = parser.parse_args()

    for net in args.nets:
        if (args.work / f"result_{net}.json").is_file():
            continue
        options = " ".join(f"--net-option {k}={v}" for k, v in NETWORKS[net].items())
        command = [sys.executable, str(HERE / "drive.py"), "--drive", str(args.drive), "--work", str(args.work),
                   "--minutes", str(args.minutes), "--net", net, f"--train-option={COMMON} {options}"]
        print("$", shlex.join(command), flush=True)
        subprocess.run(command, check=True)

    header = ("| network | accuracy | sensitivity | specificity | F1 | ROC AUC | parameters | iterations "
              "| training min | inference s / image |")
    lines = [header, "|---" * 10 + "|"]
    for net in args.nets:
        result = json.loads((args.work / f"result_{net}.json").read_text(encoding="utf-8"))
        ours = result["ours"]
        lines.append(
            f"| {net} | " + " | ".join(f"{ours[m]:.4f}" for m in METRICS)
            + f" | {trained_parameters(args.work / f'model_{net}') / 1e6:.2f}M | {result['iterations']:,} "
            f"| {result['train_seconds'] / 60:.1f} | {result['predict_seconds_total'] / 20:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
