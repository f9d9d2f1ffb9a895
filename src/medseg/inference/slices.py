"""Moved to :mod:`medseg.tiling.slices`; kept as an alias."""

from medseg.tiling.slices import slice_network, volume_patch_size  # noqa: F401
