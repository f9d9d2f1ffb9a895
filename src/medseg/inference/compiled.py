"""Networks compiled ahead of time with TorchInductor, for fast CPU inference of 3D networks.

Why a third backend: ONNX Runtime runs medseg's 2D networks 1.5-1.7x faster than eager PyTorch here, but
gives nothing for the 3D U-Net (benchmarks/inference3d.py), whose time is ~70 % oneDNN 3D convolutions
and ~30 % instance norm, activations, copies and concatenations. Inductor with frozen weights (constants
folded, convolution weights prepacked for oneDNN, norm + activation fused into generated C++ loops) runs
the planned 3D U-Net's 2×48×48×64 tile batch ~1.5x faster than eager PyTorch on this CPU, and a whole
160×192×160 volume 1.23x faster (26.5 → 21.5 s; MONAI 27.4 s; benchmarks/inference3d.py).

Compiling costs ~20-50 s here, so it happens once: the compiled network is packaged (AOTInductor ``.pt2``)
into the model folder beside the weights, like ``model.onnx``, and later predictions load it (~2 s here,
mostly importing Inductor's runtime). ``medseg train`` builds it after a run of ten minutes or more
(:func:`medseg.planning.training_rules.rule_prepare_backend`), else the first prediction does. A package holds
one input shape and the code generated for this machine's instruction set and thread count, so its file name
records all three (plus the torch version): a folder copied to another machine compiles its own package instead
of running code built for another CPU. The package's batch size is the sliding window's
(:data:`medseg.constants.TILE_BATCH`), not the first call's: an image of fewer tiles than that (a small brain crop:
2 tiles) is padded, rather than compiling a second package (~48 s). Any other tile shape gets its own package.
If compiling fails (no C++ compiler, an operator Inductor cannot export), prediction warns and falls
back to eager PyTorch: same results, slower.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import Callable

import torch

from medseg.constants import TILE_BATCH
from medseg.fileutil import atomic_path


def package_name(input_shape: tuple[int, ...], stem: str = "model") -> str:
    """File name of the package for ``(N, C, *S)`` inputs on this machine and torch version."""
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    isa = str(pick_vec_isa() or "scalar")
    version = torch.__version__.split("+")[0]
    return f"{stem}_{'x'.join(map(str, input_shape))}_torch{version}_{isa}_t{torch.get_num_threads()}.pt2"


def compile_package(model: torch.nn.Module, input_shape: tuple[int, ...], path: str | Path) -> Path:
    """Export ``model`` (eval mode) for inputs of exactly ``input_shape`` and write an AOTInductor package.

    Written atomically; the weights are frozen into the package (it does not follow later weight changes).
    """
    import torch._inductor
    import torch._inductor.config as inductor_config

    model = model.eval()
    example = torch.zeros(input_shape)
    path = Path(path)
    with torch.no_grad(), atomic_path(path) as tmp:
        program = torch.export.export(model, (example,))
        with inductor_config.patch(freezing=True):  # fold weights as constants: prepacked oneDNN convolutions
            torch._inductor.aoti_compile_and_package(program, package_path=str(tmp))
    return path


class CompiledNetwork:
    """A network callable that runs AOTInductor packages from ``folder`` (compiled on first use).

    Parameters
    ----------
    model : torch.nn.Module
        The eager network: what is compiled, and the fallback when compiling fails.
    folder : path-like, optional
        Where packages are kept (the model folder). ``None`` or a read-only folder: a temporary folder.
    stem : str
        Package file-name stem (``model_best`` for the best checkpoint, ``model_L2`` for a pruned UNet++).
    weights : path-like, optional
        The file ``model``'s weights came from: a package older than it is compiled again.
    batch_size : int
        Tiles per package call: smaller batches are padded, larger ones run in chunks.
    """

    def __init__(self, model: torch.nn.Module, folder: str | Path | None = None, stem: str = "model",
                 weights: str | Path | None = None, batch_size: int = TILE_BATCH):
        self.model = model.eval()
        self.folder = Path(folder) if folder is not None else None
        self.stem = stem
        self.weights = Path(weights) if weights is not None else None
        self.batch_size = max(1, int(batch_size))
        self._runners: dict[tuple[int, ...], Callable[[torch.Tensor], torch.Tensor]] = {}
        self._failed = False
        self._scratch: Path | None = None

    def _runner(self, tile_shape: tuple[int, ...]) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The loaded package for tiles of ``tile_shape`` (channels first); None when compiling failed."""
        if tile_shape in self._runners:
            return self._runners[tile_shape]
        batch_shape = (self.batch_size, *tile_shape)
        path = self._package_path(batch_shape)
        try:
            if not self._is_current(path):
                compile_package(self.model, batch_shape, path)
            runner = torch._inductor.aoti_load_package(str(path))
        except Exception as error:  # noqa: BLE001 - any compiler or loader failure means: run eagerly
            warnings.warn(f"compiling the network failed ({type(error).__name__}: {str(error)[:300]}); "
                          "predicting with eager PyTorch instead", RuntimeWarning, stacklevel=3)
            self._failed = True
            return None
        self._runners[tile_shape] = runner
        return runner

    def _package_path(self, batch_shape: tuple[int, ...]) -> Path:
        name = package_name(batch_shape, self.stem)
        if self.folder is not None and os.access(self.folder, os.W_OK):
            return self.folder / name
        if self._scratch is None:  # read-only folder: one temporary folder, removed with this object or at exit
            self._scratch = Path(tempfile.mkdtemp(prefix="medseg-compiled-"))
            weakref.finalize(self, shutil.rmtree, self._scratch, True)
        return self._scratch / name

    def _is_current(self, path: Path) -> bool:
        """The package exists and is not older than the weights it was compiled from."""
        if not path.is_file():
            return False
        return self.weights is None or not self.weights.is_file() or path.stat().st_mtime >= self.weights.stat().st_mtime

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.contiguous()
        runner = None if self._failed else self._runner(tuple(batch.shape[1:]))
        if runner is None:
            return self.model(batch)
        size = self.batch_size
        outputs = []
        for start in range(0, batch.shape[0], size):
            chunk = batch[start:start + size]
            n = chunk.shape[0]
            if n < size:  # every batch size would be another package: pad with empty tiles
                chunk = torch.cat([chunk, chunk.new_zeros((size - n, *chunk.shape[1:]))])
            outputs.append(runner(chunk)[:n])
        return torch.cat(outputs)
