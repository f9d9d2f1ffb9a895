"""Checks every command makes before it writes anything: option ranges, outputs that would touch
inputs, output folders that cannot be written, images that hold NaN/Inf. The commands call these at
their top, so a refused run leaves nothing behind."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from medseg.errors import MedsegError
from medseg.fileutil import remove_stale_temporaries


def check_number(value, option: str, *, lower: float | None = None, upper: float | None = None,
                 lower_open: bool = False, upper_open: bool = False, integer: bool = False) -> None:
    """Refuse ``value`` of ``option`` outside [lower, upper] (open ends with ``*_open``); None passes.

    Examples
    --------
    >>> check_number(0.5, "--overlap", lower=0, upper=1, upper_open=True)
    >>> check_number(1.5, "--overlap", lower=0, upper=1, upper_open=True)
    Traceback (most recent call last):
    ...
    medseg.errors.MedsegError: --overlap must be in [0, 1); got 1.5
    """
    if value is None:
        return
    bad = not math.isfinite(value) or (integer and int(value) != value)
    if lower is not None:
        bad |= value <= lower if lower_open else value < lower
    if upper is not None:
        bad |= value >= upper if upper_open else value > upper
    if bad:
        low = "(" if lower_open else "["
        high = ")" if upper_open else "]"
        span = f"{low}{_g(lower, '-inf')}, {_g(upper, 'inf')}{high}"
        raise MedsegError(f"{option} must be {'an integer ' if integer else ''}in {span}; got {value:g}")


def _g(value, default: str) -> str:
    return default if value is None else f"{value:g}"


def check_predict_options(*, overlap=None, batch_size=None, threads=None, fast=None) -> None:
    """``medseg predict``'s numeric options, before any model is loaded."""
    check_number(overlap, "--overlap", lower=0, upper=1, upper_open=True)
    check_number(batch_size, "--batch-size", lower=1, integer=True)
    check_number(threads, "--threads", lower=1, integer=True)
    check_number(fast, "--fast", lower=1)


def check_train_options(*, lr=None, batch_size=None, iterations=None, epochs=None, threads=None,
                        foreground_share=None, patch_size=None) -> None:
    """``medseg train``'s numeric options, before the model folder is created."""
    check_number(lr, "--lr", lower=0, lower_open=True)
    check_number(batch_size, "--batch-size", lower=1, integer=True)
    check_number(iterations, "--iterations", lower=1, integer=True)
    check_number(epochs, "--epochs", lower=1, integer=True)
    check_number(threads, "--threads", lower=1, integer=True)
    check_number(foreground_share, "--foreground-share", lower=0, upper=1)
    for size in patch_size or ():
        check_number(size, "--patch-size", lower=1, integer=True)


def check_writable(folder: str | Path) -> None:
    """Refuse a folder this process cannot create files in (probed with a real temporary file, since
    permission bits do not tell for root or for read-only mounts)."""
    folder = Path(folder)
    try:
        fd, name = tempfile.mkstemp(prefix=".medseg-probe-", dir=folder)
    except OSError as exc:
        raise MedsegError(f"cannot write in this folder: {exc.strerror}", folder) from None
    os.close(fd)
    os.unlink(name)


def prepare_output_folder(folder: str | Path, *subfolders: str | bool) -> Path:
    """Check that ``folder`` can be created and written, and remove what a killed earlier run left
    there (temporaries of dead processes). The folder itself is not created: the first completed
    output creates it, so a run refused on its first case leaves nothing behind."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise MedsegError("output exists and is not a folder", folder)
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise MedsegError(f"cannot create the output folder: {existing} is a file", folder)
    check_writable(existing)
    remove_stale_temporaries(folder)
    for sub in subfolders:
        if isinstance(sub, bool):
            sub = "probabilities" if sub else None
        if sub:
            remove_stale_temporaries(folder / sub)
    return folder


def require_finite(image, path):
    """``image`` unchanged, or an error naming ``path`` when it holds NaN or ±Inf voxels."""
    return image.check_finite(path)


def refuse_existing(path: str | Path, overwrite: bool) -> None:
    """An existing output is replaced only with ``--overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise MedsegError("output exists; pass --overwrite to replace it", path)
    if path.is_dir() and not path.is_symlink() and path.suffix:
        raise MedsegError("output is a folder; give a file name", path)


#: Bytes of training memory per patch voxel and network feature (float32 activations of the encoder and
#: decoder at full resolution, their gradients and the lower levels): a deliberately low estimate, so
#: only settings that cannot fit are refused.
TRAIN_BYTES_PER_VOXEL_FEATURE = 4 * 8


def check_train_inputs(dataset, out, *, plan=None, lr=None, batch_size=None, iterations=None, threads=None,
                       foreground_share=None, patch_size=None, features=None, resume=False) -> None:
    """Everything ``medseg train`` can check before it creates or changes the model folder: option
    ranges, the model folder is not the dataset (nor inside it), a patch that cannot fit in memory, and
    (``--resume``) a checkpoint that can be read."""
    from medseg.fileutil import check_outputs
    from medseg.resources import check_memory

    check_train_options(lr=lr, batch_size=batch_size or None if batch_size != 0 else None, iterations=iterations,
                        threads=threads, foreground_share=foreground_share, patch_size=patch_size)
    check_number(features, "--features", lower=1, integer=True)
    check_outputs([out], [dataset] + ([plan] if plan is not None else []), "--out")
    if resume:
        from medseg.io.weights import load_torch_file
        from medseg.model_folder import LAST_CHECKPOINT

        if (Path(out) / LAST_CHECKPOINT).is_file():
            load_torch_file(Path(out) / LAST_CHECKPOINT, "checkpoint")
    if patch_size:
        voxels = math.prod(int(s) for s in patch_size)
        needed = max(batch_size or 1, 1) * voxels * (features or 16) * TRAIN_BYTES_PER_VOXEL_FEATURE
        check_memory(needed, f"training on {'×'.join(map(str, patch_size))} patches",
                     "choose a smaller --patch-size or --batch-size (or leave them automatic)")
