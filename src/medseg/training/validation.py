"""Validation during training: full-image sliding-window prediction of the held-out cases on the
network grid, Dice per class (and ROC AUC for binary tasks); the pruning-level choice of prunable networks."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from medseg.constants import REGION_THRESHOLD
from medseg.errors import MedsegError
from medseg.losses import IGNORE_INDEX
from medseg.model_folder import ModelConfig
from medseg.preprocessing.grid import LabelMapping
from medseg.training.data import PreparedCase

def validate(model: torch.nn.Module, cases: Sequence[PreparedCase], model_config: ModelConfig,
             overlap: float = 0.5) -> dict[str, float]:
    """Full-image sliding-window prediction of the validation cases on the training grid.

    Returns ``val_dice`` (mean foreground Dice over classes, averaged over cases, inside the ROI and
    outside ignored voxels), ``val_dice_<label>`` per class and, for binary tasks, ``val_auc`` (ROC AUC
    of the foreground probability inside the ROI, as reported for DRIVE).
    """
    from medseg.tiling.sliding_window import sliding_window_inference
    from medseg.tiling.slices import slice_network
    from medseg.metrics.overlap import dice as dice_fn

    model.eval()
    network = slice_network(model, model_config.slice_axis)
    activation = model_config.activation
    names = _output_names(model_config)
    per_class: dict[str, list[float]] = {n: [] for n in names}
    aucs: list[float] = []
    binary = model_config.num_classes == 2 and activation == "softmax"
    for case in cases:
        # probabilities only where needed (AUC, regions), compact in 3D; otherwise streamed argmax labels
        want_probs = binary or activation == "sigmoid"
        result = sliding_window_inference(
            np.asarray(case.image, dtype=np.float32), network, model_config.data_tile_size, overlap=overlap,
            activation=activation, return_probabilities=want_probs, return_labels=not want_probs, batch_size=4,
            probabilities_dtype=np.float16 if model_config.data_dims == 3 else np.float32,
        )
        probs = result.probabilities
        target = np.asarray(case.label[0])
        valid = target != IGNORE_INDEX
        if case.roi is not None:
            valid &= case.roi
        if activation == "sigmoid":
            from medseg.losses import region_targets

            regions = LabelMapping(model_config.label_values).regions_as_indices(model_config.regions)
            truth = region_targets(torch.from_numpy(target[None, None].astype(np.int64)), regions)[0].numpy() > 0
            for r, name in enumerate(names):
                per_class[name].append(float(dice_fn(probs[r] > REGION_THRESHOLD, truth[r], roi=valid)))
        else:
            pred = np.argmax(probs, 0) if probs is not None else result.labels
            for k, name in enumerate(names, start=1):
                per_class[name].append(float(dice_fn(pred == k, target == k, roi=valid)))
            if binary:
                from medseg.metrics.probability import roc_auc

                auc = roc_auc(probs[1].astype(np.float32), target == 1, roi=valid)
                if not math.isnan(auc):
                    aucs.append(float(auc))
    out = {f"val_dice_{n}": float(np.nanmean(v)) for n, v in per_class.items() if v}
    out["val_dice"] = float(np.nanmean(list(out.values()))) if out else math.nan
    if aucs:
        out["val_auc"] = float(np.mean(aucs))
    return out


def select_prune_level(model: torch.nn.Module, cases: Sequence[PreparedCase], model_config: ModelConfig,
                       folder: str | Path | None = None, overlap: float = 0.5, tolerance: float = 0.005,
                       ) -> dict[str, Any]:
    """Evaluate every pruning level of a prunable network (UNet++ L1..Ld) on validation cases.

    Each level's mean validation Dice, parameter count and seconds per case are measured; the chosen
    level is the smallest whose Dice is within ``tolerance`` of the best level's (UNet++, Zhou et al.
    2019: prune as far as the validation metric allows). Written to ``folder/pruning.json`` when a folder
    is given; the predictor uses the choice unless told otherwise.

    Returns
    -------
    dict
        ``{"level", "tolerance", "metric", "checkpoint", "levels": [{"level", "parameters",
        "seconds_per_case", "val_dice"}, ...]}``.
    """
    from medseg.model_folder import save_pruning

    depth = int(model.depth)
    old_level, was_training = model.prune_level, model.training
    rows = []
    try:
        for level in range(1, depth + 1):
            try:
                model.set_prune_level(level)
            except MedsegError:  # no head at this level (deep supervision off): not selectable
                continue
            start = time.perf_counter()
            with torch.inference_mode():
                metrics = validate(model, cases, model_config, overlap)
            seconds = (time.perf_counter() - start) / max(1, len(cases))
            rows.append({"level": level, "parameters": int(model.parameters_used(level)),
                         "seconds_per_case": round(seconds, 4), "val_dice": float(metrics["val_dice"])})
    finally:
        model.prune_level = old_level
        model.train(was_training)
    if not rows:
        raise MedsegError("no pruning level could be evaluated")
    dices = [r["val_dice"] for r in rows if not math.isnan(r["val_dice"])]
    best = max(dices) if dices else math.nan
    chosen = next((r["level"] for r in rows if not math.isnan(best) and r["val_dice"] >= best - tolerance),
                  rows[-1]["level"])
    result = {"level": int(chosen), "tolerance": tolerance, "metric": "mean validation Dice",
              "checkpoint": "final", "levels": rows}
    if folder is not None:
        save_pruning(folder, result)
    return result


def _output_names(config: ModelConfig) -> list[str]:
    if config.regions:
        return list(config.regions)
    by_value = {v: k for k, v in config.labels.items()}
    return [str(by_value.get(v, v)) for v in config.label_values[1:]]
