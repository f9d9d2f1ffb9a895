"""One optimisation step, the optimiser and the learning rate, and the divergence warning."""

from __future__ import annotations

from typing import Any, Callable

import torch

from medseg.errors import MedsegError
from medseg.planning.machine import fused_optimizer
from medseg.training.config import TrainingConfig

# --- one step and validation ----------------------------------------------------------------------
def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def build_optimizer(model: torch.nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    """The run's optimiser over all of ``model``'s parameters, fused where the device has the kernel
    (:func:`medseg.planning.machine.fused_optimizer`)."""
    fused = fused_optimizer(next(model.parameters()).device.type)
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.learning_rate, momentum=config.momentum,
                               nesterov=True, weight_decay=config.weight_decay, fused=fused)
    return torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
                             fused=fused)


def train_step(model: torch.nn.Module, loss_fn: Callable, optimizer: torch.optim.Optimizer,
               image: torch.Tensor, label: torch.Tensor, grad_clip: float | None,
               frozen_batchnorm_eval: bool = False) -> float:
    """One optimisation step; returns the loss value.

    ``frozen_batchnorm_eval``: keep batch-norm layers whose parameters are frozen in eval mode, so a
    frozen (pretrained) encoder's running statistics stay fixed too.
    """
    model.train()
    if frozen_batchnorm_eval:
        from medseg.nets.finetune import set_frozen_batchnorm_eval

        set_frozen_batchnorm_eval(model)
    optimizer.zero_grad(set_to_none=True)
    output = model(image)
    loss = loss_fn(output, label, image)
    if not torch.isfinite(loss):
        raise MedsegError(f"the loss became {loss.item()}; lower the learning rate (--lr)")
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return float(loss.detach())


class DivergenceCheck:
    """Warns once when the logged loss grows far above its first value (the run is diverging).

    A finite but exploding loss does not stop training (a user may still want the run), but it is never
    what a user wants to discover only after the budget is spent. Rule: a mean loss more than ``factor``
    times the first logged mean loss.
    """

    def __init__(self, factor: float = 100.0):
        self.factor = factor
        self.first: float | None = None
        self.warned = False

    def check(self, loss: float, iteration: int, console: Any) -> bool:
        if self.first is None:
            self.first = loss
            return False
        if self.warned or not self.first > 0 or loss <= self.factor * self.first:
            return False
        self.warned = True
        console.print(f"warning: at iteration {iteration} the loss is {loss:.3g}, {loss / self.first:.0f}x its first "
                      f"value {self.first:.3g}: training is diverging; lower the learning rate (--lr) or use a "
                      "normalised network (e.g. --net-option norm=instance)", highlight=False)
        return True
