"""Preprocessing: intensity normalisation, enhancement, denoising, bias correction and a recorded pipeline.

Plain numpy functions (scikit-image style, ``channel_axis`` for multi-channel arrays) plus
:func:`apply_pipeline`, which replays a JSON list of steps on an :class:`~medseg.Image` so that
prediction repeats exactly what training did. Resampling and cropping live in
``medseg.preprocessing.resample`` and ``medseg.preprocessing.crop``.
"""

from medseg.preprocessing.bias import n4_bias_correction
from medseg.preprocessing.color import green_channel, luminance
from medseg.preprocessing.denoise import denoise_bilateral, denoise_nl_means
from medseg.preprocessing.enhance import clahe, histogram_reference, match_histograms
from medseg.preprocessing.intensity import (
    clip,
    clip_percentiles,
    fit_intensity_statistics,
    gamma,
    rescale,
    window,
    zscore,
)
from medseg.preprocessing.pipeline import STEPS, Param, StepContext, apply_pipeline, register_step, validate_pipeline

__all__ = [
    "zscore",
    "clip_percentiles",
    "clip",
    "window",
    "rescale",
    "gamma",
    "fit_intensity_statistics",
    "clahe",
    "match_histograms",
    "histogram_reference",
    "green_channel",
    "luminance",
    "denoise_nl_means",
    "denoise_bilateral",
    "n4_bias_correction",
    "apply_pipeline",
    "validate_pipeline",
    "register_step",
    "Param",
    "StepContext",
    "STEPS",
]
