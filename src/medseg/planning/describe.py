"""A plan's decisions in words a clinician-researcher can read (``medseg plan`` prints them).

The plan keeps its decisions as data (``rules_fired``: rule, decision as JSON text, reason); these
functions say the same thing as a sentence: "voxels of 1.56 × 1.56 × 10 mm" rather than
``[1.5625, 1.5625, 10.0]``, "halves the image within slices at levels 1–2, in every direction at
levels 3–4" rather than ``122 122 222 222``. Array axes are (slices, rows, columns) in 3D.
"""

from __future__ import annotations

import json
from typing import Any, Sequence


def _mm(values: Sequence[float]) -> str:
    return " × ".join(f"{float(v):.3g}" for v in values) + " mm"


def _voxels(values: Sequence[int]) -> str:
    return " × ".join(str(int(v)) for v in values)


def _axes(axes: Sequence[int], dims: int) -> str:
    """Array axes as directions: (slices, rows, columns) in 3D, (rows, columns) in 2D."""
    if len(axes) == dims:
        return "in every direction"
    if dims == 3:
        if sorted(axes) == [1, 2]:
            return "within slices"
        names = {0: "across slices", 1: "along rows", 2: "along columns"}
    else:
        names = {0: "vertically", 1: "horizontally"}
    return " and ".join(names.get(a, f"along axis {a}") for a in axes)


def _levels(items: list[tuple[int, str]]) -> str:
    """``[(1, "a"), (2, "a"), (3, "b")]`` → ``"a at levels 1–2, b at level 3"``."""
    parts, start = [], 0
    for i in range(1, len(items) + 1):
        if i == len(items) or items[i][1] != items[start][1]:
            first, last = items[start][0], items[i - 1][0]
            where = f"level {first}" if first == last else f"levels {first}–{last}"
            parts.append(f"{items[start][1]} at {where}")
            start = i
    return ", ".join(parts)


def describe_strides(strides: Sequence[Sequence[int]]) -> str:
    """Down-sampling steps in words.

    Examples
    --------
    >>> describe_strides([[1, 2, 2], [1, 2, 2], [2, 2, 2]])
    '3 down-sampling levels: halves the image within slices at levels 1–2, in every direction at level 3'
    """
    if not strides:
        return "no down-sampling"
    dims = len(strides[0])
    items = [(i + 1, _axes([a for a, s in enumerate(st) if s > 1], dims)) for i, st in enumerate(strides)]
    return f"{len(strides)} down-sampling levels: halves the image {_levels(items)}"


def describe_kernels(kernels: Sequence[Sequence[int]]) -> str:
    """Convolution kernel sizes per level in words.

    Examples
    --------
    >>> describe_kernels([[1, 3, 3], [3, 3, 3], [3, 3, 3]])
    '1×3×3 voxels (within slices) at level 1, 3×3×3 voxels at levels 2–3'
    """
    items = []
    for i, k in enumerate(kernels):
        text = "×".join(str(int(v)) for v in k) + " voxels"
        if 1 in k and any(v > 1 for v in k):
            text += " (within slices)"
        items.append((i + 1, text))
    return _levels(items)


def describe_decision(rule: str, decision: Any) -> str:
    """One decision of ``plan.rules_fired`` in words (falls back to the recorded text)."""
    try:
        value = json.loads(decision) if isinstance(decision, str) else decision
    except (json.JSONDecodeError, TypeError):
        value = decision
    name = rule.split(".")[-1]
    if name == "target_spacing" and isinstance(value, list):
        return f"voxels of {_mm(value)}"
    if name == "patch_size" and isinstance(value, list):
        return f"training patches of {_voxels(value)} voxels"
    if name == "batch_size" and isinstance(value, int):
        return f"{value} patches per training step"
    if name == "network" and isinstance(value, dict) and "strides" in value:
        return describe_strides(value["strides"])
    if name == "training" and isinstance(value, dict) and "iterations" in value:
        return f"about {value['iterations']:,} training steps in the time budget"
    if name.startswith("normalisation"):
        return str(value)
    if name == "crop_to_nonzero":
        return "crop each image to its non-zero region" if str(value).lower() == "true" else "no cropping"
    if name == "configuration":
        return CONFIGURATION_WORDS.get(str(value), str(value))
    if name == "resampling" and isinstance(value, dict):
        text = "images: smooth (cubic) interpolation; label maps: each label interpolated, then the most likely kept"
        if value.get("separate_axis") is not None:
            text += "; across the thick slices: nearest slice (no interpolation)"
        return text
    return str(decision)


#: What a configuration is, in words (``medseg plan`` prints it under the table).
CONFIGURATION_WORDS = {"2d": "a 2D network: it sees one image (or one slice of a volume) at a time",
                       "3d": "a 3D network: it sees a block of neighbouring slices at once"}

#: Rule names (the part after ``2d.`` / ``3d.``) as the question each answers.
RULE_TITLES = {
    "target_spacing": "Voxel size the images are resampled to",
    "resampling": "How images are resampled",
    "crop_to_nonzero": "Cropping",
    "normalisation": "Intensity normalisation",
    "configuration": "2D or 3D network",
    "patch_size": "Training patch",
    "network": "Network depth",
    "batch_size": "Patches per training step",
    "training": "Training length",
}


def rule_title(rule: str, channel_names: Sequence[str] = ()) -> str:
    """A plan rule's name as the question it answers: ``"2d.patch_size"`` → ``"Training patch (2D network)"``.

    Examples
    --------
    >>> rule_title("3d.batch_size"), rule_title("normalisation[1]", ["FLAIR", "T1"])
    ('Patches per training step (3D network)', "Intensity normalisation (channel 'T1')")
    """
    prefix, _, name = rule.rpartition(".")
    base, _, index = name.partition("[")
    title = RULE_TITLES.get(base, name.replace("_", " "))
    if index:
        channel = int(index.rstrip("]"))
        title += f" (channel '{channel_names[channel]}')" if channel < len(channel_names) else f" (channel {channel})"
    if prefix:
        title += f" ({prefix.upper()} network)"
    return title


def plan_rule_lines(rules_fired: Sequence[dict[str, Any]], channel_names: Sequence[str] = ()) -> list[str]:
    """Every rule of a plan as ``Title: decision in words — reason``."""
    return [f"{rule_title(r['rule'], channel_names)}: {describe_decision(r['rule'], r['decision'])} — {r['reason']}"
            for r in rules_fired]
