"""Count a network's parameters without allocating or initialising them.

FCN-8s has 134M parameters (540 MB) and building it on CPU takes seconds; listing networks or checking
published parameter counts needs only shapes. Building on PyTorch's ``meta`` device allocates nothing, but
random initialisers (``normal_``) on meta tensors go through ``torch._refs`` and import TorchDynamo (3–8 s
measured on these machines), so the two normal-distribution initialisers are replaced by no-ops while the
network is built. The replacement is temporary (restored on exit) and not thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def build_on_meta(build: Callable[..., nn.Module], *args: Any, **kwargs: Any) -> nn.Module:
    """``build(*args, **kwargs)`` on the meta device (shapes and names only, no data).

    Examples
    --------
    >>> build_on_meta(nn.Linear, 10, 5).weight.device.type
    'meta'
    """
    saved = nn.init.normal_, nn.init.kaiming_normal_
    nn.init.normal_ = nn.init.kaiming_normal_ = lambda tensor, *a, **k: tensor
    try:
        with torch.device("meta"):
            return build(*args, **kwargs)
    finally:
        nn.init.normal_, nn.init.kaiming_normal_ = saved


def count_parameters(build: Callable[..., nn.Module], *args: Any, trainable_only: bool = False,
                     **kwargs: Any) -> int:
    """Number of parameters of ``build(*args, **kwargs)``, built on the meta device.

    Parameters
    ----------
    build : callable
        Returns an ``nn.Module`` (e.g. :func:`medseg.nets.create_network`).
    *args, **kwargs
        Passed to ``build``.
    trainable_only : bool
        Count only parameters with ``requires_grad``.

    Returns
    -------
    int

    Examples
    --------
    >>> count_parameters(nn.Linear, 10, 5)
    55
    """
    model = build_on_meta(build, *args, **kwargs)
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
