"""The BraTS challenge's scoring conventions for region-based tasks (whole tumour, tumour core, enhancing tumour).

Dice and HD95 are computed per region (the union of the region's label values) as everywhere in medseg;
what BraTS adds is how an empty region scores, so that every case gives a finite number:

- empty in both reference and prediction: Dice 1, HD95 0 (the case was right to find nothing);
- present in exactly one of them: Dice 0, HD95 :data:`BRATS_MAX_DISTANCE` = 373.13 mm.

373.13 mm is the diagonal of the BraTS image grid, 240 × 240 × 155 voxels of 1 mm
(√(240² + 240² + 155²) = 373.128 mm), the largest distance two voxels can have: the value the BraTS
evaluation (CBICA's CaPTk / the Synapse leaderboard, used since BraTS 2018 and quoted by its summary paper,
Bakas et al. arXiv:1811.02629) reports for a missed or hallucinated region, e.g. an enhancing tumour in a
case without one. medseg's own convention elsewhere is ``inf`` (see
:mod:`medseg.metrics.surface`), which keeps the failure visible but makes a mean undefined; BraTS
averages the penalty in.

Examples
--------
>>> import numpy as np
>>> ref = np.zeros((8, 8, 8), np.uint8); ref[2:6, 2:6, 2:6] = 2; ref[3:5, 3:5, 3:5] = 4
>>> out = brats_region_metrics(ref, ref, {"whole_tumor": [1, 2, 4], "enhancing_tumor": [4]})
>>> out["enhancing_tumor"]["dice"], out["enhancing_tumor"]["hd95"]
(1.0, 0.0)
>>> pred = np.where(ref == 4, 2, ref)   # the enhancing part predicted as oedema: ET missed entirely
>>> brats_region_metrics(pred, ref, {"enhancing_tumor": [4]})["enhancing_tumor"]["hd95"]
373.13
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from medseg.metrics.case import label_mask
from medseg.metrics.overlap import dice
from medseg.metrics.surface import hd95

__all__ = ["BRATS_MAX_DISTANCE", "BRATS_DISTANCE_METRICS", "brats_region_metrics", "apply_brats_convention"]

#: HD95 (mm) of a region present in exactly one of reference and prediction: the diagonal of the
#: 240 × 240 × 155 1-mm BraTS grid, as the BraTS evaluation reports it.
BRATS_MAX_DISTANCE = 373.13

#: The distance metrics the penalty replaces (medseg scores them ``inf`` when exactly one mask is empty).
BRATS_DISTANCE_METRICS = ("hausdorff", "hd95", "assd")


def apply_brats_convention(metrics: Mapping[str, float], reference_empty: bool, prediction_empty: bool,
                           ) -> dict[str, float]:
    """One region's metrics with the BraTS empty-region rules applied.

    Parameters
    ----------
    metrics : mapping
        Metric name -> value as :func:`medseg.metrics.evaluate_case` returns them.
    reference_empty, prediction_empty : bool
        Whether the region is absent from the reference / the prediction.

    Returns
    -------
    dict
        A copy in which, when exactly one side is empty, Dice is 0 and every distance of
        :data:`BRATS_DISTANCE_METRICS` is :data:`BRATS_MAX_DISTANCE`; when both are empty, Dice 1 and
        distances 0. Other metrics are unchanged.

    Examples
    --------
    >>> apply_brats_convention({"dice": 0.0, "hd95": float("inf")}, False, True)
    {'dice': 0.0, 'hd95': 373.13}
    """
    out = dict(metrics)
    if reference_empty and prediction_empty:
        out["dice"] = 1.0
        out.update({m: 0.0 for m in BRATS_DISTANCE_METRICS if m in out})
    elif reference_empty != prediction_empty:
        out["dice"] = 0.0
        out.update({m: BRATS_MAX_DISTANCE for m in BRATS_DISTANCE_METRICS if m in out})
    return out


def brats_region_metrics(prediction: np.ndarray, reference: np.ndarray, regions: Mapping[str, Sequence[int]],
                         spacing: Sequence[float] | None = None) -> dict[str, dict[str, float]]:
    """Dice and HD95 per region with the BraTS conventions.

    Parameters
    ----------
    prediction, reference : ndarray of int
        Label maps with the dataset's values (BraTS: 0, 1, 2, 4), same shape.
    regions : mapping of str to sequence of int
        Region name -> the label values it unites (BraTS: whole tumour [1, 2, 4], tumour core [1, 4],
        enhancing tumour [4]).
    spacing : sequence of float, optional
        Voxel size in mm, array-axis order (default 1 mm).

    Returns
    -------
    dict
        ``{region: {"dice": float, "hd95": float}}`` (HD95 in mm, always finite).
    """
    prediction, reference = np.asarray(prediction), np.asarray(reference)
    out = {}
    for name, values in regions.items():
        p, r = label_mask(prediction, list(values)), label_mask(reference, list(values))
        p_empty, r_empty = not p.any(), not r.any()
        metrics = {"dice": dice(p, r), "hd95": hd95(p, r, spacing) if not (p_empty or r_empty) else 0.0}
        out[str(name)] = apply_brats_convention(metrics, r_empty, p_empty)
    return out
