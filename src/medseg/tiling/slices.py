"""A 2D network applied to 3D data slice by slice (a plan's "2d" configuration for volumes).

The trick that keeps everything else dimension-agnostic: a 2D network is presented as a 3D one whose
patch has size 1 along the slice axis. Patch sampling, sliding window (Gaussian weight 1 along that axis,
one tile per slice), streaming and mirroring then work unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:  # only tensors' own methods are called: reading a patch size needs no torch
    import torch


def volume_patch_size(patch_size: Sequence[int], slice_axis: int | None) -> tuple[int, ...]:
    """The network's patch size in the data's dimensions (a 1 inserted at ``slice_axis``).

    Examples
    --------
    >>> volume_patch_size((64, 48), 0), volume_patch_size((64, 48), None)
    ((1, 64, 48), (64, 48))
    """
    patch = tuple(int(p) for p in patch_size)
    if slice_axis is None:
        return patch
    return patch[:slice_axis] + (1,) + patch[slice_axis:]


def slice_network(network: Callable[[torch.Tensor], torch.Tensor], slice_axis: int | None) -> Callable:
    """Wrap a 2D network so it maps ``(N, C, *S3)`` with size 1 along ``slice_axis`` to 3D logits."""
    if slice_axis is None:
        return network
    dim = 2 + slice_axis

    def run(x: torch.Tensor) -> torch.Tensor:
        out = network(x.squeeze(dim))
        if isinstance(out, dict):
            out = out["logits"]
        return out.unsqueeze(dim)

    return run
