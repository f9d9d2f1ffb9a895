"""The MedSAM input frame: one 2D slice → the promptable encoder's 256 × 256 input, and the box jitter.

Ma et al., "Segment anything in medical images", Nat. Commun. 2024: intensities clipped to the image's
0.5-99.5 percentiles (8-bit images as they are), the longest side resized to 256, min-max scaled to
[0, 1], zero-padded to 256 × 256. Boxes were perturbed in training by 0-5 pixels of that frame per side.
Prompting (:mod:`medseg.inference.prompt`) and prompt training (:mod:`medseg.training.prompted`) both frame
slices here, so that a fine-tuned network sees exactly what it will be prompted with.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

FRAME = 256  # the encoder's input side (LiteMedSAM's IMAGE_SIZE)
PERCENTILES = (0.5, 99.5)  # MedSAM's intensity clipping for MR and other non-8-bit images
# LiteMedSAM was trained with each box side pushed out by 0-5 pixels of its 256-pixel frame (MedSAM's
# bbox_shift); the zero-shot protocol and prompt fine-tuning perturb reference boxes the same way.
MEDSAM_JITTER = 5


def intensity_window(array: np.ndarray, eight_bit: bool | None = None) -> tuple[float, float]:
    """``(lower, upper)`` clipping bounds: the full range for 8-bit data, else the 0.5-99.5 percentiles.

    ``eight_bit`` None: decided by the array's dtype (uint8).

    Examples
    --------
    >>> intensity_window(np.arange(10, dtype=np.uint8))
    (0.0, 255.0)
    """
    if eight_bit or (eight_bit is None and array.dtype == np.uint8):
        return 0.0, 255.0
    lower, upper = np.percentile(array, PERCENTILES)
    return float(lower), float(upper)


def frame_scale(shape: tuple[int, int]) -> tuple[float, int, int]:
    """``(scale, height, width)`` of a ``(Y, X)`` slice inside the frame (longest side = 256)."""
    h, w = shape
    scale = FRAME / max(h, w)
    return scale, max(1, round(h * scale)), max(1, round(w * scale))


def slice_frame(slice_cyx: np.ndarray, lower: float, upper: float) -> tuple[torch.Tensor, float]:
    """One slice ``(C, Y, X)`` (1 or 3 channels) → the encoder's ``(1, 3, 256, 256)`` input and its scale.

    Examples
    --------
    >>> frame, scale = slice_frame(np.zeros((1, 100, 50)), 0.0, 1.0)
    >>> tuple(frame.shape), scale
    ((1, 3, 256, 256), 2.56)
    """
    c = slice_cyx.shape[0]
    scale, nh, nw = frame_scale(slice_cyx.shape[1:])
    x = torch.as_tensor(np.clip(slice_cyx, lower, upper), dtype=torch.float32)[None]
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=scale < 1)
    x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-8)
    x = F.pad(x, (0, FRAME - nw, 0, FRAME - nh))
    return (x.expand(-1, 3, -1, -1) if c == 1 else x), scale


def label_frame(roi: np.ndarray) -> torch.Tensor:
    """A ``(Y, X)`` slice label (any integer values) on the frame: nearest-neighbour resize, zero-padded.

    Returns ``(256, 256)`` int64 (padding 0), aligned with :func:`slice_frame`'s image.
    """
    _, nh, nw = frame_scale(roi.shape)
    x = torch.as_tensor(np.asarray(roi), dtype=torch.float32)[None, None]
    x = F.interpolate(x, size=(nh, nw), mode="nearest-exact")
    return F.pad(x, (0, FRAME - nw, 0, FRAME - nh))[0, 0].round().long()


__all__ = ["FRAME", "MEDSAM_JITTER", "PERCENTILES", "frame_scale", "intensity_window", "label_frame", "slice_frame"]
