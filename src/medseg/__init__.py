"""medseg: medical image segmentation — classical methods and the surveyed deep networks behind one
data model, one trainer, one predictor and one evaluator. CPU first."""

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
