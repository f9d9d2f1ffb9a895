"""Promptable segmentation with LiteMedSAM: boxes and clicks on 2D images and on slices of volumes.

The MedSAM protocol (Ma et al., Nat. Commun. 2024) on each 2D slice: intensities clipped to the image's
0.5-99.5 percentiles (8-bit images as they are), the longest side resized to 256, min-max scaled to [0, 1],
zero-padded to 256 × 256, encoded once; every box (and click) on that slice is then one decoder pass; the
mask logits are cropped, resized back to the slice and thresholded at 0. A 3D box is segmented slice by
slice from its middle slice outwards, each slice prompted with the bounding box of the previous slice's
mask (the user's box where that mask is empty) — LiteMedSAM's own 3D procedure. The output is a label map
on the input's grid and, per box, the decoder's predicted IoU as a confidence.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medseg.errors import MedsegError
from medseg.image import Image
from medseg.inference.boxes import BoxPrompt, check_box
from medseg.nets.litemedsam import IMAGE_SIZE, LiteMedSAM, load_litemedsam
from medseg.preprocessing.prompt_frame import PERCENTILES, intensity_window, slice_frame

MAX_VOXELS = 2 ** 30  # the per-voxel best-logit buffer is float32: refuse images above 4 GiB of it

Point = tuple[tuple[int, ...], int]


@dataclass
class PromptResult:
    """A prompted segmentation.

    Attributes
    ----------
    label_map : Image
        One channel, on the input image's grid; each box's ``label`` where its mask won.
    structures : list of dict
        Per box: ``label``, ``predicted_iou`` (decoder's estimate, mean over the box's slices),
        ``mean_probability`` (mean sigmoid of the mask logits where its mask is on: low when the network
        hesitates), ``voxels`` (voxels it won), ``slices`` (slices segmented).
    """

    label_map: Image
    structures: list[dict] = field(default_factory=list)

    @property
    def confidence(self) -> float:
        """The case's confidence: the mean predicted IoU over its boxes (NaN without any)."""
        values = [s["predicted_iou"] for s in self.structures]
        return float(np.mean(values)) if values else float("nan")


