"""Milliseconds per optimiser update, PyTorch's per-tensor loop against its fused kernel, and per whole supervised
step (forward, loss, backward, update) with each — for planned U-Nets (random data; the planner's topology;
bfloat16 autocast where the machine computes it, as `medseg train` chooses). The rule it supports:
`medseg.planning.machine.FUSED_OPTIMIZER_DEVICES`.

    .venv/bin/python -W ignore benchmarks/optimizer_step.py [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from medseg.losses import build_loss
from medseg.nets import create_network
from medseg.planning.machine import computes_bfloat16
from medseg.planning.topology import network_topology
from medseg.training.precision import use_precision

CASES = [  # title, dims, patch, batch, classes
    ("2D U-Net, ACDC plan, 2 x 256 x 192", 2, (256, 192), 2, 4),
    ("2D U-Net, DukeDME plan, 2 x 224 x 224", 2, (224, 224), 2, 2),
    ("3D U-Net on PROMISE12's planned patch, 2 x 20 x 64 x 80", 3, (20, 64, 80), 2, 2),
]
OPTIMIZERS = {
    "AdamW": lambda params, fused: torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4, fused=fused),
    "SGD": lambda params, fused: torch.optim.SGD(params, lr=1e-4, momentum=0.99, nesterov=True, weight_decay=3e-5,
                                                 fused=fused),
}
REPEATS = 20


def planned_unet(dims: int, patch: tuple[int, ...], classes: int) -> torch.nn.Module:
    strides, kernels = network_topology((1.0,) * dims, patch, min_feature_map=4)
    return create_network("unet", in_channels=1, num_classes=classes, spatial_dims=dims, features=16,
                          depth=len(strides) - 1, strides=strides[1:], kernel_sizes=kernels,
                          max_features=320 if dims == 3 else 512, deep_supervision=True)


def milliseconds(run, repeats: int = REPEATS) -> float:
    run()  # warm-up: oneDNN builds its primitives, the optimiser its state
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    torch.set_num_threads(parser.parse_args().threads)
    precision = "bfloat16" if computes_bfloat16("cpu") else "float32"
    print(f"precision {precision}, {torch.get_num_threads()} thread(s)\n")
    print("| network, batch | parameters | optimiser | update loop / fused (ms) | step loop / fused (ms) |")
    print("|---|---|---|---|---|")
    for title, dims, patch, batch, classes in CASES:
        torch.manual_seed(0)
        model = use_precision(planned_unet(dims, patch, classes), precision).train()
        loss_fn = build_loss("dice_ce", weighting=getattr(model, "deep_supervision_weighting", "halving"))
        image, label = torch.randn(batch, 1, *patch), torch.randint(0, classes, (batch, 1, *patch))
        parameters = sum(p.numel() for p in model.parameters())
        for name, make in OPTIMIZERS.items():
            update, step = {}, {}
            for fused in (False, True):
                optimizer = make(model.parameters(), fused)

                def train_step() -> None:
                    optimizer.zero_grad(set_to_none=True)
                    loss_fn(model(image), label, image).backward()
                    optimizer.step()

                step[fused] = milliseconds(train_step, REPEATS // 4)  # the order of a step, not the gain
                update[fused] = milliseconds(optimizer.step)
            print(f"| {title} | {parameters / 1e6:.1f}M | {name} | {update[False]:.1f} / {update[True]:.1f} | "
                  f"{step[False]:.0f} / {step[True]:.0f} |")


if __name__ == "__main__":
    main()
