"""Exponential moving average of a network's weights (Polyak averaging), for prediction.

Small-batch CPU training takes noisy steps, and the average of the last ~1/(1 - decay) weights is meant to
predict more smoothly than the last weights alone. The averaged copy is what the model folder stores, what
validation scores and what the predictor loads; training itself never sees it. Measured level with the last
weights on DRIVE, PROMISE12 and OCT fluid (BENCHMARKS.md): the poly schedule already anneals the learning
rate to zero, so ``--weight-average`` is off by default; the class is the mean teacher of semi-supervised
training.

``torch.optim.swa_utils.AveragedModel`` with its EMA function was not used: it has no warm-up (the
random initial weights would weigh in for ~1/(1 - decay) steps), and it averages integer buffers
(batch norm's step counter) through a float multiply.
"""

from __future__ import annotations

import copy
import itertools

import torch


class WeightAverage:
    """An exponential moving average of ``model``'s parameters and floating-point buffers.

    Parameters
    ----------
    model : torch.nn.Module
        The network being trained; a frozen copy of it is averaged.
    decay : float
        Weight of the running average per update, in (0, 1); e.g. 0.999 averages over ~1,000 steps.

    Notes
    -----
    Update ``n`` uses ``min(decay, (1 + n) / (10 + n))``, so early averages follow the network closely
    (the usual warm-up of TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``).
    Integer buffers (batch norm's ``num_batches_tracked``) are copied.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the averaging decay must lie in (0, 1), not {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.model = copy.deepcopy(model).requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards ``model``'s present weights."""
        self.updates += 1
        weight = 1.0 - self.current_decay()
        for mine, theirs in zip(_tensors(self.model), _tensors(model), strict=True):
            if mine.is_floating_point():
                mine.lerp_(theirs, weight)
            else:
                mine.copy_(theirs)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        self.model.load_state_dict(state)
        self.updates = int(updates)


def _tensors(model: torch.nn.Module):
    return itertools.chain(model.parameters(), model.buffers())
