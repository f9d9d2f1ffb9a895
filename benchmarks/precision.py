"""Seconds per training pass (forward + backward) in float32 vs bfloat16 autocast, for the networks whose
ratios are quoted in medseg/training/precision.py — timed by the same probe that `medseg train --precision auto`
runs (random data; one thread unless --threads).

    .venv/bin/python -W ignore benchmarks/precision.py [--threads 2]
"""

from __future__ import annotations

import argparse

import torch

from medseg.losses import build_loss
from medseg.nets import create_network
from medseg.training.precision import choose_precision

CASES = [  # name, network, dims, batch shape, options
    ("3D U-Net (LA plan), 2 x 48x48x64", "unet", 3, (2, 1, 48, 48, 64),
     {"features": 16, "depth": 3, "deep_supervision": True}),
    ("2D U-Net, 32 features, 2 x 224^2", "unet", 2, (2, 1, 224, 224), {"features": 32}),
    ("2D U-Net, batch norm, 4 x 128^2", "unet", 2, (4, 1, 128, 128), {"features": 16, "norm": "batch"}),
    ("DUNet, 4 x 128^2", "dunet", 2, (4, 1, 128, 128), {}),
    ("SegResNet-VAE 16, 3D, 4 channels, 1 x 48x48x64", "segresnet_vae", 3, (1, 4, 48, 48, 64),
     {"features": 16, "input_size": [48, 48, 64]}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    torch.set_num_threads(parser.parse_args().threads)
    print("| network, batch | float32 s/pass | bfloat16 s/pass | ratio | probe's choice |\n|---|---|---|---|---|")
    for title, name, dims, shape, options in CASES:
        torch.manual_seed(0)
        model = create_network(name, shape[1], 2, dims, **options)
        image, label = torch.randn(shape), torch.randint(0, 2, (shape[0], 1, *shape[2:]))
        loss = build_loss("dice_ce", weighting=getattr(model, "deep_supervision_weighting", "halving"))
        choice, seconds = choose_precision(model, loss, image, label, time_limit=1e9, steps=3)
        ratio = seconds["float32"] / seconds["bfloat16"]
        print(f"| {title} | {seconds['float32']:.3f} | {seconds['bfloat16']:.3f} | {ratio:.2f}x | {choice} |",
              flush=True)


if __name__ == "__main__":
    main()
