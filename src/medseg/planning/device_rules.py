"""The rules of carrying a model to another device: fine-tuning a trained model folder on a few cases of
the new device (``medseg train NEW_DATA --init-from MODEL``), and the field-of-view normalisations recorded
in the model and applied by every predictor path: of fundus photographs (the camera's aperture) and of
volumes whose spacing was lost upstream (the scanner's matrix size).

Same style as :mod:`medseg.planning.training_rules` (each returns a :class:`Rule` with its value, inputs
and reason; the trainer records them in rules.json and prints them; a user option wins and is recorded).
The fine-tuning defaults differ from training from scratch because the network already solves the task
on the source device: a lower learning rate keeps what it learned (a tenth of the from-scratch rate, the
usual fine-tuning ratio), a short budget suffices, and with a handful of cases every one of them is
needed for training — the source model's decision threshold and postprocessing, chosen on its own
validation cases, are kept.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from medseg.constants import SLICE_SHAPE_RATIO
from medseg.errors import MedsegError
from medseg.image import is_placeholder_spacing
from medseg.planning.training_rules import LEARNING_RATE, Rule, rule_validation, user_rule

#: Rule constants, named so that the rules read like their documentation.
FINETUNE_LR_FACTOR = 0.1              # of the from-scratch learning rate
FINETUNE_TIME_LIMIT = 300.0           # 5 minutes: the fine-tuning budget on two cores
FINETUNE_MIN_VALIDATION_CASES = 6     # fewer cases: train on all of them, keep the source's choices
#: matrix sides (larger in-plane axis) within this share of each other: nothing to normalise
FIELD_EXTENT_TOLERANCE = 0.02
# a matrix this many times larger (or smaller) than the training median side is brought to it, the others kept
# (by default at prediction only; ``--field-extent outliers`` in training too). PROMISE12's matrices are 128–192
# voxels in 11 of 16 cases and 256 in 5 (1.6×), whose glands span twice as many voxels; the default's worst cases
# were among those five (BENCHMARKS.md, sessions 45–46).
FIELD_EXTENT_OUTLIER_RATIO = 1.5


def rule_init_from(lineage: dict[str, Any]) -> Rule:
    """The record of where the weights came from (``--init-from``): folder, weights and config SHA-256."""
    return Rule("init_from", "Initial weights", lineage,
                f"{lineage['path']} (weights sha256 {lineage['weights_sha256'][:12]}…)",
                "given with --init-from: the network, its weights, preprocessing, labels, patch size and "
                "field-of-view normalisation are the source model's", {}, True)


def rule_finetune_learning_rate(optimizer: str, learning_rate: float | None) -> Rule:
    """Fine-tuning: a tenth of the from-scratch rate (AdamW 2·10⁻⁴, SGD 10⁻³), decayed to zero over the
    budget; a full rate would first undo much of what the source model learned."""
    title = "Learning rate"
    if learning_rate is not None:
        return user_rule("learning_rate", title, float(learning_rate), f"{learning_rate:g}", "--lr")
    value = LEARNING_RATE[optimizer] * FINETUNE_LR_FACTOR
    return Rule("learning_rate", title, value, f"{value:g}", f"fine-tuning: {FINETUNE_LR_FACTOR:g} × the "
                f"from-scratch rate for {optimizer.upper()}, so that the source model's features are adjusted "
                "rather than relearned", {"optimizer": optimizer, "from_scratch": LEARNING_RATE[optimizer]})


def rule_finetune_budget(iterations: int | None, time_limit: float | None) -> Rule:
    """Fine-tuning budget: the user's; else 5 minutes (a few cases of a new device, a trained start)."""
    title = "Training budget"
    if iterations is not None or time_limit is not None:
        shown = ", ".join(([f"{iterations} iterations"] if iterations else [])
                          + ([f"{time_limit / 60:g} minutes"] if time_limit else []))
        return user_rule("budget", title, {"iterations": iterations, "time_limit": time_limit}, shown,
                         "--iterations / --time-limit")
    return Rule("budget", title, {"iterations": None, "time_limit": FINETUNE_TIME_LIMIT},
                f"{FINETUNE_TIME_LIMIT / 60:g} minutes", "fine-tuning a trained model on a few cases of a new "
                "device needs a fraction of a from-scratch budget")


