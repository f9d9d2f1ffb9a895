"""Moved to :mod:`medseg.tiling.tta`; kept as an alias."""

from medseg.tiling.tta import mirror_axes_combinations, predict_mirrored  # noqa: F401
