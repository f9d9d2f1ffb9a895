"""Training a promptable network (LiteMedSAM) from box prompts sampled from the labels.

MedSAM's fine-tuning protocol (Ma et al., Nat. Commun. 2024) on the ordinary trainer: a sample is one 2D
slice of a training case (a whole 2D image, or a slice of a volume across the run's slice axis), framed
exactly as ``medseg prompt`` frames it (:mod:`medseg.preprocessing.prompt_frame`), with one box per
structure present on it — the bounding box of that structure in the frame, each side pushed out by
0..5 pixels (MedSAM's ``bbox_shift``). The image is encoded once per slice; every box is one decoder
pass; the loss is :class:`medseg.losses.MaskPromptLoss` (Dice + BCE on the mask logits, plus the IoU
head's squared error). A structure is a label value, or a region of the dataset's ``regions`` (BraTS
whole tumour). Validation prompts a fixed, seeded subset of the validation slices with fixed jittered
boxes and scores Dice per structure in the frame.

The trainer sees three callables (:func:`prompt_parts`): the batch maker (a pure function of ``(seed,
iteration)`` like :func:`medseg.training.data.make_batch`), the step, and the validator; it never names
the network: what it needs is declared in the registry entry (``promptable``, ``input_size``,
``encoder``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from medseg.errors import MedsegError
from medseg.io.formats import RASTER_EXTENSIONS
from medseg.losses import IGNORE_INDEX, MaskPromptLoss
from medseg.preprocessing.prompt_frame import FRAME, MEDSAM_JITTER, frame_scale, intensity_window, label_frame, \
    slice_frame
from medseg.training.data import PreparedCase, batch_generators

MAX_ATTEMPTS = 16  # slices drawn before giving up on one whose structures all vanish in the frame


@dataclass(frozen=True)
class PromptSlice:
    """One slice of a prepared case and the structures (indices into the structure list) on it."""

    case: int
    z: int | None
    structures: tuple[int, ...]


def prompt_structures(label_values: Sequence[int], labels: dict[str, int],
                      regions: dict[str, list[int]] | None) -> dict[str, list[int]]:
    """Structure name → class indices: each region of a region task, else each foreground label.

    Examples
    --------
    >>> prompt_structures([0, 1, 2], {"background": 0, "RV": 1, "LV": 2}, None)
    {'RV': [1], 'LV': [2]}
    >>> prompt_structures([0, 1, 2, 4], {}, {"whole tumour": [1, 2, 4]})
    {'whole tumour': [1, 2, 3]}
    """
    lookup = {int(v): i for i, v in enumerate(sorted(int(v) for v in label_values))}
    if regions:
        return {name: [lookup[v] for v in members if v in lookup] for name, members in regions.items()}
    names = {int(v): k for k, v in labels.items()}
    return {names.get(v, str(v)): [i] for v, i in lookup.items() if v != 0}


class PromptData:
    """Prepared cases as framed slices: the MedSAM window per case and the slices holding a structure.

    Parameters
    ----------
    cases : sequence of PreparedCase
        Preprocessed without intensity steps (the promptable network frames its own input).
    structures : dict
        Name → class indices (:func:`prompt_structures`).
    slice_axis : int or None
        The slice axis of 3D cases (None: 2D cases).
    eight_bit : bool
        The images are 8-bit (raster files): the window is 0-255, as ``medseg prompt`` uses for them.
    """

    def __init__(self, cases: Sequence[PreparedCase], structures: dict[str, list[int]], slice_axis: int | None,
                 eight_bit: bool = False):
        self.cases = list(cases)
        self.names = list(structures)
        self.indices = [np.asarray(v, dtype=np.int16) for v in structures.values()]
        self.slice_axis = slice_axis
        self.windows = [intensity_window(np.asarray(c.image), eight_bit) for c in self.cases]
        self.slices: list[PromptSlice] = []
        for i, case in enumerate(self.cases):
            label = np.asarray(case.label[0])
            planes = [(None, label)] if slice_axis is None else [
                (z, np.take(label, z, axis=slice_axis)) for z in range(label.shape[slice_axis])]
            for z, plane in planes:
                present = tuple(k for k, idx in enumerate(self.indices) if np.isin(plane, idx).any())
                if present:
                    self.slices.append(PromptSlice(i, z, present))

    def frame(self, s: PromptSlice) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """``(frame (3, 256, 256), label frame (256, 256) class indices, (height, width) inside the frame)``."""
        case = self.cases[s.case]
        image, label = case.image, case.label[0]
        if s.z is not None:  # the slice first: never a copy of the whole (possibly memory-mapped) volume
            image = np.take(image, s.z, axis=1 + self.slice_axis)
            label = np.take(label, s.z, axis=self.slice_axis)
        image, label = np.asarray(image, dtype=np.float32), np.asarray(label)
        frame, _ = slice_frame(image, *self.windows[s.case])
        _, nh, nw = frame_scale(label.shape)
        return frame[0], label_frame(label), (nh, nw)

    def structure_roi(self, label: torch.Tensor, k: int) -> torch.Tensor:
        return torch.isin(label, torch.as_tensor(self.indices[k], dtype=label.dtype))


def jittered_box(roi: torch.Tensor, extent: tuple[int, int], jitter: int, rng: np.random.Generator) -> list[float]:
    """``[x0, y0, x1, y1]`` of a frame ROI, each side pushed out by 0..jitter pixels inside ``extent``."""
    ys, xs = torch.nonzero(roi, as_tuple=True)
    h, w = extent
    x0 = max(0, int(xs.min()) - int(rng.integers(0, jitter + 1)))
    y0 = max(0, int(ys.min()) - int(rng.integers(0, jitter + 1)))
    x1 = min(w - 1, int(xs.max()) + int(rng.integers(0, jitter + 1)))
    y1 = min(h - 1, int(ys.max()) + int(rng.integers(0, jitter + 1)))
    return [float(x0), float(y0), float(x1), float(y1)]


def make_prompt_batch(data: PromptData, iteration: int, *, seed: int, batch_size: int,
                      jitter: int = MEDSAM_JITTER) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Batch ``iteration``: ``frames (B, 3, 256, 256)`` and ``(boxes (N, 4), owner (N,), targets (N, 1, 256,
    256), valid (N, 1, 256, 256))`` — one box per structure on each slice, ``owner`` its slice's row.

    Examples
    --------
    >>> from medseg.training.sampling import build_sampling_index
    >>> lab = np.zeros((1, 40, 40), np.int16); lab[0, 10:20, 5:30] = 1
    >>> case = PreparedCase("c", np.random.default_rng(0).random((1, 40, 40), dtype=np.float32), lab, None,
    ...                     (1.0, 1.0), build_sampling_index(lab, None, seed=0))
    >>> data = PromptData([case], {"A": [1]}, None)
    >>> frames, (boxes, owner, targets, valid) = make_prompt_batch(data, 0, seed=0, batch_size=2)
    >>> tuple(frames.shape), tuple(boxes.shape), tuple(targets.shape)
    ((2, 3, 256, 256), (2, 4), (2, 1, 256, 256))
    """
    if not data.slices:
        raise MedsegError("no training slice shows any labelled structure to draw a box around")
    rng, _ = batch_generators(seed, iteration)
    frames, boxes, owner, targets, valid = [], [], [], [], []
    for row in range(batch_size):
        for _ in range(MAX_ATTEMPTS):
            s = data.slices[int(rng.integers(len(data.slices)))]
            frame, label, extent = data.frame(s)
            rois = [data.structure_roi(label, k) for k in s.structures]
            rois = [r for r in rois if r.any()]  # a tiny structure may vanish when the slice is shrunk
            if rois:
                break
        else:
            raise MedsegError(f"{MAX_ATTEMPTS} slices in a row lost their structures in the {FRAME}² frame")
        frames.append(frame)
        for roi in rois:
            boxes.append(jittered_box(roi, extent, jitter, rng))
            owner.append(row)
            targets.append(roi[None].float())
            valid.append((label != IGNORE_INDEX)[None].float())
    return torch.stack(frames), (torch.tensor(boxes), torch.tensor(owner), torch.stack(targets), torch.stack(valid))


