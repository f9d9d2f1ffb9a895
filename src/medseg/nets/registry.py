"""The network registry: every network is built by name.

Network contract (all networks, so that trainer, predictor and exporter treat them alike):

- ``factory(in_channels, num_classes, spatial_dims, **options) -> torch.nn.Module``.
- In eval mode ``forward(x)`` returns logits ``(N, num_classes, *S)`` with the input's spatial size ``S``,
  for any input size (networks pad internally to a multiple of their ``size_divisor`` and crop back).
- In train mode it returns either that tensor or a dict with ``"logits"`` and optional extras:
  ``"deep_supervision"`` (list of lower-resolution logits, finest first) and, for VAE-regularised
  networks, ``"reconstruction"``, ``"mu"``, ``"logvar"``. :mod:`medseg.losses` knows these keys.
- Attribute ``size_divisor`` (int, or tuple per spatial axis): patch sizes divisible by it need no padding.
- Registry metadata: ``dims`` (tuple of supported spatial dims), ``citation`` (str), ``summary`` (str), and
  what the trainer must know (so that it names no network):

  - ``training_defaults`` (dict): options applied when training unless given (U-Net: 16 features, deep
    supervision), with ``training_default_reasons`` (dict): why, per option, printed and recorded with the rule;
  - ``paper_loss`` (str): the loss the network's paper trained with (V-Net: its Dice), the loss rule's default
    for it (see :func:`medseg.losses.build_loss`);
  - ``paper_dims`` (int): the dimensionality of the paper's network where it also runs in the other one (V-Net:
    3), which an automatic plan's configuration follows;
  - ``norm_option`` (str): the option choosing the normalisation layer (``"norm"``), which the
    normalisation-layer rule may set to ``"batch"``;
  - ``needs_input_size`` (bool): the network is built for its input size (``input_size`` = the training
    patch), with ``smallest_input_size(options) -> int`` the smallest size its architecture accepts;
  - ``encoder`` (str): the module ``--freeze-encoder`` freezes (default ``"encoder"``);
  - ``released_weights`` (callable ``path or None -> state dict``): weights the network ships (``None`` = the
    released file; a path = a compatible state dict), loaded by ``--init-from-weights``;
  - ``learning_rate`` (float): the fine-tuning rate of those weights (replaces the from-scratch rule);
  - ``promptable`` (bool) with ``input_size`` (int): a promptable segmenter, trained from box prompts sampled
    from the labels (:mod:`medseg.training.prompted`). It is built with ``num_classes=2`` (one mask per
    prompt) and offers ``encode_image(x (B, C, S, S) in [0, 1]) -> embedding`` and
    ``decode(embedding, boxes=(B, 4) x0, y0, x1, y1 in the S-pixel frame) -> (logits (B, 1, S, S),
    predicted IoU (B, 1))``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medseg.errors import MedsegError
from medseg.registry import Registry

if TYPE_CHECKING:  # torch is imported by the network modules, not by the registry itself
    from torch import nn

NETWORKS = Registry("network", entry_point_group="medseg.networks")


def create_network(name: str, in_channels: int, num_classes: int, spatial_dims: int, **options: Any) -> nn.Module:
    """Build a registered network.

    Parameters
    ----------
    name : str
        Registered name, e.g. ``"unet"`` (see ``medseg nets``).
    in_channels, num_classes : int
        Input channels (modalities) and output classes (or regions for sigmoid heads).
    spatial_dims : int
        2 or 3.
    **options
        Network-specific options (width, depth, ...).

    Returns
    -------
    torch.nn.Module
    """
    entry = NETWORKS.entry(name)
    dims = entry.metadata.get("dims", (2, 3))
    if spatial_dims not in dims:
        raise MedsegError(f"network '{name}' supports spatial_dims {tuple(dims)}, not {spatial_dims}")
    try:
        return entry.factory(in_channels=in_channels, num_classes=num_classes, spatial_dims=spatial_dims, **options)
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc):
            raise MedsegError(f"network '{name}': {exc}") from exc
        raise
