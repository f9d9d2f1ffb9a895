"""Summary statistics of per-case metric values, with a bootstrap confidence interval of the mean."""

from __future__ import annotations

import numpy as np


def summarize(values, n_bootstrap: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Mean, std, median and a percentile-bootstrap CI of the mean, over the **finite** values.

    ``inf`` (a surface distance with an empty mask) and ``nan`` (an undefined metric) cannot enter a
    mean; they are counted in ``n_inf`` and ``n_nan`` instead, next to ``n`` (all cases) and
    ``n_finite``. With no finite value every statistic is ``nan``.

    Examples
    --------
    >>> s = summarize([1.0, 2.0, 3.0, float("inf")])
    >>> s["mean"], s["median"], s["n_finite"], s["n_inf"]
    (2.0, 2.0, 3, 1)
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    finite = values[np.isfinite(values)]
    out = {
        "n": int(values.size),
        "n_finite": int(finite.size),
        "n_inf": int(np.isinf(values).sum()),
        "n_nan": int(np.isnan(values).sum()),
    }
    if finite.size == 0:
        return {**out, "mean": float("nan"), "std": float("nan"), "median": float("nan"),
                "ci_low": float("nan"), "ci_high": float("nan")}
    # A seeded generator keeps the CI reproducible run to run (no global random state).
    rng = np.random.default_rng(seed)
    means = finite[rng.integers(0, finite.size, size=(n_bootstrap, finite.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    return {
        **out,
        "mean": float(finite.mean()),
        "std": float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
        "median": float(np.median(finite)),
        "ci_low": float(np.quantile(means, alpha)),
        "ci_high": float(np.quantile(means, 1.0 - alpha)),
    }
