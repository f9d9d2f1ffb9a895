"""Moved to :mod:`medseg.tiling.sliding_window` (shared with training's validation); kept as an alias."""

from medseg.tiling.sliding_window import (FINALISE_BYTES, SlidingWindowResult, gaussian_importance,  # noqa: F401
                                          sliding_window_inference, tile_starts)
from medseg.tiling.tta import mirror_axes_combinations, predict_mirrored  # noqa: F401
