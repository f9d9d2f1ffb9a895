"""Reading the JSON files medseg keeps (dataset.json, splits.json, plan.json, config.json, ...) with
errors that name the file, what it is meant to be, and what is wrong with it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from medseg.errors import MedsegError

#: A JSON file larger than this is not one of medseg's small description files.
MAX_JSON_BYTES = 256 * 2**20


def read_json(path: str | os.PathLike, what: str, expect: type | tuple[type, ...] = dict,
              error: type[MedsegError] = MedsegError) -> Any:
    """Read the JSON file ``path``, which should hold a ``what`` (e.g. ``"dataset description"``).

    Parameters
    ----------
    path : path
        The file.
    what : str
        What the file is meant to be, named in every error.
    expect : type or tuple of types
        The JSON type at the top level (``dict`` for an object, ``list`` for an array).
    error : MedsegError subclass
        The error raised (e.g. :class:`~medseg.errors.DatasetError`).

    Returns
    -------
    The parsed value.

    Raises
    ------
    MedsegError
        Missing, unreadable, too large, not UTF-8, not valid JSON (with line and column), or not of the
        expected type; the message names the file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "splits.json"
    >>> _ = p.write_text('{"train": ["a"]}', encoding="utf-8")
    >>> read_json(p, "split file")
    {'train': ['a']}
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found" if not path.exists() else f"{what} is not a file", path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise error(f"{what} is {size / 2**20:.0f} MiB; a JSON description is expected to be small", path)
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} is not UTF-8 text (is it a JSON file?)", path) from None
    except OSError as exc:
        raise error(f"cannot read {what}: {exc.strerror}", path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", path) from None
    except RecursionError:
        raise error(f"{what} is nested too deeply to be valid", path) from None
    if not isinstance(data, expect):
        names = {dict: "a JSON object {...}", list: "a JSON array [...]"}
        wanted = " or ".join(names.get(t, t.__name__) for t in (expect if isinstance(expect, tuple) else (expect,)))
        raise error(f"{what} must hold {wanted}; it holds {type(data).__name__}", path)
    return data


def field(data: dict, key: str, kind: type | tuple[type, ...], path: str | os.PathLike, what: str,
          error: type[MedsegError] = MedsegError, default: Any = ...) -> Any:
    """``data[key]`` checked to be of ``kind``; a missing or mistyped field is an error naming the file.

    Examples
    --------
    >>> field({"epochs": 3}, "epochs", int, "config.json", "model configuration")
    3
    """
    if key not in data:
        if default is not ...:
            return default
        raise error(f"{what} lacks the field '{key}'", path)
    value = data[key]
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        value = ...  # JSON true/false is not a number
    if value is ... or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise error(f"{what}: field '{key}' must be {names}; got {data[key]!r}", path)
    return value


def check_fields(data: dict, schema: dict[str, type | tuple[type, ...]], path: str | os.PathLike, what: str,
                 error: type[MedsegError] = MedsegError) -> None:
    """Check the type of each field of ``schema`` that ``data`` holds (missing fields are left to the caller).

    Examples
    --------
    >>> check_fields({"num_classes": 2}, {"num_classes": int}, "config.json", "model configuration")
    >>> check_fields({"num_classes": "two"}, {"num_classes": int}, "config.json", "model configuration")
    Traceback (most recent call last):
    ...
    medseg.errors.MedsegError: config.json: model configuration: field 'num_classes' must be int; got 'two'
    """
    for key, kind in schema.items():
        if key in data:
            field(data, key, kind, path, what, error)
