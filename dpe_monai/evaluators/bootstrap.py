"""Bootstrap confidence intervals over test items (slices), for scores, recoveries and set-level metrics (mAP)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["bootstrap_ci", "bootstrap_indices", "interval", "mean_of"]


def bootstrap_indices(n: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` resampled item indices (with replacement), seeded."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float],
    n: int,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """Percentile bootstrap interval of ``statistic`` over ``n`` items.

    Args:
        statistic: maps an index array (a resample of ``range(n)``) to a number; it sees the full ``arange(n)``
            for the point estimate. It may return NaN (e.g. a recovery whose gap vanished); those resamples are
            left out and counted.
        n: number of items.
        n_boot: resamples.
        seed: seed of the resampling (the same seed resamples the same items for every input, so intervals of
            different enhancers are paired).
        level: coverage of the interval.

    Returns:
        ``{"value", "low", "high", "n", "n_boot", "n_nan"}``.
    """
    if n == 0:
        return {"value": math.nan, "low": math.nan, "high": math.nan, "n": 0, "n_boot": n_boot, "n_nan": n_boot}
    value = float(statistic(np.arange(n)))
    draws = np.array([statistic(idx) for idx in bootstrap_indices(n, n_boot, seed)], dtype=np.float64)
    return interval(value, draws, n, level)


def interval(value: float, draws: np.ndarray, n: int, level: float = 0.95) -> dict[str, float]:
    """:func:`bootstrap_ci`'s dict from a point estimate and precomputed resample values (NaN draws left out)."""
    draws = np.asarray(draws, dtype=np.float64)
    finite = draws[np.isfinite(draws)]
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha]) if finite.size else (math.nan, math.nan)
    return {
        "value": value,
        "low": float(low),
        "high": float(high),
        "n": int(n),
        "n_boot": int(draws.size),
        "n_nan": int(draws.size - finite.size),
    }


def mean_of(values: Sequence[float]) -> Callable[[np.ndarray], float]:
    """Statistic for :func:`bootstrap_ci`: the mean of ``values`` over the resampled items."""
    arr = np.asarray(values, dtype=np.float64)
    return lambda idx: float(arr[idx].mean())
