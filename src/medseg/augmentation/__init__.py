"""Data augmentation as batched torch ops on ``(N, C, *S)`` images and ``(N, 1, *S)`` labels, 2D and 3D.

TorchIO's style: each ``Random*`` transform draws per-sample parameters (and whether to act, with
probability ``p``) from a ``torch.Generator``, then calls a deterministic twin in
:mod:`medseg.augmentation.functional`; the same seed gives the same result. Labels are resampled
with nearest neighbour and keep their dtype and values.

Examples
--------
>>> import torch
>>> aug = build_augmentation(None, spatial_dims=2)
>>> img, lab = torch.rand(2, 1, 32, 32), torch.randint(0, 2, (2, 1, 32, 32))
>>> out, out_lab = aug(img, lab, torch.Generator().manual_seed(0))
>>> out.shape, out_lab.dtype
(torch.Size([2, 1, 32, 32]), torch.int64)
"""

from medseg.augmentation.base import RandomTransform
from medseg.augmentation.bspline import RandomBSplineDeformation
from medseg.augmentation.compose import Compose, build_augmentation, default_augmentation_config, transform_types
from medseg.augmentation.intensity import (
    RandomBiasField,
    RandomBrightness,
    RandomContrast,
    RandomGamma,
    RandomGaussianBlur,
    RandomGaussianNoise,
    RandomLowResolution,
)
from medseg.augmentation.histogram import BatchCases, RandomHistogramMatching
from medseg.augmentation.spatial import RandomAffine, RandomElastic, RandomFlip

__all__ = [
    "RandomTransform",
    "Compose",
    "build_augmentation",
    "default_augmentation_config",
    "transform_types",
    "RandomFlip",
    "RandomAffine",
    "RandomElastic",
    "RandomBSplineDeformation",
    "RandomHistogramMatching",
    "BatchCases",
    "RandomBrightness",
    "RandomContrast",
    "RandomGamma",
    "RandomGaussianNoise",
    "RandomGaussianBlur",
    "RandomLowResolution",
    "RandomBiasField",
]