def encoder_frozen(model: torch.nn.Module, encoder: str) -> bool:
    """No parameter of ``model.<encoder>`` trains (then it runs without building a graph)."""
    return not any(p.requires_grad for p in getattr(model, encoder).parameters())


def prompt_step(model: torch.nn.Module, loss_fn: Callable, optimizer: torch.optim.Optimizer,
                batch: tuple[torch.Tensor, tuple[torch.Tensor, ...]], grad_clip: float | None, encoder: str,
                frozen_batchnorm_eval: bool = False) -> float:
    """One optimisation step on a prompt batch (:func:`make_prompt_batch`); returns the loss value."""
    from medseg.nets.finetune import set_frozen_batchnorm_eval

    frames, (boxes, owner, targets, valid) = batch
    model.train()
    if frozen_batchnorm_eval:
        set_frozen_batchnorm_eval(model)
    optimizer.zero_grad(set_to_none=True)
    if encoder_frozen(model, encoder):
        with torch.no_grad():
            embedding = model.encode_image(frames)
    else:
        embedding = model.encode_image(frames)
    logits, iou = model.decode(embedding[owner], boxes=boxes)
    loss = loss_fn(logits, iou, targets, valid)
    if not torch.isfinite(loss):
        raise MedsegError(f"the loss became {loss.item()}; lower the learning rate (--lr)")
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
    optimizer.step()
    return float(loss.detach())


