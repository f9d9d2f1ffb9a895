"""Classical segmentation: thresholds, edges and contours, region growing, clustering, graph-based
methods and vesselness — plain ``segment_<name>(image, ..., spacing=None) -> labels`` functions.

Shared conventions (see :mod:`medseg.classical._common`): one-channel 2D/3D arrays (or one-channel
Images) in, integer label maps (Images on the same grid) out; lengths in mm when ``spacing`` is given; ``roi`` restricts the
statistics and the output; ``seeds`` are voxel indices (array order) or physical points with
``physical=True``; ``polarity`` is "bright" or "dark"; multi-class methods label classes 0..K-1 by
increasing intensity.

:data:`METHODS` maps names to functions with metadata (``dims``, ``seeds``, ``output``, ``family``),
used by ``medseg segment``.

Examples
--------
>>> import numpy as np
>>> from medseg.classical import METHODS, segment_otsu
>>> x = np.zeros((8, 8)); x[2:6, 2:6] = 1.0
>>> int(segment_otsu(x).sum()), METHODS.entry("otsu").metadata["dims"]
(16, (2, 3))
"""

from medseg.classical.registry import METHODS
from medseg.classical.threshold import (
    otsu_value,
    segment_hysteresis,
    segment_local,
    segment_multi_otsu,
    segment_otsu,
    segment_threshold,
)
from medseg.classical.edges import (
    gradient_magnitude,
    segment_canny,
    segment_chan_vese,
    segment_geodesic_active_contour,
    segment_morphological_chan_vese,
    segment_watershed,
)
from medseg.classical.region_growing import segment_confidence_connected, segment_connected_threshold
from medseg.classical.clustering import fuzzy_cmeans, segment_fuzzy_cmeans, segment_gaussian_mixture, segment_kmeans
from medseg.classical.graph import segment_graph_cut, segment_random_walker
from medseg.classical.vesselness import segment_frangi, segment_sato, vesselness

__all__ = [
    "METHODS",
    "segment_threshold", "segment_otsu", "segment_multi_otsu", "segment_local", "segment_hysteresis",
    "segment_canny", "segment_watershed", "segment_chan_vese", "segment_morphological_chan_vese",
    "segment_geodesic_active_contour",
    "segment_connected_threshold", "segment_confidence_connected",
    "segment_kmeans", "segment_fuzzy_cmeans", "segment_gaussian_mixture",
    "segment_random_walker", "segment_graph_cut",
    "segment_frangi", "segment_sato", "vesselness",
    "fuzzy_cmeans", "otsu_value", "gradient_magnitude",
]
