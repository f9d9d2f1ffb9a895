"""Export a network to ONNX, for ONNX Runtime inference (1.5-1.7x faster than eager PyTorch on these
CPUs, see DESIGN.md section 6).

Uses the TorchScript-based exporter (``dynamo=False``): it handles the networks' pad-to-divisor logic
with dynamic batch and spatial axes. Training-only branches (deep supervision, the VAE) are not
exported: the model is exported in eval mode, where every network returns its logits only.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

from medseg.errors import MedsegError
from medseg.fileutil import atomic_path

if TYPE_CHECKING:  # onnxruntime is imported only when a session is made
    import onnxruntime


def export_onnx(
    model: torch.nn.Module,
    path: str | Path,
    example_shape: Sequence[int],
    opset: int = 17,
    dynamic_spatial: bool = True,
) -> Path:
    """Write ``model`` (in eval mode) as an ONNX file, atomically.

    Parameters
    ----------
    model : torch.nn.Module
        A medseg network (any registered one).
    path : path-like
        Output ``.onnx`` file; written to a temporary name and renamed when complete.
    example_shape : sequence of int
        ``(N, C, *S)`` of the example input used for tracing.
    opset : int
        ONNX opset version.
    dynamic_spatial : bool
        Mark the spatial axes dynamic (the batch axis always is). Networks with a fixed-size layer
        in their inference path would set this to False.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> from medseg.nets import create_network
    >>> import tempfile, pathlib
    >>> net = create_network("unet", 1, 2, 2, features=4, depth=2)
    >>> out = export_onnx(net, pathlib.Path(tempfile.mkdtemp()) / "unet.onnx", (1, 1, 32, 32))
    >>> out.suffix
    '.onnx'
    """
    path = Path(path)
    example_shape = tuple(int(s) for s in example_shape)
    if len(example_shape) < 3:
        raise MedsegError(f"example_shape must be (N, C, *spatial), got {example_shape}")
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        example = torch.zeros(example_shape, dtype=param.dtype if param is not None else torch.float32)
        names = ["batch"] + [None] + [f"spatial{i}" for i in range(len(example_shape) - 2)]
        axes = {i: n for i, n in enumerate(names) if n is not None and (i == 0 or dynamic_spatial)}
        with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
            # Tracer warnings about Python ints from shapes are expected: the pad/crop sizes are recorded
            # as graph ops (checked against ONNX Runtime at other sizes in tests/nets).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # Instance norm always normalises with the input's statistics; the exporter's note says so.
            warnings.filterwarnings("ignore", message="ONNX export mode is set to TrainingMode.EVAL")
            # Crops whose size depends on the input cannot be constant-folded; that is intended.
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
            torch.onnx.export(
                model, (example,), str(tmp), opset_version=opset, dynamo=False,
                input_names=["image"], output_names=["logits"],
                dynamic_axes={"image": axes, "logits": axes},
            )
    finally:
        model.train(was_training)
    return path


def onnx_session(path: str | Path, threads: int | None = None) -> onnxruntime.InferenceSession:
    """An ``onnxruntime.InferenceSession`` on CPU for ``path``.

    Parameters
    ----------
    path : path-like
        ``.onnx`` file.
    threads : int, optional
        Intra-op threads (default: onnxruntime's choice).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


__all__ = ["export_onnx", "onnx_session"]
