"""Histogram matching between training cases (V-Net's intensity augmentation).

Milletari et al. (V-Net, 3DV 2016) adapted "the intensity distributions of the training volumes used in
each iteration to the ones of other randomly chosen scans belonging to the dataset". Matching is done the
way SimpleITK's ``HistogramMatchingImageFilter`` does it: a monotone, piecewise-linear map that sends each
quantile of the source case to the same quantile of the reference case, here with
:data:`QUANTILE_LEVELS` match points (the limit of many points is ``skimage.exposure.match_histograms``).
Because the map is a function of the two *cases'* quantiles, it is applied to a training patch cut from
the source case and gives exactly the values the matched whole volume would have there.

The trainer hands the transform a :class:`BatchCases` (which training case each patch came from and the
cases' quantiles, computed once per case); without it, each patch's own quantiles stand for its case and
another patch of the batch is the reference.

Examples
--------
>>> import torch
>>> x = torch.cat([torch.rand(1, 1, 8, 8), 5 + 3 * torch.rand(1, 1, 8, 8)])
>>> out, _ = RandomHistogramMatching(p=1.0)(x, None, torch.Generator().manual_seed(0))
>>> bool(out[0].min() >= 4.99), bool(out[1].max() <= 1.01)   # each patch took the other's range
(True, True)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from medseg.augmentation.base import RandomTransform, apply_selected
from medseg.errors import MedsegError

Tensor = torch.Tensor

#: Match points (evenly spaced quantile levels, 0 and 1 included).
QUANTILE_LEVELS = 257


def intensity_quantiles(image: np.ndarray, levels: int = QUANTILE_LEVELS) -> np.ndarray:
    """Per-channel intensity quantiles ``(C, levels)`` of a ``(C, *S)`` image (float32 arithmetic).

    Examples
    --------
    >>> intensity_quantiles(np.arange(11.0).reshape(1, 11), levels=3).tolist()
    [[0.0, 5.0, 10.0]]
    """
    q = np.linspace(0.0, 1.0, int(levels))
    flat = np.asarray(image).reshape(image.shape[0], -1)
    return np.stack([np.quantile(np.asarray(c, dtype=np.float32), q) for c in flat]).astype(np.float32)


def match_quantiles(image: np.ndarray, source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Map each channel's intensities so that the ``source`` quantiles land on the ``reference`` ones.

    Parameters
    ----------
    image : ndarray (C, *S)
        Intensities of the source case (all of it, or a patch cut from it).
    source, reference : ndarray (C, Q)
        Quantiles of the source case and of the reference case (:func:`intensity_quantiles`).

    Returns
    -------
    ndarray
        ``image``'s shape and dtype; values outside the source's range map to the reference's extremes.

    Examples
    --------
    >>> img = np.array([[0.0, 1.0, 2.0]])
    >>> match_quantiles(img, np.array([[0.0, 2.0]]), np.array([[10.0, 30.0]])).tolist()
    [[10.0, 20.0, 30.0]]
    """
    if source.shape != reference.shape or source.shape[0] != image.shape[0]:
        raise MedsegError(f"quantile tables {source.shape} and {reference.shape} do not fit an image of "
                          f"{image.shape[0]} channel(s)")
    out = np.empty_like(image)
    for c in range(image.shape[0]):
        # np.interp needs increasing match points: a run of equal quantiles (e.g. a zero background) maps to
        # the first of the reference's values there, as a step.
        xp = np.maximum.accumulate(source[c].astype(np.float64))
        out[c] = np.interp(image[c], xp, reference[c].astype(np.float64)).astype(image.dtype)
    return out


@dataclass(frozen=True)
class BatchCases:
    """Which case each sample of a batch came from, and every training case's quantiles.

    Attributes
    ----------
    index : ndarray (N,)
        Case of each sample (an index into ``quantiles``).
    quantiles : ndarray (K, C, Q)
        :func:`intensity_quantiles` of the K training cases.
    """

    index: np.ndarray
    quantiles: np.ndarray


@dataclasses.dataclass
class RandomHistogramMatching(RandomTransform):
    """Match a sample's intensity histogram to that of another, randomly chosen training case.

    Parameters
    ----------
    p : float
        Probability per sample.

    Notes
    -----
    Called with ``cases=`` (:class:`BatchCases`, as the trainer does), the reference is a training case
    other than the sample's own (uniformly chosen). Without it, each sample's own quantiles are the
    source and another sample of the batch the reference; a batch of one is left unchanged.
    """

    name: ClassVar[str] = "histogram_matching"
    uses_cases: ClassVar[bool] = True
    p: float = 0.5

    def __call__(self, image: Tensor, label: Tensor | None = None, generator: torch.Generator | None = None,
                 cases: BatchCases | None = None) -> tuple[Tensor, Tensor | None]:
        from medseg.augmentation.functional import check_batch

        check_batch(image, label)
        n = image.shape[0]
        selected = torch.rand(n, generator=generator) < float(self.p)
        offsets = torch.rand(n, generator=generator)  # which other case / sample, drawn for every sample
        if cases is not None and len(cases.index) != n:
            raise MedsegError(f"histogram matching: {len(cases.index)} case indices for a batch of {n}")
        pool = len(cases.quantiles) if cases is not None else n
        if pool < 2 or not bool(selected.any()):
            return image, label
        array = image.detach().cpu().to(torch.float32).numpy()
        if cases is None:
            own = np.arange(n)
            quantiles = np.stack([intensity_quantiles(a) for a in array])
        else:
            own, quantiles = np.asarray(cases.index), np.asarray(cases.quantiles)
        matched = []
        for i in torch.nonzero(selected).flatten().tolist():
            k = int(own[i])
            other = (k + 1 + int(float(offsets[i]) * (pool - 1))) % pool  # uniform over the others, never k
            matched.append(torch.from_numpy(match_quantiles(array[i], quantiles[k], quantiles[other])))
        out = torch.stack(matched).to(device=image.device)
        return apply_selected(image, selected, out), label



__all__ = ["QUANTILE_LEVELS", "BatchCases", "RandomHistogramMatching", "intensity_quantiles", "match_quantiles"]
