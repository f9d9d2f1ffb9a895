"""Reading weight files (PyTorch ``.pt`` checkpoints, safetensors) with one-line errors that say what
is wrong: pickled code refused, a corrupt file, or weights of another network."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from medseg.errors import MedsegError


def load_torch_file(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` with errors naming the file.

    Raises
    ------
    MedsegError
        A file holding pickled code or objects is refused (medseg never executes them; the advice of
        torch's own message, ``weights_only=False``, would run them); an unreadable file is named.
    """
    import pickle

    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise MedsegError(f"refused: this {what} holds pickled Python objects beyond tensors, which medseg never "
                          "runs (not a medseg file, or altered)", path) from None
    except Exception as exc:  # noqa: BLE001 - zip errors, EOF, wrong magic...
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MedsegError(f"cannot read {what} (corrupt or not a PyTorch file): {first[:200]}", path) from None


def mismatch_message(exc: Exception) -> str:
    """A one-line summary of a ``load_state_dict`` / safetensors mismatch: counts and first examples.

    Examples
    --------
    >>> mismatch_message(RuntimeError('Error(s) in loading state_dict for UNet:\\n\\tMissing key(s) in state_dict: '
    ...                               '"a.weight", "b.bias". \\n\\tsize mismatch for c.weight: copying a param with '
    ...                               'shape torch.Size([8, 3]) from checkpoint, the shape in current model is '
    ...                               'torch.Size([4, 3]).'))
    'weights of another network? 2 missing (a.weight, b.bias), 1 of another shape (c.weight: [8, 3] in the file, [4, 3] in the network)'
    """
    text = str(exc)
    parts = []
    missing = re.search(r"Missing key\(s\) in state_dict: (.*?)(?:\.\s*$|\.\s*\n)", text, re.S | re.M)
    unexpected = re.search(r"Unexpected key\(s\) in state_dict: (.*?)(?:\.\s*$|\.\s*\n)", text, re.S | re.M)
    for label, match in (("missing", missing), ("unexpected", unexpected)):
        if match:
            keys = re.findall(r'"([^"]+)"', match.group(1))
            parts.append(f"{len(keys)} {label} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
    sizes = re.findall(r"size mismatch for ([^:]+): copying a param with shape torch.Size\((\[[^\]]*\])\) from "
                       r"checkpoint, the shape in current model is torch.Size\((\[[^\]]*\])\)", text)
    if sizes:
        name, there, here = sizes[0]
        parts.append(f"{len(sizes)} of another shape ({name}: {there} in the file, {here} in the network)")
    if not parts:  # safetensors and other formats: keep the first informative line
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return f"weights of another network? {' '.join(lines[:2])[:300]}"
    return "weights of another network? " + ", ".join(parts)
