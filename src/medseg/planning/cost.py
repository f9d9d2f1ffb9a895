"""Cost model of a U-Net training step: FLOPs and activation memory per voxel.

Counting rule: a plain U-Net level has two conv-norm-activation blocks in the encoder and, except at the
bottom, a transposed convolution, a concatenation and two blocks in the decoder. Convolutions dominate
the time (DESIGN.md §6), so only their multiply-adds are counted: ``2·k·c_in·c_out`` FLOPs per output
voxel for a kernel of ``k`` elements. Backward costs about twice forward, so a training step is 3×
forward. For memory, each block keeps its convolution, normalisation and activation outputs for the
backward pass (3 tensors of ``c_out``), the decoder also its upsampled tensor and the concatenation.
The constants are checked against nnU-Net's ACDC 2D plan, which this model puts at about 7 TFLOP per
iteration — consistent with the 80–100 s per iteration measured for it on the 2-core machine (issue 5).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: Float tensors kept per voxel and output channel: encoder 2 blocks × 3, decoder 2 × 3 + up + concat (2).
_ENCODER_TENSORS = 6
_DECODER_TENSORS = 9
#: Allocator slack, autograd bookkeeping and the augmentation batch: measured peak / counted tensors.
MEMORY_OVERHEAD = 1.5


def level_channels(features: int, levels: int, max_features: int) -> list[int]:
    """Channels per level: ``features`` doubling per level, capped at ``max_features``."""
    return [min(features * 2**level, max_features) for level in range(levels)]


def unet_step_cost(
    patch_size: Sequence[int],
    batch_size: int,
    features: int,
    strides: Sequence[Sequence[int]],
    kernel_sizes: Sequence[Sequence[int]],
    in_channels: int = 1,
    num_classes: int = 2,
    max_features: int = 320,
) -> dict[str, float]:
    """FLOPs and memory of one training step (forward + backward) of a plain U-Net.

    Returns
    -------
    dict
        ``flops`` (per step), ``activation_bytes`` (per step, fp32, with :data:`MEMORY_OVERHEAD`),
        ``parameter_bytes`` (weights, gradients and two AdamW moments), ``parameters``.

    Examples
    --------
    >>> c = unet_step_cost((64, 64), 2, 16, [[1, 1], [2, 2]], [[3, 3], [3, 3]])
    >>> c["flops"] > 0 and c["activation_bytes"] > 0
    True
    """
    levels = len(strides)
    channels = level_channels(features, levels, max_features)
    voxels = float(np.prod(patch_size)) * batch_size
    fraction = 1.0
    flops_fwd = 0.0
    tensors = 0.0
    params = 0.0
    c_prev = in_channels
    for level in range(levels):
        fraction /= float(np.prod(strides[level]))
        k = float(np.prod(kernel_sizes[level]))
        c = channels[level]
        enc = 2 * k * c_prev * c + 2 * k * c * c
        params += k * c_prev * c + k * c * c
        dec = 0.0
        if level < levels - 1:
            c_up = channels[level + 1]
            up_k = float(np.prod(strides[level + 1]))
            # transposed conv (kernel = stride): each output voxel receives one kernel element
            dec = 2 * c_up * c + 2 * k * (2 * c) * c + 2 * k * c * c
            params += up_k * c_up * c + k * 2 * c * c + k * c * c
        flops_fwd += fraction * (enc + dec)
        tensors += fraction * c * (_ENCODER_TENSORS + (_DECODER_TENSORS if level < levels - 1 else 0))
        c_prev = c
    flops_fwd += 2 * channels[0] * num_classes  # 1×1 head
    params += channels[0] * num_classes
    return {
        "flops": 3.0 * flops_fwd * voxels,
        "activation_bytes": 4.0 * tensors * voxels * MEMORY_OVERHEAD,
        "parameter_bytes": 4.0 * 4 * params,
        "parameters": params,
    }
