"""Ensembles of model folders (e.g. the five cross-validation folds): members must agree on what they
predict; their probabilities are averaged on the input's grid."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from medseg.errors import MedsegError
from medseg.model_folder import ModelConfig


def check_compatible(configs: Sequence[ModelConfig], folders: Sequence[Path | None] | None = None) -> None:
    """Raise when ensemble members differ in labels, regions, input channels or data dimensionality.

    Preprocessing, spacing, patch size, network, decision threshold and postprocessing may differ: each
    member applies its own grid; the averaged probabilities take :func:`ensemble_threshold` and the steps
    every member chose.
    """
    if not configs:
        raise MedsegError("an ensemble needs at least one model")
    first = configs[0]
    key = lambda c: (c.label_values, c.regions, c.input_channels, c.data_dims)  # noqa: E731
    for i, c in enumerate(configs[1:], start=1):
        if key(c) != key(first):
            where = folders[i] if folders else None
            raise MedsegError("models of an ensemble must share labels, regions, input channels and "
                              "dimensionality", where)


def mean_probabilities(members: Iterable[np.ndarray]) -> np.ndarray:
    """Running mean of probability arrays (one member in memory at a time besides the sum)."""
    total, count = None, 0
    for p in members:
        p = np.asarray(p, dtype=np.float32)
        if total is None:
            total = p.copy()
        elif p.shape != total.shape:
            raise MedsegError(f"ensemble members disagree in output shape: {p.shape} vs {total.shape}")
        else:
            total += p
        count += 1
    if total is None:
        raise MedsegError("an ensemble needs at least one model")
    total /= count
    return total


def ensemble_threshold(configs: Sequence[ModelConfig]) -> float | None:
    """The decision threshold of averaged probabilities: the mean of the members' thresholds (a member
    without one counts as the argmax's 0.5); None when no member has one.

    Examples
    --------
    >>> from medseg.model_folder import ModelConfig
    >>> base = dict(network="unet", network_options={}, in_channels=1, num_classes=2, spatial_dims=2,
    ...             channel_names=["0"], labels={"b": 0, "v": 1}, label_values=[0, 1], patch_size=[8, 8])
    >>> ensemble_threshold([ModelConfig(**base, decision_threshold=0.7), ModelConfig(**base)])
    0.6
    """
    values = [c.decision_threshold for c in configs]
    if all(v is None for v in values):
        return None
    return float(np.mean([0.5 if v is None else v for v in values]))
