"""A plan's decisions in words a clinician-researcher can read (``medseg plan`` prints them).

The plan keeps its decisions as data (``rules_fired``: rule, decision as JSON text, reason); these
functions say the same thing as a sentence: "voxels of 1.56 × 1.56 × 10 mm" rather than
``[1.5625, 1.5625, 10.0]``, "halves rows and columns at levels 1–2, every axis at levels 3–4" rather
than ``12 12 22 22``.
"""

from __future__ import annotations

import json
from typing import Any, Sequence


def _mm(values: Sequence[float]) -> str:
    return " × ".join(f"{float(v):.3g}" for v in values) + " mm"


def _voxels(values: Sequence[int]) -> str:
    return " × ".join(str(int(v)) for v in values)


def _axes(axes: Sequence[int], dims: int) -> str:
    if len(axes) == dims:
        return "every axis"
    names = {0: "axis 0", 1: "axis 1", 2: "axis 2"}
    return " and ".join(names.get(a, f"axis {a}") for a in axes)


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
    '3 down-sampling levels: halves axis 1 and axis 2 at levels 1–2, halves every axis at level 3'
    """
    if not strides:
        return "no down-sampling"
    dims = len(strides[0])
    items = [(i + 1, "halves " + _axes([a for a, s in enumerate(st) if s > 1], dims)) for i, st in enumerate(strides)]
    return f"{len(strides)} down-sampling levels: {_levels(items)}"


def describe_kernels(kernels: Sequence[Sequence[int]]) -> str:
    """Convolution kernel sizes per level in words.

    Examples
    --------
    >>> describe_kernels([[1, 3, 3], [3, 3, 3], [3, 3, 3]])
    '1×3×3 (within slices) at level 1, 3×3×3 at levels 2–3'
    """
    items = []
    for i, k in enumerate(kernels):
        text = "×".join(str(int(v)) for v in k)
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
        return f"about {value['iterations']:,} training steps in the budget"
    if name == "crop_to_nonzero":
        return "crop each image to its non-zero region" if str(value).lower() == "true" else "no cropping"
    if name == "configuration":
        return {"2d": "a 2D network (slice by slice for volumes)", "3d": "a 3D network"}.get(str(value), str(value))
    if name == "resampling" and isinstance(value, dict):
        text = f"images: order-{value.get('image_order', 3)} spline; labels: {value.get('label', 'linear')} per label"
        if value.get("separate_axis") is not None:
            text += f"; axis {value['separate_axis']} (thick slices) separately, order {value.get('separate_order', 0)}"
        return text
    return str(decision)


def plan_rule_lines(rules_fired: Sequence[dict[str, Any]]) -> list[str]:
    """Every rule of a plan as ``rule: decision in words — reason``."""
    return [f"{r['rule']}: {describe_decision(r['rule'], r['decision'])} — {r['reason']}" for r in rules_fired]
