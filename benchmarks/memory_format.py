"""Seconds per training pass (forward + backward) in contiguous vs channels-last memory format, for the
networks whose ratios are quoted in medseg/training/memory_format.py — timed by the same probe that
`medseg train --memory-format auto` runs (random data, 2 threads).

    .venv/bin/python -W ignore benchmarks/memory_format.py
"""

from __future__ import annotations

import torch

from medseg.losses import build_loss
from medseg.nets import create_network
from medseg.training.memory_format import choose_memory_format

CASES = [  # name, network, dims, batch shape, options
    ("2D U-Net, batch norm, 4 x 128^2", "unet", 2, (4, 1, 128, 128), {"features": 16, "norm": "batch"}),
    ("2D U-Net, instance norm, 4 x 128^2", "unet", 2, (4, 1, 128, 128), {"features": 16, "norm": "instance"}),
    ("3D U-Net, instance norm, 2 x 48x48x64", "unet", 3, (2, 1, 48, 48, 64), {"features": 16, "depth": 3}),
    ("DUNet, 4 x 128^2", "dunet", 2, (4, 1, 128, 128), {}),
]


def main() -> None:
    torch.set_num_threads(2)
    print("| network, batch | contiguous s/pass | channels-last s/pass | ratio |\n|---|---|---|---|")
    for title, name, dims, shape, options in CASES:
        torch.manual_seed(0)
        model = create_network(name, 1, 2, dims, **options)
        image, label = torch.randn(shape), torch.randint(0, 2, (shape[0], 1, *shape[2:]))
        loss = build_loss("dice_ce", weighting=getattr(model, "deep_supervision_weighting", "halving"))
        _, seconds = choose_memory_format(model, loss, image, label, dims, time_limit=1e9, steps=5)
        ratio = seconds["contiguous"] / seconds["channels_last"]
        print(f"| {title} | {seconds['contiguous']:.3f} | {seconds['channels_last']:.3f} | {ratio:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
