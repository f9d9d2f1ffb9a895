"""Inference: sliding window (Gaussian weighting, streaming), mirroring TTA, ensembles, the Predictor."""

from medseg.inference.predictor import Predictor
from medseg.tiling.sliding_window import SlidingWindowResult, sliding_window_inference

__all__ = ["Predictor", "sliding_window_inference", "SlidingWindowResult"]
