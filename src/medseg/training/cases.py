"""Which cases train and which validate."""

from __future__ import annotations

from typing import Any, Sequence

from medseg.errors import MedsegError

# --- case selection -----------------------------------------------------------------------------
def select_cases(dataset: Any, fold: int | str | None = None, val_cases: Sequence[str] | None = None,
                 seed: int = 0) -> tuple[list[str], list[str]]:
    """Training and validation case names.

    ``val_cases`` wins; else ``fold`` K picks split K of the dataset's own splits file or of grouped
    5-fold splits (:func:`medseg.datasets.splits.load_or_create_splits`: deterministic for a seed, so the
    folds of separate runs fit together); ``fold="all"`` or nothing trains on every case without
    validation.
    """
    names = [c.name for c in dataset.cases]
    if val_cases:
        unknown = sorted(set(val_cases) - set(names))
        if unknown:
            raise MedsegError(f"validation case(s) not in the dataset: {', '.join(unknown)}", dataset.root)
        train = [n for n in names if n not in set(val_cases)]
        return train, list(val_cases)
    if fold is None or str(fold) == "all":
        return names, []
    from medseg.datasets.splits import load_or_create_splits

    splits = load_or_create_splits(dataset, folds=5, seed=seed)
    try:
        k = int(fold)
    except ValueError:
        raise MedsegError(f"--fold must be a number or 'all', not '{fold}'") from None
    if not 0 <= k < len(splits):
        raise MedsegError(f"fold {k} does not exist; the splits have {len(splits)} fold(s)", dataset.splits_path)
    split = splits[k]
    missing = sorted(set(split["train"] + split["val"]) - set(names))
    if missing:
        raise MedsegError(f"splits name case(s) not in the dataset: {', '.join(missing[:5])}", dataset.splits_path)
    return list(split["train"]), list(split["val"])
