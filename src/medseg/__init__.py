"""medseg: medical image segmentation — classical methods and the surveyed deep networks behind one
data model, one trainer, one predictor and one evaluator. CPU first.

Glossary (one word per idea across the API)
-------------------------------------------
image
    :class:`Image`: array ``(C, [Z,] Y, X)`` with ``spacing``, ``origin``, ``direction`` and channel names.
spacing
    Voxel size in millimetres, in array-axis order (``spacing[i]`` belongs to ``array.shape[1 + i]``).
roi
    Region of interest: a boolean or 0/1 map on the image's grid (never ``mask`` in one place and ``roi``
    in another; ``check_roi`` validates one).
label_map
    An integer array or one-channel Image of label values; whole-number floats are accepted, fractions
    are an error naming the file (:mod:`medseg.io.labels`, the one reading policy).
labels
    Name → value (dataset.json); ``regions``: name → values (region-based tasks); ``num_classes``: outputs
    of a network.
case
    One subject's files: ``<case>_0000<ending>`` per channel, ``<case><ending>`` for its label map, roi,
    prediction (:mod:`medseg.io.cases`).
seed
    The random seed (never ``random_state``); in ``medseg segment`` also a seed point (``--seed z,y,x``).
lower / upper
    Bounds of an interval (thresholds, intensity windows).
tile / patch
    A window of the sliding-window predictor / a training sample.
probabilities
    ``(C, *spatial)`` float32, channel c = label value c, in the format :mod:`medseg.io.probabilities` owns.

File contracts have one owner each: extensions and lossless label outputs (:mod:`medseg.io.formats`),
case names (:mod:`medseg.io.cases`), JSON files (:func:`medseg.io.jsonfile.read_json`), probability files
(:mod:`medseg.io.probabilities`), header size checks (:mod:`medseg.io.limits`), atomic and shareable
writes (:mod:`medseg.fileutil`), provenance (:func:`medseg.provenance.provenance`).

Exit codes of the ``medseg`` command: 0 done, 1 bad input, 2 usage, 130 interrupted (SIGINT/SIGTERM).
"""

from medseg.errors import MedsegError
from medseg.image import Image

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy so that `import medseg` stays cheap (no torch import) for the CLI and I/O.
    if name in ("read_image", "write_image"):
        from medseg import io

        return getattr(io, name)
    if name == "Predictor":
        from medseg.inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'medseg' has no attribute {name!r}")


__all__ = ["Image", "MedsegError", "read_image", "write_image", "Predictor", "__version__"]
