"""The planning rules: fingerprint + machine budget → :class:`~medseg.planning.plan.Plan`.

Each rule is one function below whose docstring states the rule; each records what it decided and why
in ``plan.rules_fired``, so the plan explains itself (``medseg plan`` prints them). The rules follow
nnU-Net (Isensee et al., Nature Methods 2021) where it is right for a CPU too — median spacing,
anisotropy ratio 3, pooling per axis — and depart from it where it is not: patch and batch size come
from the time a training step may take on *this* machine, not from an assumed 8 GB GPU.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Sequence

import numpy as np

from medseg.constants import ANISOTROPY_RATIO, SLICE_SHAPE_RATIO
from medseg.errors import MedsegError
from medseg.io.formats import RASTER_EXTENSIONS
from medseg.planning.cost import unet_step_cost
from medseg.planning.machine import Machine, detect_machine
from medseg.planning.plan import Plan
from medseg.planning.structure import CONTINUOUS_SLICES, is_thin
from medseg.planning.topology import divisibility, network_topology

#: Rule constants, named so that the rules read like their documentation.
THICK_AXIS_PERCENTILE = "10"      # out-of-plane target spacing percentile for thick-slice data
FEW_SLICES = 48                   # fewer slices than this (after resampling): a 3D patch spans the stack
NONZERO_MASK_FRACTION = 0.75      # crop keeping less than this share → z-score inside the non-zero mask
# seconds per training step a patch and batch are sized for (2D, 3D), at the machine's float32 rate even where
# training runs in bfloat16: planned at the bfloat16 rate (1.9×), the PROMISE12 3D patch doubled, the steps in 30
# minutes halved, and held-out Dice fell; at 2 s it scored the same (BENCHMARKS.md session 36)
DEFAULT_STEP_SECONDS = {2: 1.5, 3: 4.0}
# seconds per 3D step for a short stack whose structures continue, on a machine without bfloat16 units: half
# the 3D default, a coarser grid that makes as many steps as 2D (rule_configuration; BENCHMARKS.md session 38)
FLOAT32_STACK_STEP_SECONDS = 2.0
FEATURE_CANDIDATES = (32, 16)
CONTEXT_COVERAGE = 0.75           # patch / median shape per axis that counts as "sees the whole image"
# patch / median image voxels below which the grid is coarsened: nnU-Net's 3d_lowres bar in 3D; in 2D, where
# nnU-Net's patches cover whole slices, half (measured on OCT: rule_low_resolution's docstring)
LOW_RESOLUTION_COVERAGE = {2: 0.5, 3: 0.25}
LOW_RESOLUTION_GROWTH = 1.03      # spacing growth per step of that rule (nnU-Net's 3d_lowres increment)
MIN_BATCH = 2
MAX_FEATURES = {2: 512, 3: 320}
DATASET_BATCH_SHARE = 0.05        # a batch covers at most 5 % of the dataset's voxels (nnU-Net)
MEMORY_FRACTION = {"cpu": 0.4, "cuda": 0.85}
TRAINING_TIME_SHARE = 0.9         # of the time limit spent on steps; the rest on validation/checkpoints


class RuleLog(list):
    """``rules_fired``: a list of ``{"rule", "decision", "reason"}``."""

    def fire(self, rule: str, decision: Any, reason: str) -> None:
        text = decision if isinstance(decision, str) else json.dumps(decision)
        self.append({"rule": rule, "decision": text, "reason": reason})


def _fmt(values: Sequence[float]) -> str:
    return "×".join(str(int(v)) if float(v).is_integer() else f"{float(v):.3g}" for v in values)


# --- geometry ------------------------------------------------------------------------------------
def rule_target_spacing(summary: dict, log: RuleLog) -> tuple[list[float], int | None]:
    """Target spacing = the median spacing per axis. If the median spacing is strongly anisotropic
    (coarsest / finest axis > 3), the coarse axis instead gets the 10th percentile of its spacings (but
    not finer than the other axes): resampling every case to a median 8 mm slice distance would throw
    away the slices of the cases acquired at 5 mm, while interpolating to the in-plane spacing would
    invent slices. Returns the spacing and the thick-slice axis (None when isotropic enough)."""
    median = [float(v) for v in summary["median_spacing"]]
    ratio = max(median) / min(median)
    if ratio <= ANISOTROPY_RATIO:
        log.fire("target_spacing", median, f"the dataset's typical (median) voxel size, {_fmt(median)} mm; its longest "
                 f"side is {ratio:.2f}× the shortest (at most {ANISOTROPY_RATIO:g}×: no thick slices)")
        return median, None
    axis = int(np.argmax(median))
    low = float(summary["spacing_percentiles"][THICK_AXIS_PERCENTILE][axis])
    others = max(v for a, v in enumerate(median) if a != axis)
    target = list(median)
    target[axis] = max(low, others)
    log.fire("target_spacing", target,
             f"median spacing {_fmt(median)} mm is anisotropic ({ratio:.1f} > {ANISOTROPY_RATIO:g}): axis {axis} "
             f"takes the {THICK_AXIS_PERCENTILE}th percentile of its spacings ({low:g} mm) instead of the median")
    return target, axis


def rule_resampling(separate_axis: int | None, log: RuleLog) -> dict[str, Any]:
    """Images: 3rd-order spline. Thick-slice data: in-plane 3rd order, across slices order 0 (nnU-Net;
    a cubic spline across 5–10 mm slices overshoots at tissue boundaries). Labels: each label's mask
    interpolated linearly, then argmax (no new label values; smoother than nearest — measured in
    ``tests/preprocessing/test_resample.py``)."""
    res = {"image_order": 3, "label": "linear", "separate_axis": separate_axis, "separate_order": 0}
    reason = ("smooth interpolation keeps image detail; interpolating each label separately never invents "
              "label values" if separate_axis is None else
              "interpolating across slices 5–10 mm apart would invent tissue between them, so the thick-slice "
              f"axis ({separate_axis}) takes the nearest slice; within slices, smooth interpolation")
    log.fire("resampling", res, reason)
    return res


def rule_crop(summary: dict, log: RuleLog) -> bool:
    """Always crop each case to the bounding box of its non-zero voxels: it is free, and background
    the network never sees costs no training or inference time."""
    frac = float(summary.get("median_nonzero_crop_fraction", 1.0))
    log.fire("crop_to_nonzero", "true", f"the empty (zero) border costs time and teaches nothing; the crop keeps a "
             f"median {100 * frac:.0f}% of the voxels")
    return True


def is_photograph(channel_names: Sequence[str], file_ending: str | None, data_dims: int) -> bool:
    """A 2D colour photograph: three channels named R, G, B (or red, green, blue), or read from a raster file."""
    names = [n.lower() for n in channel_names]
    return data_dims == 2 and len(names) == 3 and (
        names in (["r", "g", "b"], ["red", "green", "blue"]) or (file_ending or "").lower() in RASTER_EXTENSIONS)


def photograph_steps(roi: bool) -> list[dict[str, Any]]:
    """Colour fundus-style photographs: green channel, CLAHE, z-score (inside the ROI when every case has one)."""
    return [{"name": "green_channel"}, {"name": "clahe"}, {"name": "zscore", "mask": "roi"} if roi else {"name": "zscore"}]


def rule_normalisation(fingerprint: dict, log: RuleLog) -> list[dict[str, Any]]:
    """2D colour photographs (three R/G/B channels or a raster file): green channel (the vessel
    contrast), CLAHE (even illumination), z-score — inside the region of interest when every case has
    one (the fundus field of view). Otherwise per channel. CT (channel name contains the word "CT"):
    intensities are physical (Hounsfield units), so clip to the 0.5/99.5 percentiles of the dataset's
    foreground, then z-score with the foreground mean and std — the same numbers for every case.
    Anything else (MR, …): intensities are arbitrary per scan, so z-score each case with its own
    statistics: inside the ROI when every case has one, else inside the non-zero (body) mask when
    cropping to non-zero removes much background (crop keeps < 75 %), else over the whole image."""
    summary = fingerprint["summary"]
    steps: list[dict[str, Any]] = []
    frac = float(summary.get("median_nonzero_crop_fraction", 1.0))
    roi = 0 < fingerprint.get("cases_with_roi", 0) == fingerprint.get("num_cases")
    if is_photograph(fingerprint["channel_names"], fingerprint.get("file_ending"), int(summary["spatial_dims"])):
        log.fire("normalisation", "green channel, CLAHE, z-score" + (" inside the region of interest" if roi else ""),
                 "2D colour photographs: the green channel carries the most vessel contrast, CLAHE evens out the "
                 "illumination" + ("; statistics inside each case's region of interest (field of view)" if roi else ""))
        return photograph_steps(roi)
    for c, name in enumerate(fingerprint["channel_names"]):
        stats = summary["intensity"][c] if c < len(summary["intensity"]) else None
        if re.search(r"(^|[^a-z])ct([^a-z]|$)", name.lower()) and stats:
            lo, hi = stats["percentile_00_5"], stats["percentile_99_5"]
            steps.append({"name": "clip", "low": lo, "high": hi, "channels": [c]})
            steps.append({"name": "zscore", "mean": stats["mean"], "std": max(stats["std"], 1e-8), "channels": [c]})
            log.fire(f"normalisation[{c}]", "CT: clip + dataset z-score",
                     f"channel '{name}' is CT: clip to foreground percentiles [{lo:g}, {hi:g}], then "
                     f"z-score with foreground mean {stats['mean']:g} / std {stats['std']:g}")
        elif roi:
            steps.append({"name": "zscore", "mask": "roi", "channels": [c]})
            log.fire(f"normalisation[{c}]", "z-score per case inside the region of interest",
                     f"channel '{name}' is not CT: its intensities have no fixed unit, so each scan is standardised "
                     "on its own; every case has a region of interest")
        else:
            mask = "nonzero" if frac < NONZERO_MASK_FRACTION else None
            steps.append({"name": "zscore", "mask": mask, "channels": [c]})
            where = ("inside the non-zero mask" if mask else "over the whole image")
            log.fire(f"normalisation[{c}]", f"z-score per case {where}",
                     f"channel '{name}' is not CT: its intensities have no fixed unit (unlike Hounsfield units), so "
                     f"each scan is standardised on its own (mean 0, standard deviation 1); the crop keeps "
                     f"{100 * frac:.0f}% of voxels ({'<' if mask else '≥'} {100 * NONZERO_MASK_FRACTION:.0f}%)"
                     + ("; the zero background outside the body would distort the statistics" if mask else ""))
    return steps


def resampled_median_shape(fingerprint: dict, target_spacing: Sequence[float]) -> list[int]:
    """Median over cases of each case's shape after resampling to ``target_spacing``."""
    shapes = [[s * sp / t for s, sp, t in zip(c["shape"], c["spacing"], target_spacing)] for c in fingerprint["cases"]]
    return [max(1, int(round(v))) for v in np.median(np.asarray(shapes), axis=0)]


