"""Cross-validation splits: read a dataset's own splits file, or make grouped k-fold splits.

Formats read (a split is ``{"train": [...], "val": [...]}``):

- nnU-Net's ``splits_final.json``: a list of folds, each a split;
- a single split as a dict ``{"train": [...], "val": [...]}`` (e.g. ACDC's SSL4MIS train/val file);
  it counts as one fold (fold 0). Other keys (e.g. ``"test"``) are ignored.

Entries may name cases (``patient003_frame01``) or groups of cases such as patients (``patient003``):
an entry that is not a case name stands for every case whose name starts with the entry followed by
``_`` or ``-``. An entry that matches nothing is an error naming the file and the entry.

New splits keep the cases of one patient together: cases are grouped by :func:`case_group`, which
strips a trailing time-point/frame/session suffix (``patient003_frame01`` → ``patient003``), so that
two frames of one patient never sit on both sides of a split.

Splits are never written into a user's dataset silently: :func:`load_or_create_splits` writes only to
the ``output_dir`` it is given (a model or plan folder). ``medseg splits`` writes ``splits.json`` into
a dataset only when the user runs it and the dataset has none.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medseg.errors import DatasetError, MedsegError
from medseg.fileutil import write_text_atomic

Split = dict[str, list[str]]
_GROUP_SUFFIX = re.compile(r"^(.+?)[_-](?:frame|fr|ses|session|tp|time|timepoint|visit|scan|phase|es|ed)[_-]?\d*$",
                           re.IGNORECASE)
#: CLASS-PATIENT-IMAGE, as the large public OCT collection (Kermany et al. 2018) names its B-scans:
#: "CNV-1016042-1" is image 1 of patient 1016042
_IMAGE_NUMBER = re.compile(r"^([A-Za-z][A-Za-z0-9]*-\d+)-\d+$")


def case_group(name: str) -> str:
    """The group (patient) a case belongs to: the name without a trailing frame / session / time-point
    suffix.

    Examples
    --------
    >>> case_group("patient003_frame01"), case_group("BRATS_001"), case_group("sub-01_ses-2")
    ('patient003', 'BRATS_001', 'sub-01')
    >>> case_group("CNV-1016042-1"), case_group("case-12")
    ('CNV-1016042', 'case-12')
    """
    match = _GROUP_SUFFIX.match(name) or _IMAGE_NUMBER.match(name)
    return match.group(1) if match else name


def _expand(entries: Sequence[Any], names: Sequence[str], where: str, source: Path | None) -> list[str]:
    known = set(names)
    out: list[str] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise DatasetError(f"{where}: entries must be case names (strings); got {entry!r}", source)
        if entry in known:
            out.append(entry)
            continue
        matched = [n for n in names if n.startswith(entry + "_") or n.startswith(entry + "-")]
        if not matched:
            raise DatasetError(f"{where}: '{entry}' is neither a case of the dataset nor a prefix of one", source)
        out.extend(matched)
    return list(dict.fromkeys(out))


def parse_splits(data: Any, case_names: Sequence[str], source: Path | None = None) -> list[Split]:
    """Normalise a splits object (list of folds, or one ``{"train", "val"}`` dict) to a list of folds
    whose entries are case names (patient ids expanded by prefix)."""
    if isinstance(data, dict):
        folds = [data]
    elif isinstance(data, list):
        folds = data
    else:
        raise DatasetError("splits must be a list of {'train', 'val'} folds or one such object", source)
    if not folds:
        raise DatasetError("splits file holds no folds", source)
    result = []
    for i, fold in enumerate(folds):
        if not isinstance(fold, dict) or "train" not in fold or "val" not in fold:
            raise DatasetError(f"fold {i} must be an object with 'train' and 'val' lists", source)
        train = _expand(fold["train"], case_names, f"fold {i} 'train'", source)
        val = _expand(fold["val"], case_names, f"fold {i} 'val'", source)
        both = sorted(set(train) & set(val))
        if both:
            raise DatasetError(f"fold {i}: cases in both 'train' and 'val': {both[:5]}", source)
        result.append({"train": train, "val": val})
    return result


def read_splits(path: str | os.PathLike, case_names: Sequence[str]) -> list[Split]:
    """Read and normalise a splits file (see module docstring)."""
    from medseg.io.jsonfile import read_json

    path = Path(path)
    data = read_json(path, "splits file", (dict, list), DatasetError)
    return parse_splits(data, case_names, path)


def make_splits(case_names: Sequence[str], folds: int = 5, seed: int = 0) -> list[Split]:
    """Grouped k-fold splits: groups (:func:`case_group`) shuffled with ``seed``, dealt round-robin
    into ``folds`` folds; every case is in exactly one validation fold.

    Examples
    --------
    >>> s = make_splits([f"p{i}_frame01" for i in range(6)] + [f"p{i}_frame02" for i in range(6)], folds=3)
    >>> len(s), sorted(len(f["val"]) for f in s)
    (3, [4, 4, 4])
    """
    if folds < 2:
        raise MedsegError(f"folds must be at least 2; got {folds}")
    groups: dict[str, list[str]] = {}
    for name in case_names:
        groups.setdefault(case_group(name), []).append(name)
    keys = sorted(groups)
    if len(keys) < folds:
        raise DatasetError(f"{len(keys)} patient group(s) cannot fill {folds} folds; use fewer folds")
    order = np.random.default_rng(seed).permutation(len(keys))
    val_sets: list[list[str]] = [[] for _ in range(folds)]
    for i, k in enumerate(order):
        val_sets[i % folds].extend(groups[keys[k]])
    result = []
    for val in val_sets:
        chosen = set(val)
        result.append({"train": [n for n in case_names if n not in chosen], "val": [n for n in case_names if n in chosen]})
    return result


def save_splits(splits: list[Split], path: str | os.PathLike) -> Path:
    """Write splits (nnU-Net list-of-folds format) atomically."""
    path = Path(path)
    write_text_atomic(path, json.dumps(splits, indent=1) + "\n")
    return path


def load_or_create_splits(dataset: Any, folds: int = 5, seed: int = 0, output_dir: str | os.PathLike | None = None,
                          splits_path: str | os.PathLike | None = None) -> list[Split]:
    """The dataset's cross-validation splits.

    Order of precedence: an explicit ``splits_path``; the dataset's own splits file
    (``dataset.splits_path``); ``output_dir/splits.json`` from an earlier run; else new grouped
    ``folds``-fold splits. Whatever is used is saved to ``output_dir/splits.json`` when an
    ``output_dir`` is given (so a model folder records its splits); nothing is written into the dataset.

    Parameters
    ----------
    dataset : Dataset
    folds : int
        Folds of new splits (ignored when a splits file exists).
    seed : int
        Shuffling seed of new splits.
    output_dir : path, optional
        Model or plan folder to record the splits in.
    splits_path : path, optional
        A splits file to use instead of the dataset's.

    Returns
    -------
    list of dict
        ``[{"train": [...], "val": [...]}, ...]`` with case names.
    """
    names = [c.name for c in dataset.cases]
    recorded = Path(output_dir) / "splits.json" if output_dir is not None else None
    source = splits_path or getattr(dataset, "splits_path", None)
    if source is not None:
        splits = read_splits(source, names)
    elif recorded is not None and recorded.is_file():
        splits = read_splits(recorded, names)
    else:
        splits = make_splits(names, folds, seed)
    if recorded is not None:
        save_splits(splits, recorded)
    return splits
