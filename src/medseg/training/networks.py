"""What the trainer needs to know about a network before training it: its size divisor (probed on the
meta device), whether it is built for its input size, and fine-tuning (encoder weights, freezing)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from medseg.errors import MedsegError
from medseg.training.config import TrainingConfig

if TYPE_CHECKING:
    from medseg.nets.finetune import StagedUnfreezing

def _divisor(network: torch.nn.Module, spatial_dims: int) -> tuple[int, ...]:
    d = getattr(network, "size_divisor", 1)
    return tuple([int(d)] * spatial_dims) if isinstance(d, int) else tuple(int(v) for v in d)


@dataclass(frozen=True)
class NetworkNeeds:
    """What a network's registry entry declares for training (see :mod:`medseg.nets.registry`)."""

    training_defaults: dict[str, Any] = field(default_factory=dict)
    training_default_reasons: dict[str, str] = field(default_factory=dict)
    norm_option: str | None = None
    needs_input_size: bool = False
    smallest_input_size: Callable[[dict[str, Any]], int] | None = None
    paper_augmentation: tuple[dict[str, Any], ...] = ()  # transforms the network's paper trained with
    paper_loss: str | None = None  # the loss the network's paper trained with
    encoder: str = "encoder"
    released_weights: Callable[[str | None], dict[str, Any]] | None = None
    learning_rate: float | None = None
    promptable: bool = False
    input_size: int | None = None


def network_needs(name: str) -> NetworkNeeds:
    """The training needs declared in network ``name``'s registry entry (empty for unknown names, which
    fail later in :func:`medseg.nets.create_network` with the registry's message)."""
    from medseg.nets import NETWORKS

    try:
        metadata = NETWORKS.entry(name).metadata
    except Exception:
        return NetworkNeeds()
    return NetworkNeeds(
        training_defaults=dict(metadata.get("training_defaults") or {}),
        training_default_reasons=dict(metadata.get("training_default_reasons") or {}),
        norm_option=metadata.get("norm_option"),
        needs_input_size=bool(metadata.get("needs_input_size")),
        smallest_input_size=metadata.get("smallest_input_size"),
        paper_augmentation=tuple(dict(t) for t in metadata.get("paper_augmentation") or ()),
        paper_loss=metadata.get("paper_loss"),
        encoder=metadata.get("encoder", "encoder"), released_weights=metadata.get("released_weights"),
        learning_rate=metadata.get("learning_rate"), promptable=bool(metadata.get("promptable")),
        input_size=metadata.get("input_size"))


def implied_configuration(name: str | None, patch_size: tuple[int, ...], data_dims: int) -> str | None:
    """The configuration ("2d" / "3d") the user's options imply for an automatic plan of 3D data: a patch
    with two or three sizes, a network whose registry entry supports one dimensionality only, or the paper's
    dimensionality of a network that runs in both (V-Net: 3D). None: the planner's rule decides (also when
    no network is named yet: the network rule chooses after the plan)."""
    if data_dims != 3:
        return None
    if len(patch_size) in (2, 3):
        return f"{len(patch_size)}d"
    if name is None:
        return None
    from medseg.nets import NETWORKS

    try:
        metadata = NETWORKS.entry(name).metadata
    except Exception:
        return None
    dims = tuple(metadata.get("dims", (2, 3)))
    if metadata.get("paper_dims"):
        return f"{int(metadata['paper_dims'])}d"
    return f"{dims[0]}d" if len(dims) == 1 else None


def needs_input_size(name: str) -> bool:
    """Whether network ``name`` must be built with ``input_size`` = the training patch size."""
    return network_needs(name).needs_input_size


def network_size_divisor(name: str, in_channels: int, num_classes: int, spatial_dims: int,
                         options: dict[str, Any]) -> tuple[int, ...]:
    """The size divisor of the network as it will be trained, before its patch size is known.

    A probe network is built; networks built for an input size get the smallest size their
    architecture accepts (its divisor is the same for every valid size).
    """
    from medseg.nets import create_network
    from medseg.nets.meta import build_on_meta

    options = dict(options)
    needs = network_needs(name)
    if needs.needs_input_size and "input_size" not in options:
        smallest = needs.smallest_input_size(options) if needs.smallest_input_size else 16
        options["input_size"] = [smallest] * spatial_dims
    # On the meta device: no memory and no initialisation cost (FCN-8s has 134M parameters); the forked
    # RNG keeps the probe from shifting the seeded initialisation of the real network.
    with torch.random.fork_rng():
        probe = build_on_meta(create_network, name, in_channels, num_classes, spatial_dims, **options)
    return _divisor(probe, spatial_dims)


def setup_finetuning(model: torch.nn.Module, config: TrainingConfig,
                     load_weights: bool = True) -> StagedUnfreezing | None:
    """A source model's weights (``init_from``), encoder weights, frozen encoder or staged unfreezing, as
    ``config`` asks.

    Returns the :class:`~medseg.nets.finetune.StagedUnfreezing` (call it every iteration) or None.
    """
    from medseg.nets.finetune import StagedUnfreezing, freeze_encoder

    if config.init_from and load_weights:  # the whole network from a trained model folder (weights_only)
        from medseg.model_folder import load_weights as load_model_weights, weights_path

        load_model_weights(model, weights_path(config.init_from))
    if config.encoder_weights and load_weights:
        from medseg.nets.encoders.weights import load_encoder_weights

        path = Path(config.encoder_weights)
        if not path.is_file():
            raise MedsegError("encoder weights not found", path)
        load_encoder_weights(model, path)
    needs = network_needs(config.network)
    if config.init_weights and load_weights:
        load_initial_weights(model, config.init_weights, needs)
    if config.freeze_encoder:
        freeze_encoder(model, needs.encoder)
    if config.unfreeze_schedule:
        return StagedUnfreezing(model, [(int(i), str(t)) for i, t in config.unfreeze_schedule])
    return None


def load_initial_weights(model: torch.nn.Module, weights: str, needs: NetworkNeeds) -> None:
    """``--init-from-weights``: ``"released"`` (the weights the network ships, checked) or a state-dict file
    the network's registry entry can read."""
    from medseg.io.weights import mismatch_message

    if needs.released_weights is None:
        raise MedsegError(f"{type(model).__name__} ships no weights to start from (--init-from-weights)")
    path = None if weights == "released" else str(weights)
    if path is not None and not Path(path).is_file():
        raise MedsegError("initial weights not found", path)
    state = needs.released_weights(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise MedsegError(f"initial weights do not fit the network: {mismatch_message(exc)}", path) from None
