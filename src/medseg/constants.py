"""Numbers that several stages must agree on, each defined once.

A value here is shared knowledge (two modules that disagree on it would give inconsistent results);
a value used by one function only stays beside that function.
"""

from __future__ import annotations

#: Spacing ratio above which an axis counts as thick-slice (nnU-Net's anisotropy threshold): planning,
#: augmentation (in-plane only) and ``predict --fast`` (keep that axis) all use it.
ANISOTROPY_RATIO = 3.0

#: In-plane size / slice count above which a volume is a stack of slices whatever its recorded spacing
#: says: planning (2D configuration) and the structure measurement (erosion within slices) use it.
SLICE_SHAPE_RATIO = 4.0

#: Probability at which a sigmoid region output counts as inside the region (training validation,
#: prediction, evaluation of probabilities).
REGION_THRESHOLD = 0.5

#: Relative tolerance under which two spacings are the same grid (no resampling needed).
SPACING_RTOL = 1e-3

#: Inference backends (:meth:`medseg.Predictor.from_folder`, ``medseg predict --backend``) and the default
#: of both: ``auto`` runs the backend rule (:func:`medseg.planning.training_rules.rule_backend`), the fastest
#: path measured on CPU. ``torch`` (eager PyTorch) is the reference.
BACKENDS = ("torch", "onnx", "compile", "auto")
DEFAULT_BACKEND = "auto"

#: Tiles per network call of the sliding window (``medseg predict --batch-size``); a compiled network's
#: package is built for exactly this many tiles (fewer are padded), so one package serves every image.
TILE_BATCH = 4
