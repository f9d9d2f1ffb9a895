"""Evaluation: overlap, surface-distance, probability and volume metrics; the folder evaluator.

Plain functions on numpy arrays (2D or 3D) with ``spacing`` in mm in array-axis order. Definitions and
the rules for empty masks are in the docstrings of :mod:`medseg.metrics.overlap`,
:mod:`medseg.metrics.surface` and :mod:`medseg.metrics.probability`.

Examples
--------
>>> import numpy as np
>>> from medseg.metrics import dice, hd95
>>> a = np.zeros((32, 32), bool); a[8:24, 8:24] = True
>>> b = np.roll(a, 2, axis=1)
>>> round(dice(a, b), 3), hd95(a, b, spacing=(1.0, 0.5))
(0.875, 1.0)
"""

from medseg.metrics.case import METRICS, PROBABILITY_METRICS, evaluate_case, label_mask
from medseg.metrics.overlap import (
    accuracy,
    confusion_counts,
    dice,
    f1,
    iou,
    jaccard,
    overlap_metrics,
    precision,
    recall,
    sensitivity,
    specificity,
    volume,
    volume_similarity,
)
from medseg.metrics.probability import average_precision, pr_auc, roc_auc
from medseg.metrics.surface import (
    assd,
    boundary,
    hausdorff_distance,
    hd95,
    normalized_surface_dice,
    surface_distances,
    surface_metrics,
)


def __getattr__(name: str):
    # The evaluator pulls in I/O and matplotlib; keep `import medseg.metrics` light for the trainer.
    if name in ("evaluate_folders", "Summary"):
        from medseg.metrics import evaluator

        return getattr(evaluator, name)
    raise AttributeError(f"module 'medseg.metrics' has no attribute {name!r}")


__all__ = [
    "METRICS", "PROBABILITY_METRICS", "evaluate_case", "label_mask",
    "accuracy", "confusion_counts", "dice", "f1", "iou", "jaccard", "overlap_metrics", "precision",
    "recall", "sensitivity", "specificity", "volume", "volume_similarity",
    "average_precision", "pr_auc", "roc_auc",
    "assd", "boundary", "hausdorff_distance", "hd95", "normalized_surface_dice", "surface_distances",
    "surface_metrics", "evaluate_folders", "Summary",
]