class Prompter:
    """LiteMedSAM behind a box / click interface, with the image encoder run once per slice.

    Parameters
    ----------
    model : LiteMedSAM, optional
        A loaded network; default: the released weights (:func:`load_litemedsam`).
    weights : path, optional
        Weight file when ``model`` is None (checked against the released SHA-256 unless
        ``check_sha256=False``).
    cache_slices : int
        Slice embeddings kept (4 MiB each) so that several boxes on one slice share one encoder pass.
    onnx_dir : path, optional
        Run the image encoder and the box decoder with ONNX Runtime (1.5-1.9x faster than eager PyTorch
        here, BENCHMARKS.md), from files in this folder named after the weights' fingerprint; exported
        there on first use. Prompts with clicks use the eager decoder.

    Examples
    --------
    >>> from medseg.inference.boxes import BoxPrompt
    >>> prompter = Prompter(LiteMedSAM().eval())   # untrained network, for the shapes only
    >>> image = Image(np.random.default_rng(0).random((1, 40, 60)))
    >>> result = prompter.segment(image, [BoxPrompt((5, 5), (30, 40), label=2)])
    >>> result.label_map.array.shape
    (1, 40, 60)
    """

    def __init__(self, model: LiteMedSAM | None = None, weights: str | Path | None = None,
                 check_sha256: bool = True, cache_slices: int = 32, onnx_dir: str | Path | None = None):
        self.model = model if model is not None else load_litemedsam(weights, check_sha256=check_sha256)
        self.model.eval()
        self.cache_slices = cache_slices
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._encoder = self._decoder = None
        if onnx_dir is not None:
            self._encoder, self._decoder = onnx_sessions(self.model, onnx_dir)

    # --- one slice -----------------------------------------------------------------------------------
    def encode(self, frame: torch.Tensor) -> torch.Tensor:
        """The image embedding ``(1, 256, 64, 64)`` of a frame from :func:`slice_frame`."""
        if self._encoder is not None:
            return torch.from_numpy(self._encoder.run(None, {"image": np.ascontiguousarray(frame.numpy())})[0])
        with torch.inference_mode():
            return self.model.encode_image(frame)

    def decode(self, embedding: torch.Tensor, boxes: torch.Tensor | None = None,
               points: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits ``(1, 1, 256, 256)`` and predicted IoU for prompts in the 256-pixel frame."""
        if self._decoder is not None and boxes is not None and points is None:
            feeds = {"embedding": np.ascontiguousarray(embedding.numpy()), "boxes": boxes.numpy()}
            logits, iou = self._decoder.run(None, feeds)
            return torch.from_numpy(logits), torch.from_numpy(iou)
        with torch.inference_mode():
            return self.model.decode(embedding, boxes=boxes, points=points)

    def _embedding(self, key: int, frame: torch.Tensor) -> torch.Tensor:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        emb = self.encode(frame)
        self._cache[key] = emb
        if len(self._cache) > self.cache_slices:
            self._cache.popitem(last=False)
        return emb

    def segment_slice(self, embedding: torch.Tensor, shape: tuple[int, int], scale: float,
                      box: tuple[Sequence[int], Sequence[int]] | None,
                      points: Sequence[Point] = ()) -> tuple[np.ndarray, float]:
        """Mask logits ``(Y, X)`` on the slice grid and the predicted IoU for one box and/or clicks.

        ``box`` is ``((y0, x0), (y1, x1))`` inclusive; points are ``((y, x), label)``.
        """
        boxes = None
        if box is not None:
            (y0, x0), (y1, x1) = box
            boxes = torch.tensor([[x0, y0, x1, y1]], dtype=torch.float32) * scale
        prompt_points = None
        if points:
            coords = torch.tensor([[[p[1], p[0]] for p, _ in points]], dtype=torch.float32) * scale
            labels = torch.tensor([[lab for _, lab in points]], dtype=torch.int64)
            prompt_points = (coords, labels)
        logits, iou = self.decode(embedding, boxes, prompt_points)
        h, w = shape
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        logits = F.interpolate(logits[..., :nh, :nw], size=(h, w), mode="bilinear", align_corners=False)
        return logits[0, 0].numpy(), float(iou[0, 0])

    # --- a whole image --------------------------------------------------------------------------------
    def segment(self, image: Image, boxes: Sequence[BoxPrompt] = (), points: Sequence[Point] = (),
                channel: int | None = None, name: str = "image") -> PromptResult:
        """Segment the structures that ``boxes`` (and, in 2D, clicks alone) point at.

        Parameters
        ----------
        image : Image
            2D ``(C, Y, X)`` or 3D ``(C, Z, Y, X)``; slices are taken along the first spatial axis.
        boxes : sequence of BoxPrompt
            In the image's array-index coordinates (2 values per corner for 2D, 3 for 3D).
        points : sequence of ((y, x), label), optional
            Clicks without a box (2D only): label 1 inside, 0 outside; segmented as label 1.
        channel : int, optional
            The channel to prompt on when the image has neither 1 nor 3 channels (e.g. FLAIR of BraTS).
        name : str
            Used in error messages (the file name).

        Returns
        -------
        PromptResult
        """
        array = _prompt_channels(image, channel, name)
        _check_prompts(image.spatial_shape, boxes, points, name)
        volume = array if image.spatial_dims == 3 else array[:, None]  # (C, Z, Y, X)
        lower, upper = intensity_window(volume)
        self._cache.clear()
        # each voxel goes to the prompt with the highest positive logit there, except that a box nested in
        # another's (LV inside the myocardium's box) wins inside it: larger boxes are painted first
        best = np.full(volume.shape[1:], -np.inf, dtype=np.float32)
        owner = np.zeros(volume.shape[1:], dtype=np.int32)  # 1 + index of the winning prompt
        prompts = list(boxes) if boxes else [None]
        structures: list[dict] = [{} for _ in prompts]
        order = paint_order(prompts)
        for index in order:
            box = prompts[index]
            nested = np.zeros(len(prompts) + 1, dtype=bool)
            nested[1:] = [box is not None and other is not None and other is not box and box_nested(box, other)
                          for other in prompts]
            ious, probability_sum, claimed = [], 0.0, 0
            for z, logits, iou in self._propagate(volume, lower, upper, box, points):
                positive = logits > 0
                win = positive & ((logits > best[z]) | nested[owner[z]])
                best[z][win] = logits[win]
                owner[z][win] = index + 1
                ious.append(iou)
                probability_sum += float(_sigmoid(logits[positive]).sum())
                claimed += int(positive.sum())
            label = box.label if box is not None else 1
            structures[index] = {"label": int(label), "predicted_iou": float(np.mean(ious)),
                                 "mean_probability": probability_sum / claimed if claimed else 0.0,
                                 "slices": len(ious)}
        values = np.array([0] + [s["label"] for s in structures])
        labels = values.astype(np.uint16 if values.max() > 255 else np.uint8)[owner]
        counts = np.bincount(owner.ravel(), minlength=len(values))
        for index, s in enumerate(structures, start=1):
            s["voxels"] = int(counts[index])
        out = labels if image.spatial_dims == 3 else labels[0]
        return PromptResult(image.with_array(out[None], channel_names=("label",)), structures)

    def _propagate(self, volume: np.ndarray, lower: float, upper: float, box: BoxPrompt | None,
                   points: Sequence[Point]):
        """Yield ``(z, logits, iou)`` over the slices of one box, from its middle slice outwards."""
        _, depth, h, w = volume.shape
        if box is None:  # 2D clicks only
            z_range, plane, box_points = [0], None, list(points)
        else:
            plane = (box.lower[-2:], box.upper[-2:])
            z0, z1 = (box.lower[0], box.upper[0]) if box.ndim == 3 else (0, 0)
            mid = (z0 + z1) // 2
            z_range = list(range(mid, z1 + 1)) + list(range(mid - 1, z0 - 1, -1))
            box_points = list(box.points)
        previous: dict[int, np.ndarray] = {}
        for z in z_range:
            frame, scale = slice_frame(volume[:, z], lower, upper)
            emb = self._embedding(z, frame)
            prompt = plane
            neighbour = z - 1 if z > (z_range[0]) else z + 1
            if z != z_range[0] and neighbour in previous and previous[neighbour].any():
                ys, xs = np.nonzero(previous[neighbour])
                prompt = ((ys.min(), xs.min()), (ys.max(), xs.max()))
            slice_points = [((p[-2], p[-1]), lab) for p, lab in box_points if len(p) == 2 or p[0] == z]
            logits, iou = self.segment_slice(emb, (h, w), scale, prompt, slice_points)
            previous[z] = logits > 0
            yield z, logits, iou


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def _box_area(box: BoxPrompt) -> int:
    return int(np.prod([u - lo + 1 for lo, u in zip(box.lower, box.upper)]))


def box_nested(inner: BoxPrompt, outer: BoxPrompt, share: float = 0.9) -> bool:
    """``inner`` lies (at least ``share`` of its extent) inside the larger box ``outer``.

    The share tolerates MedSAM's jitter pushing a side of the inner box past the outer one.

    Examples
    --------
    >>> box_nested(BoxPrompt((10, 10), (20, 20)), BoxPrompt((5, 5), (30, 30)))
    True
    >>> box_nested(BoxPrompt((5, 5), (30, 30)), BoxPrompt((10, 10), (20, 20)))
    False
    """
    if inner.ndim != outer.ndim or _box_area(inner) >= _box_area(outer):
        return False
    overlap = np.prod([max(0, min(u1, u2) - max(l1, l2) + 1)
                       for l1, u1, l2, u2 in zip(inner.lower, inner.upper, outer.lower, outer.upper)])
    return bool(overlap >= share * _box_area(inner))


def paint_order(prompts: Sequence[BoxPrompt | None]) -> list[int]:
    """Indices of ``prompts`` from the largest box to the smallest (stable; clicks alone come last)."""
    return sorted(range(len(prompts)), key=lambda i: -_box_area(prompts[i]) if prompts[i] is not None else 0)


def load_prompt_model(folder: str | Path) -> LiteMedSAM:
    """A promptable network fine-tuned by ``medseg train --net litemedsam`` (a model folder), in eval mode.

    Raises
    ------
    MedsegError
        The folder holds a network that is not promptable (use ``medseg predict`` for it).
    """
    from medseg.model_folder import load_config, load_model
    from medseg.nets import NETWORKS

    config = load_config(folder)
    if not NETWORKS.entry(config.network).metadata.get("promptable"):
        raise MedsegError(f"the model folder holds '{config.network}', which takes no prompts: use medseg predict",
                          folder)
    return load_model(folder)[1]


def boxes_from_model(predictor, image: Image, min_voxels: int = 10, jitter: int = 0,
                     seed: int | None = None) -> list[BoxPrompt]:
    """Boxes around a coarse model's connected components (localise, then prompt).

    Parameters
    ----------
    predictor : object with ``predict(image) -> Image``
        E.g. :class:`medseg.Predictor` of a trained model folder.
    image : Image
    min_voxels : int
        Components smaller than this are taken for noise and not prompted.
    jitter, seed
        As in :func:`~medseg.inference.boxes.boxes_from_label_map`.

    Returns
    -------
    list of BoxPrompt
        One box per component, labelled with the model's label value.
    """
    from medseg.inference.boxes import boxes_from_label_map

    label_map = predictor.predict(image)
    return boxes_from_label_map(label_map.array[0], per_component=True, min_voxels=min_voxels, jitter=jitter,
                                seed=seed)


def onnx_sessions(model: LiteMedSAM, folder: str | Path):
    """ONNX Runtime sessions ``(encoder, box decoder)`` for ``model``, exported into ``folder`` on first use.

    The files are named after :func:`~medseg.nets.litemedsam.parameter_fingerprint`, so other weights
    (fine-tuned, random) never pick up a stale export.
    """
    import warnings

    from medseg.fileutil import atomic_path
    from medseg.nets.export import export_onnx, onnx_session
    from medseg.nets.litemedsam import BoxDecoder, parameter_fingerprint

    folder = Path(folder)
    key = parameter_fingerprint(model)[:16]
    encoder = folder / f"litemedsam_encoder_{key}.onnx"
    decoder = folder / f"litemedsam_decoder_{key}.onnx"
    if not encoder.is_file():
        export_onnx(model.image_encoder, encoder, (1, 3, IMAGE_SIZE, IMAGE_SIZE), dynamic_spatial=False)
    if not decoder.is_file():
        example = (torch.zeros(1, 256, 64, 64), torch.tensor([[0.0, 0.0, IMAGE_SIZE - 1.0, IMAGE_SIZE - 1.0]]))
        with atomic_path(decoder) as tmp, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(BoxDecoder(model).eval(), example, str(tmp), opset_version=17, dynamo=False,
                              input_names=["embedding", "boxes"], output_names=["logits", "iou"])
    threads = torch.get_num_threads()
    return onnx_session(encoder, threads=threads), onnx_session(decoder, threads=threads)


def _check_prompts(spatial: tuple[int, ...], boxes: Sequence[BoxPrompt], points: Sequence[Point], name: str) -> None:
    """One-line errors for prompts that cannot be run on an image of this shape."""
    if int(np.prod(spatial)) > MAX_VOXELS:
        raise MedsegError(f"image of shape {spatial} is too large to prompt ({MAX_VOXELS} voxels at most)", name)
    if not boxes and not points:
        raise MedsegError("nothing to segment: give a box (or, on a 2D image, a click inside the structure)", name)
    for box in boxes:
        check_box(box, spatial, name)
    if points:
        if len(spatial) == 3:
            raise MedsegError("a click on a volume needs a box: the box gives the slices to segment", name)
        if not any(lab == 1 for _, lab in points):
            raise MedsegError("clicks without a box need at least one point inside the structure (label 1)", name)
        check_box(BoxPrompt((0, 0), tuple(s - 1 for s in spatial), points=tuple(points)), spatial, name)


def _prompt_channels(image: Image, channel: int | None, name: str) -> np.ndarray:
    """The 1 or 3 channels LiteMedSAM sees, as float32 ``(C, [Z,] Y, X)``."""
    c = image.num_channels
    if channel is not None:
        if not 0 <= channel < c:
            raise MedsegError(f"channel {channel} does not exist (the image has {c})", name)
        return image.array[channel:channel + 1].astype(np.float32)
    if c not in (1, 3):
        raise MedsegError(f"the image has {c} channels: choose one to prompt on (--channel)", name)
    array = image.array
    return array if array.dtype == np.uint8 else array.astype(np.float32)


def prompt_image(image: Image, boxes: Sequence[BoxPrompt] = (), points: Sequence[Point] = (),
                 channel: int | None = None, weights: str | Path | None = None,
                 model: LiteMedSAM | None = None) -> PromptResult:
    """Segment ``image`` from box / click prompts with LiteMedSAM (see :class:`Prompter`).

    Examples
    --------
    >>> from medseg.inference.boxes import BoxPrompt
    >>> image = Image(np.zeros((1, 32, 32), np.float32))
    >>> prompt_image(image, [BoxPrompt((4, 4), (20, 20))], model=LiteMedSAM().eval()).label_map.array.shape
    (1, 32, 32)
    """
    return Prompter(model=model, weights=weights).segment(image, boxes, points, channel)


__all__ = ["PERCENTILES", "PromptResult", "Prompter", "box_nested", "boxes_from_model", "load_prompt_model", "paint_order", "onnx_sessions", "intensity_window", "prompt_image", "slice_frame"]
