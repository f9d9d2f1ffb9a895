"""``KEY=VALUE`` command-line options (``medseg segment -O``, ``medseg train --net-option``), parsed one way."""

from __future__ import annotations

import json
from typing import Any

from medseg.errors import MedsegError


def parse_value(text: str) -> Any:
    """A JSON value when ``text`` is one (``3``, ``0.5``, ``true``, ``[1, 2]``, ``{"a": 1}``); else
    ``True``/``False``/``None`` in any case, a comma list of such values, or the text itself.

    Examples
    --------
    >>> parse_value("3"), parse_value("True"), parse_value("1,2.5"), parse_value("batch")
    (3, True, [1, 2.5], 'batch')
    """
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if "," in text:
        return [parse_value(v) for v in text.split(",")]
    return text


def parse_key_values(items: list[str] | None, option: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` as ``{"a": 1, "b": "x"}``; ``option`` names the flag in error messages.

    Examples
    --------
    >>> parse_key_values(["norm=batch", "depth=3"], "--net-option")
    {'norm': 'batch', 'depth': 3}
    """
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise MedsegError(f"{option} expects KEY=VALUE; got '{item}'")
        options[key.strip()] = parse_value(value)
    return options


TTA_AXES_HELP = ("Mirror only these spatial axes (0-based, comma list; implies --tta), e.g. 1 = left-right only: "
                 "2x instead of 4x the cost in 2D.")


def tta_choice(tta: bool | None, axes: str | None) -> bool | tuple[int, ...] | None:
    """``--tta/--no-tta`` and ``--tta-axes`` as :class:`medseg.Predictor`'s ``tta``: given axes mirror those
    only; neither given (None): the model's recorded choice.

    Examples
    --------
    >>> tta_choice(True, None), tta_choice(None, "1"), tta_choice(False, "0,1"), tta_choice(None, None)
    (True, (1,), (0, 1), None)
    """
    if not axes:
        return tta
    try:
        return tuple(int(a) for a in axes.split(",") if a.strip())
    except ValueError:
        raise MedsegError(f"--tta-axes expects spatial axes like 1 or 0,1; got '{axes}'") from None
