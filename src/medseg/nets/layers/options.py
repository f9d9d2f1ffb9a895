"""Checking network options by name, so a typo in a plan or on the command line is a clear error."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from medseg.errors import MedsegError

_BUILT_IN = {"in_channels", "num_classes", "spatial_dims"}


def build_checked(cls: Callable[..., Any], name: str, in_channels: int, num_classes: int, spatial_dims: int,
                  options: dict[str, Any]) -> Any:
    """``cls(in_channels, num_classes, spatial_dims, **options)``, rejecting unknown option names.

    Parameters
    ----------
    cls : callable
        The network class.
    name : str
        Registered network name (for the message).
    in_channels, num_classes, spatial_dims : int
    options : dict
        Network-specific keyword options.

    Examples
    --------
    >>> def net(in_channels, num_classes, spatial_dims, width=1):
    ...     return width
    >>> build_checked(net, "toy", 1, 2, 2, {"width": 3})
    3
    >>> build_checked(net, "toy", 1, 2, 2, {"widht": 3})
    Traceback (most recent call last):
    ...
    medseg.errors.MedsegError: unknown option 'widht' for network 'toy'; known: width
    """
    known = [p for p in inspect.signature(cls).parameters if p not in _BUILT_IN]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise MedsegError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(repr(u) for u in unknown)} "
            f"for network '{name}'; known: {', '.join(known)}"
        )
    return cls(in_channels, num_classes, spatial_dims, **options)


__all__ = ["build_checked"]
