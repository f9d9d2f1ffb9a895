"""Numeric precision of a training run: float32, or the network's forward pass in bfloat16 autocast.

Measured on this project's 2-core CPU (Intel Xeon with AMX-BF16 units; torch 2.13, oneDNN), one training pass
(forward, backward; ``benchmarks/precision.py``, one thread beside two benchmark processes), float32 → bfloat16:

- 3D U-Net (LA's plan), 2 × 48×48×64: 4.61 → 1.75 s (2.6×); SegResNet-VAE 16, 1 × 4-channel 48×48×64:
  10.3 → 2.8 s (3.7×);
- 2D U-Net, 32 features, 2 × 224²: 4.60 → 2.21 s (2.1×);
- 2D U-Net, 16 features, batch norm, 4 × 128²: 0.54 → 0.59 s (0.92×: slower); DUNet: 0.95×.

Small networks gain nothing, so ``"auto"`` times both on the run's own network and batch
(:mod:`medseg.training.probe`) and keeps bfloat16 when it is clearly faster; on a device without bfloat16 units it
keeps float32 untimed (:data:`EMULATED_BFLOAT16`). The choice is recorded in the training configuration, so
``--resume`` continues with it. What the faster steps buy at a fixed budget is measured in BENCHMARKS.md
("bfloat16 training").

Autocast covers the forward pass of a network in training mode only: its outputs are handed back in float32,
so losses, soft-max and Dice sums stay in float32; weights, gradients and the optimiser stay in float32 (no
loss scaling: bfloat16 has float32's exponent range). Validation and prediction run in float32.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from medseg.training.probe import PROBE_STEPS, fastest_variant


#: Rule: on a device without bfloat16 units (:func:`medseg.planning.machine.computes_bfloat16`) "auto" keeps float32
#: without timing bfloat16. PyTorch emulates bfloat16 there, and the probe's four emulated passes cost minutes of the
#: run: on an AMD EPYC with AVX2 only, PROMISE12's planned 3D U-Net took 48.9 s per bfloat16 pass against 1.39 s in
#: float32 (3.3 of a 30-minute run's minutes), its 2D U-Net 9.6 s against 0.65 s (BENCHMARKS.md, session 37).
EMULATED_BFLOAT16 = "float32 - this device has no bfloat16 units (PyTorch would emulate bfloat16, far slower)"


def as_float(output: Any) -> Any:
    """``output`` with every floating-point tensor in it (nested in lists, tuples or dicts) in float32."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, dict):
        return {key: as_float(value) for key, value in output.items()}
    if isinstance(output, (list, tuple)):
        items = [as_float(item) for item in output]
        return type(output)(*items) if hasattr(output, "_fields") else type(output)(items)
    return output


class BFloat16Forward:
    """Runs ``model``'s forward passes in bfloat16 autocast while it is in training mode.

    Forward hooks, so every caller of the model (the supervised step, a semi-supervised method's student and
    teacher, a deep copy of the model) gets it; in evaluation mode the model computes in float32 as before.

    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3))
    >>> seen = []
    >>> _ = net[0].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    >>> hooks = BFloat16Forward(net)
    >>> net(torch.ones(1, 1, 4, 4)).dtype, seen[-1]
    (torch.float32, torch.bfloat16)
    >>> _ = net.eval()(torch.ones(1, 1, 4, 4)); seen[-1]
    torch.float32
    >>> hooks.remove()
    """

    def __init__(self, model: torch.nn.Module):
        contexts: list[Any] = []  # one entry per forward pass in progress (None: not autocast)

        def enter(module: torch.nn.Module, args: Any) -> None:
            context = None
            if module.training:
                device = next(module.parameters()).device.type
                context = torch.autocast(device, dtype=torch.bfloat16)
                context.__enter__()
            contexts.append(context)

        def leave(module: torch.nn.Module, args: Any, output: Any) -> Any:
            context = contexts.pop()
            if context is None:
                return None
            context.__exit__(None, None, None)
            return as_float(output)

        # always_call: the autocast region is left even when the forward pass raises
        self._handles = [model.register_forward_pre_hook(enter), model.register_forward_hook(leave, always_call=True)]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def use_precision(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """``model``, computing its training passes in precision ``name`` ("float32" or "bfloat16")."""
    if name == "bfloat16":
        BFloat16Forward(model)
    return model


def choose_precision(model: torch.nn.Module, loss_fn: Callable, image: torch.Tensor, label: torch.Tensor, *,
                     time_limit: float | None = None, iterations: int | None = None,
                     steps: int = PROBE_STEPS) -> tuple[str, dict[str, float]]:
    """The faster precision for training ``model`` on batches like ``(image, label)``: "float32" or "bfloat16".

    Times a few forward/backward passes in each when the run is long enough for the probe
    (:func:`medseg.training.probe.fastest_variant`). A network with an operation that has no bfloat16 kernel
    keeps float32. The model is left computing in float32.
    """
    def float32():
        return image, lambda: None

    def bfloat16():
        hooks = BFloat16Forward(model)
        return image, hooks.remove

    try:
        return fastest_variant(model, loss_fn, image, label, {"float32": float32, "bfloat16": bfloat16},
                               time_limit=time_limit, iterations=iterations, steps=steps)
    except (RuntimeError, NotImplementedError):
        return "float32", {}