def rule_finetune_validation(case_names: Sequence[str], fold: int | str | None,
                             val_cases: Sequence[str] | None) -> Rule:
    """With fewer than 6 cases every case trains (holding one of 2–5 out costs a fifth to a half of the new
    device's data) and the source model's threshold and postprocessing are kept; with more, the ordinary
    validation rule (:func:`medseg.planning.training_rules.rule_validation`). Given cases or a fold win."""
    if val_cases or fold is not None or len(case_names) >= FINETUNE_MIN_VALIDATION_CASES:
        return rule_validation(case_names, fold, val_cases)
    return Rule("validation", "Validation cases", {"fold": "all"}, "none (train on every case)",
                f"fine-tuning on {len(case_names)} case(s) (fewer than {FINETUNE_MIN_VALIDATION_CASES}): each is "
                "needed for training; the source model's decision threshold and postprocessing are kept. Nothing "
                "checks that fine-tuning helped: compare with the source model on images you hold out (DRIVE → "
                "STARE, 5 minutes on 1, 2 or 5 images: the source model was better on the rest each time, "
                "BENCHMARKS.md)", {"cases": len(case_names)})


def rule_finetune_outcome(source_dice: float, finetuned_dice: float) -> Rule:
    """With validation cases, fine-tuning keeps its weights only if they score at least the source model's
    mean validation Dice on them; otherwise the model folder holds the source's weights (the run's checkpoints
    keep the fine-tuned ones). A model carried to a new device must not leave worse than it came: on STARE,
    5 minutes on 1, 2 or 5 images left the DRIVE model worse on the remaining images every time (BENCHMARKS.md,
    session 10)."""
    kept = finetuned_dice >= source_dice
    verdict = ("fine-tuning helped (or tied)" if kept else
               "fine-tuning lost on the new device's validation cases, so the source model is kept")
    return Rule("finetune_outcome", "Fine-tuned or source weights", "fine-tuned" if kept else "source",
                "the fine-tuned weights" if kept else "the source model's weights",
                f"mean validation Dice {source_dice:.4f} with the source model's weights, {finetuned_dice:.4f} "
                f"fine-tuned: {verdict}",
                {"source_dice": round(source_dice, 5), "finetuned_dice": round(finetuned_dice, 5)})


def rule_source_setting(name: str, title: str, value: Any, shown: str, source: str) -> Rule:
    """A value kept from the source model (network, preprocessing, patch size, batch size...)."""
    return Rule(name, title, value, shown, f"kept from the source model {source}: the weights were trained with it",
                {"source": source})


def _too_few(cases: int, what: str) -> str:
    return f"{cases} validation case(s), too few to {what}" if cases else "no validation cases"


def rule_inherited_threshold(user: float | str | None, source_threshold: float | None, cases: int = 0) -> Rule:
    """Fine-tuning with fewer validation ``cases`` than a threshold can be chosen on
    (:data:`~medseg.planning.training_rules.THRESHOLD_MIN_CASES`, none included): the source model's decision
    threshold (chosen on its own validation cases) rather than an argmax that was never compared with it."""
    title = "Decision threshold"
    if user is not None:
        value = None if str(user) == "argmax" else float(user)
        return user_rule("decision_threshold", title, value, "argmax (p ≥ 0.5)" if value is None else f"p ≥ {value:.3f}",
                         "--decision-threshold")
    shown = "argmax (p ≥ 0.5)" if source_threshold is None else f"p ≥ {source_threshold:.3f}"
    return Rule("decision_threshold", title, source_threshold, shown,
                f"{_too_few(cases, 'choose on')}: the source model's threshold (chosen on its validation cases)",
                {"source_threshold": source_threshold, "cases": cases})


def rule_inherited_mirroring(source_axes: Sequence[int], source: str, cases: int = 0) -> Rule:
    """Fine-tuning with fewer validation ``cases`` than mirroring can be judged on
    (:data:`~medseg.planning.training_rules.TTA_MIN_CASES`, none included): the source model's test-time
    mirroring, which goes with the source's threshold (chosen on probabilities mirrored or not)."""
    axes = [int(a) for a in source_axes]
    return Rule("tta", "Test-time mirroring", axes, f"mirror axes {axes}" if axes else "off",
                f"{_too_few(cases, 'judge it on')}: the source model's choice ({source}), which its decision "
                "threshold was chosen with",
                {"source": source, "cases": cases})


def rule_inherited_postprocessing(user: Sequence[dict] | None, source_steps: Sequence[dict]) -> Rule:
    """No validation cases while fine-tuning: the source model's postprocessing steps."""
    from medseg.planning.training_rules import describe_steps

    title = "Postprocessing"
    if user is not None:
        return user_rule("postprocessing", title, list(user), describe_steps(user), "--postprocessing")
    return Rule("postprocessing", title, list(source_steps), describe_steps(source_steps),
                "no validation cases: the source model's steps (chosen on its validation cases)")


