"""Ensembles of model folders (e.g. the five cross-validation folds): members must agree on what they
predict; their probabilities are averaged on the input's grid."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from medseg.errors import MedsegError
from medseg.model_folder import ModelConfig


def check_compatible(configs: Sequence[ModelConfig], folders: Sequence[Path | None] | None = None) -> None:
    """Raise when ensemble members differ in labels, regions, decision threshold, input channels or data
    dimensionality.

    Preprocessing, spacing, patch size and network may differ: each member applies its own.
    """
    if not configs:
        raise MedsegError("an ensemble needs at least one model")
    first = configs[0]
    key = lambda c: (c.label_values, c.regions, c.decision_threshold, c.input_channels, c.data_dims)  # noqa: E731
    for i, c in enumerate(configs[1:], start=1):
        if key(c) != key(first):
            where = folders[i] if folders else None
            raise MedsegError("models of an ensemble must share labels, regions, decision threshold, input "
                              "channels and dimensionality", where)


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
