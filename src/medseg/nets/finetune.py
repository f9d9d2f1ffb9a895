"""Freezing and staged unfreezing for fine-tuning a network with a pretrained encoder.

Parameters are selected by module-path prefix (``"encoder"``, ``"encoder.layer4"``, ``"decoder.aspp"``)
or by the two words ``"all"`` and ``"decoder"`` (everything outside ``encoder``). Freezing sets
``requires_grad = False``; an optimizer built over *all* parameters simply skips those without a gradient,
so unfreezing later needs no new optimizer (Adam's state of a newly unfrozen parameter starts then).

Batch-norm running statistics of a frozen encoder still move in ``train()`` mode; call
:func:`set_frozen_batchnorm_eval` after ``model.train()`` to keep them fixed too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import nn

from medseg.errors import MedsegError


def _selected(name: str, target: str) -> bool:
    if target == "all":
        return True
    if target == "decoder":
        return not (name == "encoder" or name.startswith("encoder."))
    return name == target or name.startswith(target + ".")


def _set(model: nn.Module, targets: Iterable[str], flag: bool) -> list[str]:
    targets = list(targets) or ["all"]
    names = [n for n, _ in model.named_parameters()]
    changed = []
    for target in targets:
        hits = [n for n in names if _selected(n, target)]
        if not hits:
            raise MedsegError(f"no parameters under '{target}'; top-level modules are "
                              f"{sorted({n.split('.')[0] for n in names})}")
    for name, p in model.named_parameters():
        if any(_selected(name, t) for t in targets) and p.requires_grad != flag:
            p.requires_grad_(flag)
            changed.append(name)
    return changed


def freeze(model: nn.Module, *targets: str) -> list[str]:
    """Stop gradients for the parameters under ``targets`` (all parameters when none given).

    Returns
    -------
    list of str
        Names of the parameters whose flag changed.
    """
    return _set(model, targets, False)


def unfreeze(model: nn.Module, *targets: str) -> list[str]:
    """Make the parameters under ``targets`` trainable (all parameters when none given).

    Examples
    --------
    >>> m = nn.Sequential(nn.Linear(2, 2))
    >>> _ = freeze(m); _ = unfreeze(m, "0.bias")
    >>> [n for n, p in m.named_parameters() if p.requires_grad]
    ['0.bias']
    """
    return _set(model, targets, True)


def freeze_encoder(model: nn.Module, encoder: str = "encoder") -> list[str]:
    """Freeze ``model.encoder`` (transfer learning: train the decoder on top of pretrained features).

    ``encoder``: the module's name, as the network's registry entry declares it (LiteMedSAM:
    ``image_encoder``).
    """
    if not isinstance(getattr(model, encoder, None), nn.Module):
        raise MedsegError(f"{type(model).__name__} has no '{encoder}' to freeze")
    return freeze(model, encoder)


def set_frozen_batchnorm_eval(model: nn.Module) -> int:
    """Put batch-norm layers whose parameters are all frozen in eval mode; returns how many.

    Call after ``model.train()``, which switches every layer back to training mode.
    """
    n = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()
                n += 1
    return n


class StagedUnfreezing:
    """Unfreeze parts of a network as training proceeds (gradual unfreezing, cf. ULMFiT / fast.ai).

    Parameters
    ----------
    model : nn.Module
        The network; everything is frozen at construction, then the stages due at iteration 0 are applied.
    stages : sequence of (int, str)
        ``(iteration, target)``: from that iteration on, ``target`` (``"decoder"``, ``"all"`` or a module
        prefix such as ``"encoder.layer4"``) is trainable. Stages are cumulative.

    Examples
    --------
    >>> from medseg.nets import create_network
    >>> net = create_network("encoder_unet", 1, 2, 2, encoder="resnet18")
    >>> schedule = StagedUnfreezing(net, [(0, "decoder"), (500, "encoder.layer4"), (1000, "all")])
    >>> any(p.requires_grad for p in net.encoder.parameters())
    False
    >>> len(schedule(500)) > 0   # call with the iteration; returns the newly unfrozen names
    True
    """

    def __init__(self, model: nn.Module, stages: Sequence[tuple[int, str]]):
        if not stages:
            raise MedsegError("StagedUnfreezing needs at least one (iteration, target) stage")
        self.model = model
        self.stages = sorted((int(i), str(t)) for i, t in stages)
        names = [n for n, _ in model.named_parameters()]
        for _, target in self.stages:  # validate targets now, not at iteration 1000
            if not any(_selected(n, target) for n in names):
                raise MedsegError(f"StagedUnfreezing: no parameters under '{target}'")
        self.applied = 0
        freeze(model)
        self(0)

    def __call__(self, iteration: int) -> list[str]:
        """Apply every stage due at ``iteration``; returns the names of newly trainable parameters."""
        changed: list[str] = []
        while self.applied < len(self.stages) and self.stages[self.applied][0] <= iteration:
            changed += unfreeze(self.model, self.stages[self.applied][1])
            self.applied += 1
        return changed