def rule_configuration(data_dims: int, target: Sequence[float], shape: Sequence[int], thick_axis: int | None,
                       log: RuleLog, forced: str | None = None, continuity: float | None = None,
                       bfloat16: bool = False) -> tuple[str, int | None, float | None]:
    """2D data → 2D. 3D data → 3D, unless the volume is a stack of few, thick slices: anisotropic
    (target spacing ratio > 3, or in-plane size > 4× the slice count) *and* fewer than 48 slices after
    resampling, and its structures change from slice to slice. Then a 3D patch spans the whole stack anyway,
    pooling across slices is impossible or meaningless, and a 2D network sees far more in-plane context per
    second of CPU. A stack whose labelled structures continue across its slices (``continuity``, the labels'
    overlap on neighbouring slices, at least :data:`~medseg.planning.structure.CONTINUOUS_SLICES`) stays 3D:
    the 3D network sees where the structure ends, which a 2D network guesses slice by slice. On a machine
    without bfloat16 units (:attr:`Machine.bfloat16`), where a 3D step costs 2.3–2.5× a 2D one, its patch is
    planned for :data:`FLOAT32_STACK_STEP_SECONDS` per step instead of the 3D default (the third value
    returned; ``None`` where the default holds), a coarser grid that makes as many steps as 2D. The slice axis is
    the thick-slice axis, else the axis with the fewest voxels. The other configuration is planned too
    (``plan.alternatives``).

    Measured: PROMISE12 (continuity 0.88), 30 minutes on one thread, 16 held-out prostates: 3D in bfloat16
    0.775 against 2D 0.734, HD95 7.5 against 9.7 voxels, every fold higher (BENCHMARKS.md "Session 35"); on a
    CPU without bfloat16 units the 3D network at the default budget made 40 % of 2D's steps and lost (0.503
    against 0.619, 8 cases, session 20; on an AVX2-only host 0.575 against 0.598, session 37), planned for 2 s
    steps it won: 0.727 against 0.666, 10 of 16 cases higher, no case lost (session 38).
    ACDC (0.76: slices 5–10 mm apart) stays 2D.
    Measured and not adopted: the 2D network at the data's grid where this machine
    affords 3D only a much coarser one (BraTS: 1 mm slices against 2.65 mm volumes) — better on the validation
    cases, worse on the held-out ones (BENCHMARKS.md "Session 24")."""
    if data_dims == 2:
        log.fire("configuration", "2d", "the images are 2D")
        return "2d", None, None
    slice_axis = thick_axis if thick_axis is not None else int(np.argmin(shape))
    in_plane = [s for a, s in enumerate(shape) if a != slice_axis]
    spacing_ratio = max(target) / min(target)
    shape_ratio = min(in_plane) / shape[slice_axis]
    anisotropic = spacing_ratio > ANISOTROPY_RATIO or shape_ratio > SLICE_SHAPE_RATIO
    few = shape[slice_axis] < FEW_SLICES
    continuous = continuity is not None and continuity >= CONTINUOUS_SLICES
    stack = anisotropic and few
    choice = "3d" if not stack or continuous else "2d"
    step_seconds = FLOAT32_STACK_STEP_SECONDS if stack and continuous and not bfloat16 else None
    facts = (f"a typical volume has {shape[slice_axis]} slices ({'fewer' if few else 'not fewer'} than {FEW_SLICES}); "
             f"slices are {spacing_ratio:.1f}× as thick as the in-plane voxel size and the image is "
             f"{shape_ratio:.1f}× wider than the stack is deep ({'' if anisotropic else 'not '}anisotropic)")
    if continuity is not None and stack:
        facts += (f"; the labels on neighbouring slices overlap {continuity:.2f} "
                  f"({'≥' if continuous else '<'} {CONTINUOUS_SLICES}: the structures "
                  f"{'continue across the slices' if continuous else 'change from slice to slice'})")
    if forced:
        log.fire("configuration", forced, f"forced by the user (the rule would choose {choice}; {facts})")
        return forced, slice_axis, step_seconds
    if not stack:
        why = "volumes with enough slices for a 3D network to use the context across them"
    elif choice == "3d":
        why = ("a short stack whose structures continue across its slices: a 3D network sees where they end, which a "
               "2D one guesses slice by slice (PROMISE12, 16 held-out cases: 3D 0.775 against 2D 0.734 Dice where the "
               "CPU computes bfloat16, 0.727 against 0.666 where it does not; BENCHMARKS.md sessions 35, 38)")
    else:
        why = ("a short stack of slices: a 3D network could hardly look across them, while a 2D network sees more of "
               "each slice per second of computing")
    log.fire("configuration", choice, f"{why} — {facts}")
    return choice, slice_axis, step_seconds


