"""Loading local torchvision-format ImageNet weights into medseg encoders (nothing is downloaded).

Key mapping from a torchvision classifier state dict to a medseg encoder (documented and tested):

1. A checkpoint dict with a ``"state_dict"`` or ``"model"`` entry is unwrapped; a ``"module."`` prefix
   (``nn.DataParallel``) is stripped.
2. Classifier keys are dropped: ``fc.*`` (ResNet), ``classifier.*`` (VGG, DenseNet) — unless the encoder
   was built with a classifier head (``num_classes``), in which case they load too.
3. Every other key is the same string: VGG ``features.N.*`` with torchvision's ``nn.Sequential`` indices
   (e.g. VGG-16 ``features.28.weight`` is conv5_3, VGG-16-BN ``features.41.running_var`` its BN),
   ResNet ``conv1/bn1/layerK.J.*``, DenseNet ``features.*``.
4. Old DenseNet files spell ``denselayerJ.norm.1.weight``; they are renamed ``denselayerJ.norm1.weight``
   (torchvision's own regular expression).
5. If the first convolution's input channels differ (a 3-channel RGB file into a 1- or 4-channel model),
   its weight is adapted as segmentation_models_pytorch does: summed over RGB for one channel, otherwise
   RGB repeated cyclically and scaled by 3 / in_channels (:func:`adapt_first_conv_weight`).

Any remaining missing or unexpected key, or a shape mismatch, is a :class:`MedsegError` naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from medseg.errors import MedsegError
from medseg.nets.encoders.base import Encoder, adapt_first_conv_weight

_DENSENET_LEGACY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.pth``/``.pt`` (``torch.load(weights_only=True)``) or ``.safetensors`` file.

    Parameters
    ----------
    path : path-like
        The weight file.

    Returns
    -------
    dict of str to torch.Tensor
    """
    path = Path(path)
    if not path.is_file():
        raise MedsegError("encoder weight file not found", path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with code, wrong format
        raise MedsegError(f"cannot read encoder weights: {exc}", path) from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MedsegError("not a state dict (a mapping of parameter names to tensors)", path)
    return state


def map_torchvision_keys(state: dict[str, torch.Tensor], encoder: Encoder) -> dict[str, torch.Tensor]:
    """Apply steps 1–5 of the module's key mapping; returns a new dict in the encoder's names."""
    keep_head = getattr(encoder, "num_classes", None) is not None
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module."):]
        if not keep_head and key.startswith(encoder.classifier_prefixes):
            continue
        m = _DENSENET_LEGACY.match(key)
        if m:
            key = m.group(1) + m.group(2)
        out[key] = value
    w = out.get(encoder.first_conv)
    if w is not None and w.ndim == 4 and w.shape[1] != encoder.in_channels:
        out[encoder.first_conv] = adapt_first_conv_weight(w, encoder.in_channels)
    return out


def load_encoder_weights(encoder: Encoder, path: str | Path) -> Encoder:
    """Load a local torchvision-format state dict into ``encoder`` (in place).

    Parameters
    ----------
    encoder : Encoder or nn.Module
        From :func:`medseg.nets.encoders.create_encoder`, or a network with an ``.encoder`` (loaded there).
    path : path-like
        ``.pth``/``.pt`` or ``.safetensors`` file, e.g. torchvision's ``resnet50-0676ba61.pth``.

    Returns
    -------
    Encoder
        The same encoder, for chaining.

    Raises
    ------
    MedsegError
        Naming the file, with the missing / unexpected keys or mismatched shapes.

    Examples
    --------
    >>> from medseg.nets.encoders import create_encoder
    >>> enc = create_encoder("resnet18", in_channels=1)
    >>> load_encoder_weights(enc, "resnet18-f37072fd.pth")  # doctest: +SKIP
    """
    if not isinstance(encoder, Encoder) and isinstance(getattr(encoder, "encoder", None), Encoder):
        encoder = encoder.encoder
    if not isinstance(encoder, Encoder):
        raise MedsegError(f"cannot load encoder weights into a {type(encoder).__name__}: it has no encoder", path)
    path = Path(path)
    state = map_torchvision_keys(read_state_dict(path), encoder)
    own = encoder.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                  for k in own if k in state and state[k].shape != own[k].shape]
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                        ("shape mismatches (file vs model)", mismatched)):
        if keys:
            shown = ", ".join(keys[:5]) + (f", … ({len(keys)} in all)" if len(keys) > 5 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        name = type(encoder).__name__
        raise MedsegError(f"does not match the {name} (torchvision names expected): " + "; ".join(problems), path)
    encoder.load_state_dict(state, strict=False)  # strict checks done above; num_batches_tracked may be absent
    return encoder
