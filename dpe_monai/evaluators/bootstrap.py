"""Bootstrap confidence intervals over test items (slices), for scores, recoveries and set-level metrics (mAP)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from dpe_monai.evaluators.recovery import recovery

__all__ = ["bootstrap_ci", "bootstrap_indices", "interval", "mean_of", "paired_recovery"]


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


def paired_recovery(
    score: Callable[[np.ndarray], Mapping[str, float]],
    n: int,
    inputs: Sequence[str],
    baselines: Sequence[str] = (),
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Scores and recoveries of every input with paired bootstrap intervals over the ``n`` test items, and each
    enhancer's recovery minus the best baseline's.

    Every resample of the items is scored once for every input, so the intervals are paired: a difference between
    two enhancers is judged on the same resamples, not from two independent intervals.

    Args:
        score: index array (a resample of ``range(n)``) -> ``{input: score}`` (higher is better: Dice, AP).
        n: number of test items.
        inputs: the inputs, ``"degraded"`` and ``"clean"`` among them.
        baselines: inputs to compare against (e.g. the classical methods); the one with the highest point recovery
            is "best".
        n_boot: resamples.
        seed: seed of the resampling.

    Returns:
        ``{"scores": {input: ci}, "recovery": {enhancer: ci}, "versus_best": {"best", "difference": {enhancer: ci}}
        or None}`` with :func:`interval` dicts.
    """
    enhanced = [k for k in inputs if k not in ("degraded", "clean")]
    point = score(np.arange(n))
    draws = [score(idx) for idx in bootstrap_indices(n, n_boot, seed)]
    out: dict[str, Any] = {"scores": {k: interval(point[k], np.array([d[k] for d in draws]), n) for k in inputs}}
    rec_point = {k: recovery(point[k], point["degraded"], point["clean"]) for k in enhanced}
    rec_draws = {k: np.array([recovery(d[k], d["degraded"], d["clean"]) for d in draws]) for k in enhanced}
    out["recovery"] = {k: interval(rec_point[k], rec_draws[k], n) for k in enhanced}
    ranked = [k for k in baselines if k in rec_point and np.isfinite(rec_point[k])]
    out["versus_best"] = None
    if ranked:
        best = max(ranked, key=lambda k: rec_point[k])
        diff = {k: interval(rec_point[k] - rec_point[best], rec_draws[k] - rec_draws[best], n) for k in enhanced}
        out["versus_best"] = {"best": best, "difference": {k: v for k, v in diff.items() if k != best}}
    return out
