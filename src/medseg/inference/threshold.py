"""Moved to :mod:`medseg.planning.threshold` (the decision-threshold rule chooses with it after training);
kept as an alias for ``medseg threshold`` and existing callers."""

from medseg.planning.threshold import best_threshold, score_at  # noqa: F401
