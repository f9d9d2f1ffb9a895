"""MONAI baseline on DRIVE, run beside medseg on the same machine with the same training budget.

The baseline the issue calibrates against: MONAI BasicUNet, green channel + CLAHE, 64×64 patches,
Dice + cross-entropy, Adam, a wall-clock training budget, MONAI's Gaussian sliding window; evaluated
inside the field of view against 1st_manual (accuracy / sensitivity / specificity / F1 at p ≥ 0.5,
ROC AUC from the probabilities).

MONAI is a peer, not a dependency: run this with a separate environment, e.g.::

    make peers-venv
    .peers/bin/python benchmarks/drive_monai.py --drive ../shared/data/DRIVE --minutes 20 --out benchmarks/results/drive_monai.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage
from skimage import exposure
from sklearn.metrics import roc_auc_score


def load_split(root: Path, split: str):
    images, labels, masks, names = [], [], [], []
    for path in sorted((root / split / "images").glob("*.tif")):
        number = path.name.split("_")[0]
        rgb = np.asarray(PILImage.open(path).convert("RGB"), dtype=np.float32) / 255.0
        green = exposure.equalize_adapthist(rgb[..., 1], clip_limit=0.01).astype(np.float32)
        label = np.asarray(PILImage.open(root / split / "1st_manual" / f"{number}_manual1.gif")) > 0
        mask = np.asarray(PILImage.open(root / split / "mask" / f"{number}_{split}_mask.gif").convert("L")) > 0
        images.append((green - green[mask].mean()) / (green[mask].std() + 1e-8))
        labels.append(label.astype(np.int64))
        masks.append(mask)
        names.append(number)
    return images, labels, masks, names


def scores(probability: np.ndarray, label: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    p, y = probability[mask], label[mask].astype(bool)
    pred = p >= 0.5
    tp, tn = np.sum(pred & y), np.sum(~pred & ~y)
    fp, fn = np.sum(pred & ~y), np.sum(~pred & y)
    return {
        "accuracy": float((tp + tn) / y.size),
        "sensitivity": float(tp / (tp + fn)),
        "specificity": float(tn / (tn + fp)),
        "f1": float(2 * tp / (2 * tp + fp + fn)),
        "auc": float(roc_auc_score(y, p)),
    }


def main() -> None:
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss
    from monai.networks.nets import BasicUNet

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drive", type=Path, default=Path("../shared/data/DRIVE"))
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train_x, train_y, train_m, _ = load_split(args.drive, "training")
    test_x, test_y, test_m, test_names = load_split(args.drive, "test")

    net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=2)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    half = args.patch // 2

    def batch():
        xs, ys = [], []
        for _ in range(args.batch):
            k = rng.integers(len(train_x))
            coords = np.argwhere(train_m[k])
            cy, cx = coords[rng.integers(len(coords))]
            h, w = train_x[k].shape
            y0 = int(np.clip(cy - half, 0, h - args.patch))
            x0 = int(np.clip(cx - half, 0, w - args.patch))
            xs.append(train_x[k][y0 : y0 + args.patch, x0 : x0 + args.patch])
            ys.append(train_y[k][y0 : y0 + args.patch, x0 : x0 + args.patch])
        return torch.from_numpy(np.stack(xs)[:, None]), torch.from_numpy(np.stack(ys)[:, None])

    start = time.perf_counter()
    iterations = 0
    net.train()
    while time.perf_counter() - start < args.minutes * 60:
        x, y = batch()
        if rng.random() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        optimizer.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()
        iterations += 1
    train_seconds = time.perf_counter() - start

    net.eval()
    per_image, seconds = [], []
    with torch.no_grad():
        for x, y, m in zip(test_x, test_y, test_m):
            t0 = time.perf_counter()
            logits = sliding_window_inference(
                torch.from_numpy(x)[None, None], (args.patch * 2, args.patch * 2), 8, net, overlap=0.25, mode="gaussian"
            )
            probability = torch.softmax(logits, 1)[0, 1].numpy()
            seconds.append(time.perf_counter() - t0)
            per_image.append(scores(probability, y, m))
    pooled = {k: float(np.mean([s[k] for s in per_image])) for k in per_image[0]}
    result = {
        "method": "MONAI BasicUNet (green+CLAHE, 64² patches, Dice+CE, Adam)",
        "monai_version": __import__("monai").__version__,
        "iterations": iterations,
        "train_minutes": train_seconds / 60,
        "inference_seconds_per_image": float(np.mean(seconds)),
        "mean_over_images": pooled,
        "per_image": dict(zip(test_names, per_image)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "per_image"}, indent=2))


if __name__ == "__main__":
    main()
