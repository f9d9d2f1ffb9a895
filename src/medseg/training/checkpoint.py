"""Checkpoints: weights, optimizer, schedule position and every RNG state, written atomically and read
back with ``torch.load(..., weights_only=True)`` (no pickled code is ever executed)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.errors import MedsegError
from medseg.fileutil import atomic_path


def rng_states() -> dict[str, Any]:
    """Python, numpy and torch global RNG states as tensors / plain types (weights_only-loadable)."""
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` captured."""
    py = states["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(states["torch"])


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    iteration: int,
    elapsed: float,
    extra: dict[str, Any] | None = None,
    averaged: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write a resumable checkpoint atomically.

    Parameters
    ----------
    path : path
        Usually ``MODEL/checkpoint_last.pt``.
    model, optimizer
    iteration : int
        Completed iterations.
    elapsed : float
        Training seconds used so far (the wall-clock budget continues from here).
    extra : dict, optional
        Plain data (numbers, strings, lists, dicts, tensors): best metric, schedule state...
    averaged : dict of tensors, optional
        State dict of the weight average (:class:`medseg.training.averaging.WeightAverage`), which a
        checkpoint then predicts with; ``model`` stays the training weights that resume needs.
    """
    payload = {
        "format": 1,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "iteration": int(iteration),
        "elapsed": float(elapsed),
        "rng": rng_states(),
        "extra": extra or {},
    }
    if averaged is not None:
        payload["averaged_model"] = averaged
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(
    path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, *, restore_rng: bool = True
) -> dict[str, Any]:
    """Load a checkpoint into ``model`` (and ``optimizer``); returns the whole payload."""
    path = Path(path)
    if not path.is_file():
        raise MedsegError("checkpoint not found (nothing to resume)", path)
    from medseg.io.weights import load_torch_file, mismatch_message

    payload = load_torch_file(path, "checkpoint")
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise MedsegError(f"checkpoint does not fit the network: {mismatch_message(exc)}", path) from None
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    if restore_rng:
        set_rng_states(payload["rng"])
    return payload