# --- patch, batch, network --------------------------------------------------------------------
def fit_patch(spacing: Sequence[float], median_shape: Sequence[int], features: int, flops_budget: float,
              memory_budget: float, in_channels: int, num_classes: int, batch_size: int = MIN_BATCH,
              min_size: int = 8) -> dict[str, Any]:
    """Largest patch (≤ the median shape) whose training step at ``batch_size`` fits both budgets.

    Starts from the median image shape and repeatedly shrinks the axis with the largest physical
    extent (nnU-Net's order), recomputing the network topology, until the FLOPs of one step fit
    ``flops_budget`` and its memory ``memory_budget``. Each candidate is rounded down to the size the
    network's strides divide.
    """
    dims = len(spacing)
    max_features = MAX_FEATURES[dims]
    patch = [max(1, int(s)) for s in median_shape]
    while True:
        strides, kernels = network_topology(spacing, patch)
        div = divisibility(strides)
        rounded = [max(d, (p // d) * d) for p, d in zip(patch, div)]
        cost = unet_step_cost(rounded, batch_size, features, strides, kernels, in_channels, num_classes, max_features)
        memory = cost["activation_bytes"] + cost["parameter_bytes"]
        fits = cost["flops"] <= flops_budget and memory <= memory_budget
        shrinkable = [a for a in range(dims) if patch[a] > min_size]
        if fits or not shrinkable:
            return {"patch_size": rounded, "strides": strides, "kernel_sizes": kernels, "cost": cost,
                    "memory": memory, "fits": fits, "features": features}
        a = max(shrinkable, key=lambda i: (patch[i] * spacing[i], patch[i]))
        # Shrink by the axis' divisor (the next size the network accepts); near the minimum, by 1/8.
        step = div[a] if rounded[a] - div[a] >= min_size else max(1, rounded[a] // 8)
        patch[a] = max(min_size, min(patch[a] - 1, rounded[a] - step))


def step_memory_bytes(machine: Machine) -> float:
    """Memory a training step may use: 40 % of available RAM on CPU, 85 % of GPU memory."""
    return machine.memory_bytes * MEMORY_FRACTION.get(machine.device, 0.4)


def choose_patch(spacing: Sequence[float], median_shape: Sequence[int], machine: Machine, step_seconds: float,
                 in_channels: int, num_classes: int,
                 features: Sequence[int] = FEATURE_CANDIDATES) -> tuple[dict[str, Any], str]:
    """(the fit :func:`rule_patch_and_network` chooses, why) — without recording the rule."""
    flops_budget = machine.flops * step_seconds
    memory_budget = step_memory_bytes(machine)
    fits = [fit_patch(spacing, median_shape, f, flops_budget, memory_budget, in_channels, num_classes)
            for f in features]
    for fit in fits:
        coverage = min(p / max(1, m) for p, m in zip(fit["patch_size"], median_shape))
        if fit["fits"] and coverage >= CONTEXT_COVERAGE:
            return fit, (f"covers {100 * coverage:.0f}% of it along each direction (at least "
                         f"{100 * CONTEXT_COVERAGE:.0f}% is enough context)")
    ok = [f for f in fits if f["fits"]] or [min(fits, key=lambda f: f["memory"])]
    chosen = max(ok, key=lambda f: (math.prod(f["patch_size"]), f["features"]))
    return chosen, (f"cannot cover {100 * CONTEXT_COVERAGE:.0f}% of it within budget at any network width, so the "
                    "largest patch wins" if chosen["fits"] else
                    "does not fit the budget even at the smallest size: expect slower steps than planned")


def rule_patch_and_network(name: str, spacing: Sequence[float], median_shape: Sequence[int], machine: Machine,
                           step_seconds: float, in_channels: int, num_classes: int, log: RuleLog,
                           features: Sequence[int] = FEATURE_CANDIDATES) -> dict[str, Any]:
    """Patch size and width from this machine's time and memory budget. A training step (batch of
    2) may take ``step_seconds`` at the machine's throughput (FLOPs estimated by
    :func:`medseg.planning.cost.unet_step_cost`) and use a share of its memory (40 % of available RAM
    on CPU, 85 % of GPU memory). For each width (32, then 16 features) the largest fitting patch is
    found; the first width whose patch still covers ≥ 75 % of the median image on every axis wins
    (context first), else the width with the largest patch (a wider network cannot compensate for
    not seeing the structure)."""
    chosen, why = choose_patch(spacing, median_shape, machine, step_seconds, in_channels, num_classes, features)
    flops_budget = machine.flops * step_seconds
    memory_budget = step_memory_bytes(machine)
    budget = (f"{step_seconds:g} s per step at {machine.flops / 1e9:.0f} billion operations per second "
              f"({'measured' if machine.flops_measured else 'assumed'}) = {flops_budget / 1e9:.0f} billion per step; "
              f"memory {memory_budget / 2**30:.1f} GiB")
    log.fire(f"{name}.patch_size", chosen["patch_size"],
             f"the largest patch whose training step fits this machine's budget ({budget}); a typical image is "
             f"{_fmt(median_shape)} voxels: the patch {why}. A step of {MIN_BATCH} patches through a network "
             f"{chosen['features']} filters wide needs {chosen['cost']['flops'] / 1e9:.0f} billion operations and "
             f"{chosen['memory'] / 2**30:.2f} GiB")
    strides = chosen["strides"]
    log.fire(f"{name}.network", {"depth": len(strides) - 1, "strides": strides[1:]},
             "each level halves the image along a direction while that direction keeps at least 4 voxels and "
             "its voxels are at most twice the finest; thick slices are not halved (nor convolved across) until "
             f"the in-plane voxels have caught up (voxels of {_fmt(spacing)} mm)")
    return chosen


def rule_low_resolution(fingerprint: dict, target: Sequence[float], machine: Machine, step_seconds: float | None,
                        num_classes: int, log: RuleLog,
                        features: Sequence[int] = FEATURE_CANDIDATES) -> tuple[list[float], list[int]]:
    """The grid of 2D images and of the 3D configuration: nnU-Net's ``3d_lowres`` rule with the patch from
    *this* machine's budget. While the patch the budget affords covers less than 25 % of the median image's
    voxels in 3D (50 % in 2D), the spacing grows by 3 % — only the axes finer than half the coarsest while the
    data are anisotropic, else all axes — and the patch is chosen again. On a CPU budget a full-resolution
    patch is often a small window onto the structure (LA at 0.625 mm: 48×48×64 of 88×144×185, 6 % of the
    voxels; DukeDME's 496×768 OCT B-scans: 192×256, 13 %); a coarser grid buys context, and the prediction is
    resampled back to the input grid. Measured in 2D (DukeDME fluid, 12 minutes, one thread per fold, mean
    Dice over B-scans with fluid): 0.389 on the B-scans' grid (13 %), 0.389 at 1.43× (26 %, the 3D bar),
    0.511 at half size by hand (52 %), 0.482 at this rule's 1.97× (51 %; B-scan AUC 0.883, the best; BENCHMARKS.md
    "Session 13"). At 40 bfloat16 minutes a bar of 80 % (2.5 mm) scored as 50 % did: 0.588 against 0.583 on two folds
    (session 48). Thin structures (:mod:`medseg.planning.structure`: vessels a few voxels wide) keep the target
    spacing: a coarser grid would erase them. Returns (spacing, median shape)."""
    dims = len(target)
    name = f"{dims}d.target_spacing"
    in_channels = len(fingerprint["channel_names"])
    step_seconds = step_seconds or DEFAULT_STEP_SECONDS[dims]
    spacing = [float(v) for v in target]
    shape = resampled_median_shape(fingerprint, spacing)
    share = fingerprint["summary"].get("boundary_share")
    if share is None or is_thin(share):
        log.fire(name, spacing, "the target spacing: " + (
            f"the structures are thin ({100 * share:.0f}% of the foreground voxels on their boundary): a coarser "
            "grid would erase them" if share is not None else
            "the fingerprint does not say how thin the structures are (no labels, or measured before medseg "
            "recorded it), so the grid is not coarsened"))
        return spacing, shape
    chosen, _ = choose_patch(spacing, shape, machine, step_seconds, in_channels, num_classes, features)
    start = math.prod(chosen["patch_size"]) / math.prod(shape)
    coverage, steps = start, 0
    bar = LOW_RESOLUTION_COVERAGE[dims]
    while coverage < bar and min(shape) > 8:
        coarsest = max(spacing)
        finer = [s < coarsest / 2 for s in spacing]
        grow = finer if any(finer) else [True] * len(spacing)
        spacing = [s * LOW_RESOLUTION_GROWTH if g else s for s, g in zip(spacing, grow)]
        shape = resampled_median_shape(fingerprint, spacing)
        chosen, _ = choose_patch(spacing, shape, machine, step_seconds, in_channels, num_classes, features)
        coverage, steps = min(1.0, math.prod(chosen["patch_size"]) / math.prod(shape)), steps + 1
    if steps == 0:
        log.fire(name, spacing, f"the target spacing: the patch covers {100 * start:.0f}% of the "
                 f"median image's voxels (low resolution only below {100 * bar:.0f}%)")
    else:
        spacing = [round(v, 4) for v in spacing]
        log.fire(name, spacing,
                 f"low resolution: at {_fmt(target)} mm the affordable patch covers only {100 * start:.0f}% of the "
                 f"median image's voxels (< {100 * bar:.0f}%); at {_fmt(spacing)} mm it covers "
                 f"{100 * coverage:.0f}% (median image {_fmt(shape)}); predictions are resampled back to the input grid")
    return spacing, shape


def rule_batch_size(name: str, chosen: dict, median_shape: Sequence[int], dataset_voxels: float, machine: Machine,
                    step_seconds: float, in_channels: int, num_classes: int, log: RuleLog) -> int:
    """Batch size: at least 2 (instance norm and Dice need more than one sample); more while the step
    still fits the time and memory budget, but never more than 5 % of the dataset's voxels per batch
    (nnU-Net; larger batches only repeat the same cases)."""
    dims = len(median_shape)
    one = unet_step_cost(chosen["patch_size"], 1, chosen["features"], chosen["strides"], chosen["kernel_sizes"],
                         in_channels, num_classes, MAX_FEATURES[dims])
    by_time = int(machine.flops * step_seconds // one["flops"])
    memory_budget = step_memory_bytes(machine)
    by_memory = int((memory_budget - one["parameter_bytes"]) // one["activation_bytes"])
    by_dataset = int(DATASET_BATCH_SHARE * dataset_voxels // math.prod(chosen["patch_size"]))
    batch = max(MIN_BATCH, min(by_time, by_memory, by_dataset))
    log.fire(f"{name}.batch_size", batch,
             f"the step-time budget allows {by_time}, memory {by_memory}, and a batch should hold at most 5% of the "
             f"dataset ({by_dataset}); at least {MIN_BATCH}")
    return batch


def plan_configuration(name: str, spacing: Sequence[float], median_shape: Sequence[int], slice_axis: int | None,
                       fingerprint: dict, machine: Machine, time_limit: float, step_seconds: float | None,
                       num_classes: int, log: RuleLog, features: Sequence[int] = FEATURE_CANDIDATES,
                       dataset_voxels: float | None = None) -> dict[str, Any]:
    """Fields of one configuration (``"2d"`` or ``"3d"``): patch, batch, network, training.
    ``dataset_voxels``: voxels of all resampled cases (default: median shape × number of cases)."""
    dims = len(spacing)
    step_seconds = step_seconds or DEFAULT_STEP_SECONDS[dims]
    in_channels = len(fingerprint["channel_names"])
    chosen = rule_patch_and_network(name, spacing, median_shape, machine, step_seconds, in_channels,
                                    num_classes, log, features)
    if dataset_voxels is None:
        dataset_voxels = math.prod(median_shape) * fingerprint["num_cases"]
    batch = rule_batch_size(name, chosen, median_shape, dataset_voxels, machine, step_seconds,
                            in_channels, num_classes, log)
    cost = unet_step_cost(chosen["patch_size"], batch, chosen["features"], chosen["strides"], chosen["kernel_sizes"],
                          in_channels, num_classes, MAX_FEATURES[dims])
    est = cost["flops"] / machine.flops
    iterations = max(1, int(time_limit * TRAINING_TIME_SHARE / est))
    log.fire(f"{name}.training", {"iterations": iterations},
             f"{time_limit / 60:g} minutes, {100 * TRAINING_TIME_SHARE:.0f}% of them training (the rest validating), "
             f"at an estimated {est:.2f} s per step")
    return {
        "configuration": name,
        "spatial_dims": dims,
        "slice_axis": slice_axis,
        "patch_size": chosen["patch_size"],
        "batch_size": batch,
        "network": {
            "name": "unet", "features": chosen["features"], "depth": len(chosen["strides"]) - 1,
            "max_features": MAX_FEATURES[dims], "strides": chosen["strides"][1:], "kernel_sizes": chosen["kernel_sizes"],
        },
        "training": {
            "iterations": iterations, "time_limit": float(time_limit), "estimated_step_seconds": round(est, 3),
            "estimated_gflop_per_step": round(cost["flops"] / 1e9, 1),
            "estimated_memory_gib": round((cost["activation_bytes"] + cost["parameter_bytes"]) / 2**30, 3),
            "num_threads": machine.cpu_cores,
        },
    }


def make_plan(fingerprint: dict, machine: Machine | None = None, *, time_limit: float = 3600.0,
              step_seconds: float | None = None, configuration: str | None = None,
              features: Sequence[int] = FEATURE_CANDIDATES, num_classes: int | None = None) -> Plan:
    """Turn a fingerprint into a Plan for ``machine`` (default: this machine, assumed throughput).

    Parameters
    ----------
    fingerprint : dict
        From :func:`medseg.planning.fingerprint.compute_fingerprint`.
    machine : Machine, optional
        The budget; :func:`medseg.planning.machine.detect_machine` when omitted.
    time_limit : float
        Training wall-clock budget in seconds (sets ``training.iterations``).
    step_seconds : float, optional
        Target seconds per training step (default 1.5 in 2D, 4 in 3D; 2 for a short stack in
        3D on a machine without bfloat16 units: :func:`rule_configuration`).
    configuration : {"2d", "3d"}, optional
        Force a configuration instead of the rule's choice.
    features : sequence of int
        Widths to consider, preferred first.
    num_classes : int, optional
        Network outputs; default from labels/regions.

    Returns
    -------
    Plan
    """
    if configuration not in (None, "2d", "3d"):
        raise MedsegError(f"configuration must be '2d' or '3d'; got {configuration!r}")
    machine = machine or detect_machine()
    log = RuleLog()
    summary = fingerprint["summary"]
    data_dims = int(summary["spatial_dims"])
    if configuration == "3d" and data_dims == 2:
        raise MedsegError("configuration '3d' is impossible: the images are 2D")
    labels = dict(fingerprint["labels"])
    regions = fingerprint.get("regions") or None
    if num_classes is None:
        num_classes = len(regions) if regions else len(labels)

    target, thick_axis = rule_target_spacing(summary, log)
    resampling = rule_resampling(thick_axis, log)
    crop = rule_crop(summary, log)
    steps = rule_normalisation(fingerprint, log)
    shape = resampled_median_shape(fingerprint, target)
    choice, slice_axis, stack_step_seconds = rule_configuration(
        data_dims, target, shape, thick_axis, log, configuration, summary.get("slice_continuity"), machine.bfloat16)
    own_step_seconds = step_seconds or stack_step_seconds
    if step_seconds is None and stack_step_seconds:
        log.fire("3d.step_seconds", own_step_seconds,
                 f"a short stack whose structures continue, on a machine without bfloat16 units: the 3D patch is "
                 f"planned for {own_step_seconds:g} s steps instead of {DEFAULT_STEP_SECONDS[3]:g}, so that 3D makes "
                 f"as many steps as 2D (PROMISE12, 16 held-out cases: 0.727 against 2D 0.666 Dice, where the 3D "
                 f"network at {DEFAULT_STEP_SECONDS[3]:g} s steps tied 2D; BENCHMARKS.md sessions 37, 38)")

    # the configuration of the images' own dimensionality, on the low-resolution rule's grid
    name = f"{data_dims}d"
    spacing, own_shape = rule_low_resolution(fingerprint, target, machine, own_step_seconds, num_classes, log, features)
    configs = {name: plan_configuration(name, spacing, own_shape, None, fingerprint, machine, time_limit,
                                        own_step_seconds, num_classes, log, features,
                                        math.prod(own_shape) * fingerprint["num_cases"])}
    configs[name]["target_spacing"] = spacing
    if data_dims == 3:  # and the 2D configuration of slices, on the target grid
        in_plane = [a for a in range(3) if a != slice_axis]
        configs["2d"] = plan_configuration("2d", [target[a] for a in in_plane], [shape[a] for a in in_plane],
                                           slice_axis, fingerprint, machine, time_limit, step_seconds,
                                           num_classes, log, features, math.prod(shape) * fingerprint["num_cases"])
        configs["2d"]["target_spacing"] = list(target)
    active = configs.pop(choice)
    plan = Plan(
        dataset=str(fingerprint.get("dataset") or ""),
        data_dims=data_dims,
        channel_names=list(fingerprint["channel_names"]),
        labels=labels,
        regions=regions,
        ignore_label=fingerprint.get("ignore_label"),
        num_classes=num_classes,
        resampling=resampling,
        crop_to_nonzero=crop,
        preprocessing=steps,
        machine={**machine.to_dict(), "ram_gib": round(machine.ram_bytes / 2**30, 1)},
        rules_fired=list(log),
        alternatives=configs,
        fingerprint_summary=dict(summary),
        **active,
    )
    return Plan.from_dict(plan.to_dict())
