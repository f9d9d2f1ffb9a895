"""Synthetic fingerprints for rule tests (no files needed)."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.planning.fingerprint import SPACING_PERCENTILES
from medseg.planning.machine import Machine


def _synthetic_fingerprint(shapes, spacings, channel_names=("MR",), labels=None, crop_fraction=1.0, intensity=None,
                           boundary_share=0.2):
    """A fingerprint dict as compute_fingerprint returns it, from per-case shapes and spacings (compact
    structures unless ``boundary_share`` says otherwise)."""
    labels = labels or {"background": 0, "organ": 1}
    shapes = np.asarray(shapes, float)
    spacings = np.asarray(spacings, float)
    stats = intensity or {"mean": 50.0, "std": 20.0, "median": 48.0, "percentile_00_5": -100.0,
                          "percentile_99_5": 300.0, "min": -1000.0, "max": 2000.0}
    cases = [{"name": f"case{i}", "shape": [int(v) for v in sh], "spacing": [float(v) for v in sp]}
             for i, (sh, sp) in enumerate(zip(shapes, spacings))]
    median = np.median(spacings, axis=0)
    return {
        "dataset": "synthetic", "channel_names": list(channel_names), "labels": labels, "regions": None,
        "ignore_label": None, "num_cases": len(cases), "cases": cases, "warnings": [],
        "summary": {
            "spatial_dims": shapes.shape[1],
            "median_shape": [int(v) for v in np.median(shapes, axis=0)],
            "median_spacing": [float(v) for v in median],
            "spacing_percentiles": {str(p): [float(v) for v in np.percentile(spacings, p, axis=0)]
                                    for p in SPACING_PERCENTILES},
            "anisotropy": float(median.max() / median.min()),
            "median_nonzero_crop_fraction": crop_fraction,
            "intensity": [dict(stats) for _ in channel_names],
            "boundary_share": boundary_share,
        },
    }


@pytest.fixture
def cpu():
    """A fixed 2-core CPU with plenty of RAM (deterministic, independent of the test machine)."""
    return Machine("cpu", 2, 16 * 2**30, flops=24e9)


@pytest.fixture
def synthetic_fingerprint():
    """Factory: ``synthetic_fingerprint(shapes, spacings, channel_names=..., crop_fraction=...)``."""
    return _synthetic_fingerprint
