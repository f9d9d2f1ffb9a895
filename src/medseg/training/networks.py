"""What the trainer needs to know about a network before training it: its size divisor (probed on the
meta device), whether it is built for its input size, and fine-tuning (encoder weights, freezing)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medseg.errors import MedsegError
from medseg.training.config import TrainingConfig

if TYPE_CHECKING:
    from medseg.nets.finetune import StagedUnfreezing

def _divisor(network: torch.nn.Module, spatial_dims: int) -> tuple[int, ...]:
    d = getattr(network, "size_divisor", 1)
    return tuple([int(d)] * spatial_dims) if isinstance(d, int) else tuple(int(v) for v in d)


# Networks whose layers depend on the training patch size (SegResNet-VAE's dense VAE layers): the
# trainer passes ``input_size = patch size``.
_INPUT_SIZE_NETWORKS = frozenset({"segresnet_vae"})


def needs_input_size(name: str) -> bool:
    """Whether network ``name`` must be built with ``input_size`` = the training patch size."""
    from medseg.nets import NETWORKS

    try:
        metadata = NETWORKS.entry(name).metadata
    except Exception:  # unknown names fail later, in create_network, with the registry's message
        return False
    return name in _INPUT_SIZE_NETWORKS or bool(metadata.get("needs_input_size"))


def network_size_divisor(name: str, in_channels: int, num_classes: int, spatial_dims: int,
                         options: dict[str, Any]) -> tuple[int, ...]:
    """The size divisor of the network as it will be trained, before its patch size is known.

    A probe network is built; networks built for an input size get the smallest size their
    architecture accepts (its divisor is the same for every valid size).
    """
    from medseg.nets import create_network
    from medseg.nets.meta import build_on_meta

    options = dict(options)
    if needs_input_size(name) and "input_size" not in options:
        options["input_size"] = [_probe_input_size(name, options)] * spatial_dims
    # On the meta device: no memory and no initialisation cost (FCN-8s has 134M parameters); the forked
    # RNG keeps the probe from shifting the seeded initialisation of the real network.
    with torch.random.fork_rng():
        probe = build_on_meta(create_network, name, in_channels, num_classes, spatial_dims, **options)
    return _divisor(probe, spatial_dims)


def _probe_input_size(name: str, options: dict[str, Any]) -> int:
    # SegResNet-VAE: the VAE halves the end-point of len(blocks_down) - 1 down-samplings once more
    blocks = options.get("blocks_down", (1, 2, 2, 4))
    return 2 ** len(blocks)


def setup_finetuning(model: torch.nn.Module, config: TrainingConfig,
                     load_weights: bool = True) -> StagedUnfreezing | None:
    """Encoder weights, frozen encoder or staged unfreezing, as ``config`` asks.

    Returns the :class:`~medseg.nets.finetune.StagedUnfreezing` (call it every iteration) or None.
    """
    from medseg.nets.finetune import StagedUnfreezing, freeze_encoder

    if config.encoder_weights and load_weights:
        from medseg.nets.encoders.weights import load_encoder_weights

        path = Path(config.encoder_weights)
        if not path.is_file():
            raise MedsegError("encoder weights not found", path)
        load_encoder_weights(model, path)
    if config.freeze_encoder:
        freeze_encoder(model)
    if config.unfreeze_schedule:
        return StagedUnfreezing(model, [(int(i), str(t)) for i, t in config.unfreeze_schedule])
    return None