class PromptValidator:
    """Prompted validation: fixed, seeded slices and jittered reference boxes; Dice per structure.

    Call with the network; returns ``{"val_dice": mean over structures, "val_dice_<name>": ...}``.
    """

    def __init__(self, data: PromptData, max_slices: int, seed: int, jitter: int = MEDSAM_JITTER):
        rng = np.random.default_rng([int(seed), 7919])
        count = min(max_slices, len(data.slices))
        chosen = sorted(rng.choice(len(data.slices), size=count, replace=False).tolist()) if count else []
        self.data = data
        self.items = []
        for i in chosen:
            s = data.slices[i]
            _, label, extent = data.frame(s)
            rois = [(k, data.structure_roi(label, k)) for k in s.structures]
            self.items.append((s, [(k, roi, jittered_box(roi, extent, jitter, rng)) for k, roi in rois if roi.any()]))

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        scores: dict[int, list[float]] = {}
        model.eval()
        with torch.inference_mode():
            for s, prompts in self.items:
                frame, label, _ = self.data.frame(s)
                valid = label != IGNORE_INDEX
                embedding = model.encode_image(frame[None])
                for k, roi, box in prompts:
                    logits, _ = model.decode(embedding, boxes=torch.tensor([box]))
                    pred = (logits[0, 0] > 0) & valid
                    truth = roi & valid
                    denom = int(pred.sum() + truth.sum())
                    scores.setdefault(k, []).append(2.0 * int((pred & truth).sum()) / denom if denom else 1.0)
        per = {f"val_dice_{self.data.names[k]}": float(np.mean(v)) for k, v in sorted(scores.items())}
        mean = float(np.mean(list(per.values()))) if per else float("nan")
        return {"val_dice": mean, **per}


def eight_bit_images(cases: Sequence[PreparedCase], file_ending: str | None) -> bool:
    """Raster files with values in 0..255 are 8-bit images (``medseg prompt`` windows them 0-255)."""
    if (file_ending or "").lower() not in RASTER_EXTENSIONS:
        return False
    return all(float(np.min(c.image)) >= 0 and float(np.max(c.image)) <= 255 for c in cases)


@dataclass
class PromptParts:
    """What the trainer runs for a promptable network."""

    make: Callable[[int], Any]
    step: Callable[[Any], float]
    validator: PromptValidator | None
    slices: int


def prompt_parts(model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: Any, encoder: str,
                 train_cases: Sequence[PreparedCase], val_cases: Sequence[PreparedCase],
                 structures: dict[str, list[int]], slice_axis: int | None, file_ending: str | None,
                 validation_slices: int, finetuning: bool) -> PromptParts:
    """The batch maker, step and validator of a prompt-training run (see the module docstring)."""
    eight_bit = eight_bit_images(list(train_cases) + list(val_cases), file_ending)
    data = PromptData(train_cases, structures, slice_axis, eight_bit)
    if not data.slices:
        raise MedsegError("no training slice shows a labelled structure: nothing to draw a box around")
    loss_fn = MaskPromptLoss()
    validator = None
    if val_cases:
        validator = PromptValidator(PromptData(val_cases, structures, slice_axis, eight_bit), validation_slices,
                                    config.seed)
    return PromptParts(
        make=lambda i: make_prompt_batch(data, i, seed=config.seed, batch_size=config.batch_size),
        step=lambda batch: prompt_step(model, loss_fn, optimizer, batch, config.grad_clip, encoder, finetuning),
        validator=validator, slices=len(data.slices))


__all__ = ["PromptData", "PromptParts", "PromptSlice", "PromptValidator", "eight_bit_images", "jittered_box",
           "make_prompt_batch", "prompt_parts", "prompt_step", "prompt_structures"]