# --- field of view (fundus photographs) --------------------------------------------------------------
def rule_field_of_view(user: float | str | None, colour_photographs: bool, roi_diameters: Sequence[float]) -> Rule:
    """2D colour photographs with field-of-view ROIs (DRIVE-like fundus sets): record the training camera's
    aperture diameter (the median circle fitted to the training ROIs, :func:`medseg.preprocessing.fov.fov_diameter`)
    so that images of other cameras are rescaled to it before the network sees them (their FOV found
    automatically) and predictions come back at their size. A DRIVE model applied to STARE at native size
    sees vessels ~1.2× wider than it was trained on. Other data: none. ``--fov-diameter PX|none`` overrides."""
    title = "Field-of-view normalisation"
    if user is not None:
        if str(user).lower() == "none":
            return user_rule("fov_diameter", title, None, "off", "--fov-diameter none")
        return user_rule("fov_diameter", title, float(user), f"FOV rescaled to {float(user):.1f} px", "--fov-diameter")
    inputs = {"colour_photographs": colour_photographs, "cases_with_roi": len(roi_diameters)}
    if not colour_photographs or not roi_diameters:
        return Rule("fov_diameter", title, None, "off", "only for 2D colour photographs with field-of-view ROIs "
                    "(fundus images)", inputs)
    value = float(np.median(roi_diameters))
    inputs.update(diameter_range=[round(float(min(roi_diameters)), 1), round(float(max(roi_diameters)), 1)])
    return Rule("fov_diameter", title, value, f"FOV rescaled to {value:.1f} px (found automatically on new images)",
                f"colour photographs with field-of-view ROIs: the median aperture of {len(roi_diameters)} training "
                "ROIs is recorded, so that photographs of other cameras are seen at this camera's scale and "
                "predictions are returned at their own size", inputs)


def rule_fov_prediction(fov_diameter: float | None, enabled: bool) -> Rule | None:
    """At prediction time (``medseg predict``): the model's recorded FOV diameter is applied by default
    (FOV found in each image, or the given ROI); ``--no-fov-normalisation`` predicts at the native size."""
    if fov_diameter is None:
        return None
    title = "Field-of-view normalisation"
    if not enabled:
        return user_rule("fov_prediction", title, None, "off (native size)", "--no-fov-normalisation")
    return Rule("fov_prediction", title, float(fov_diameter), f"FOV rescaled to {fov_diameter:.1f} px",
                "recorded in the model (its training camera's aperture): each image's FOV is found "
                "(or the --roi used), the image rescaled, the outputs returned at its size", {})


# --- field extent (volumes whose spacing was lost) ---------------------------------------------------------
def rule_field_extent(user: float | str | None, shapes: Sequence[Sequence[int]],
                      spacings: Sequence[Sequence[float]], network_dims: int = 3) -> Rule:
    """3D training volumes that all have exactly 1 mm spacing although they are short stacks of slices (an
    axis with 4× fewer voxels than the others: real stacks are 2–10 mm apart), at different in-plane matrix
    sizes: the spacing was lost upstream (PROMISE12's and ACDC's releases), and their voxels are not one size.
    Scanners cover a similar field of view at different matrix sizes (PROMISE12: the prostate spans 34–103
    voxels, coefficient of variation 0.39, but 0.21–0.40 of the image side, 0.18 — NOTES.md), which suggests
    bringing each case's larger in-plane side to the training volumes' median (as SSL4MIS resizes every ACDC
    slice to 256², and as fundus photographs are brought to one aperture). Measured, doing it in training does
    not pay: PROMISE12, 16 held-out cases, the planned 3D U-Net 0.776 with every scan at the median side and
    0.786 with only the outlying ones, against 0.778 (BENCHMARKS.md "Session 45", "Session 46"; in 2D, session 17,
    it lost). Both raised the 256² stacks and lowered the other matrices, which training at their own size serves
    better. So for a 3D network the rule records the median side for *prediction only* when some training scan's
    side is ``FIELD_EXTENT_OUTLIER_RATIO`` times the median or more (or less): the network trains and validates on
    every scan as stored, and the predictor brings a scan that far from the median to it (labels returned on the
    input's grid) — on PROMISE12's 256² stacks +0.053 Dice on average over three trainings, 9 of 11 predictions
    higher; the 16 held-out cases 0.778 → 0.800 with session 44's models, 0.752 → 0.756 with session 47's
    (sessions 46–47). ``--field-extent auto`` brings every scan to the median in training and prediction,
    ``outliers`` the outlying ones, ``PX`` every scan to a given side, ``none`` nothing."""
    title = "Field-of-view normalisation (spacing lost)"
    if user is not None:
        keyword = str(user).lower()
        if keyword == "none":
            return user_rule("field_extent", title, None, "off", "--field-extent none")
        median = keyword in ("auto", "outliers")
        if median and not shapes:
            raise MedsegError(f"--field-extent {user} needs training volumes to take the median side of")
        axes = _in_plane_axes(shapes)
        side = float(np.median(_in_plane_sides(shapes, axes))) if median else float(user)
        value: dict[str, Any] = {"side": side, "axes": axes}
        summary = f"in-plane side {side:.0f} voxels"
        if keyword == "outliers":
            value["outlier_ratio"] = FIELD_EXTENT_OUTLIER_RATIO
            summary += f" for scans {FIELD_EXTENT_OUTLIER_RATIO:g}× from it or more"
        return user_rule("field_extent", title, value, summary, f"--field-extent {user}")
    inputs: dict[str, Any] = {"volumes": len(shapes)}
    if not shapes or any(len(s) != 3 for s in shapes):
        return Rule("field_extent", title, None, "off", "only for 3D volumes", inputs)
    unit = all(is_placeholder_spacing(sp) for sp in spacings)
    axes = _in_plane_axes(shapes)
    inputs.update(every_spacing_1mm=unit, in_plane_axes=axes)
    if not unit or len(axes) == 3:
        return Rule("field_extent", title, None, "off", "the volumes carry their spacing (not all exactly 1 mm, or "
                    "1 mm in 3D that is not a short stack of slices)", inputs)
    sides = _in_plane_sides(shapes, axes)
    inputs.update(side_range=[min(sides), max(sides)])
    if max(sides) <= (1 + FIELD_EXTENT_TOLERANCE) * min(sides):
        return Rule("field_extent", title, None, "off", "every volume has the same in-plane matrix size: nothing to "
                    "normalise", inputs)
    from medseg.preprocessing.grid import is_outlying_side

    median, ratio = float(np.median(sides)), FIELD_EXTENT_OUTLIER_RATIO
    outlying = sum(is_outlying_side(side, median, ratio) for side in sides)
    inputs.update(median_side=median, outlying_scans=outlying, network_dims=network_dims)
    lost = (f"every volume is a stack of slices stored at exactly 1 mm, with in-plane matrices of {min(sides)}–"
            f"{max(sides)} voxels: the spacing was lost upstream. ")
    if network_dims == 3 and outlying:
        return Rule("field_extent", title,
                    {"side": median, "axes": axes, "outlier_ratio": ratio, "prediction_only": True},
                    f"in-plane side {median:.0f} voxels at prediction for scans {ratio:g}× from it",
                    lost + f"{outlying} of {len(sides)} training scans are {ratio:g}× from the median side or more: "
                    "the network trains on every scan as stored, and a scan that far from the median is predicted at "
                    "it (PROMISE12, 3D: its 256² stacks +0.05 Dice over three trainings, BENCHMARKS.md sessions "
                    "46–47); --field-extent none turns it off", inputs)
    return Rule("field_extent", title, None, "off (the spacing looks lost)",
                lost
                + (f"No scan's side is {ratio:g}× from the median or more"
                   if network_dims == 3 else "For a 2D network bringing every scan to the median side did not raise "
                   "Dice on PROMISE12 or ACDC (BENCHMARKS.md, session 17)")
                + ", so the voxels are kept as they are; --field-extent auto or outliers applies it", inputs)


def _in_plane_sides(shapes: Sequence[Sequence[int]], axes: Sequence[int]) -> list[int]:
    """Each volume's larger in-plane side (voxels)."""
    return [max(int(s[a]) for a in axes) for s in shapes]


def _in_plane_axes(shapes: Sequence[Sequence[int]]) -> list[int]:
    """The axes other than the stack axis (the one with 4× fewer voxels than the others in the median
    shape); every axis when there is none."""
    median = np.median(np.asarray(shapes, float), axis=0) if len(shapes) else np.zeros(0)
    if median.size < 3:
        return list(range(median.size))
    fewest = int(np.argmin(median))
    others = [a for a in range(median.size) if a != fewest]
    return others if min(median[a] for a in others) > SLICE_SHAPE_RATIO * median[fewest] else list(range(median.size))
