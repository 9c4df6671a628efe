"""The verdict of a quality summary: a model against the best simple method, and the gap to the oracle it closes.

One place for the rule that the benchmark report (``benchmarks/RESULTS.md``) and the demo (``make demo``) both
print: the model is compared with the **best** classical method of each column (never a convenient one), and the
oracle ceiling (:class:`~dpe_monai.baselines.OracleEnhancer`, which knows the true degradation) says how much room
was left: ``gap closed = (model - best) / (oracle - best)``; 1 reaches the ceiling, 0 ties the best simple method,
negative loses to it.

A summary is what :func:`dpe_monai.evaluators.quality.summarise` returns: ``{method: {group | "pooled" |
"average": ...}}``; a column is a group name, ``"pooled"`` (all images) or ``"average"`` (the mean of the group means
over groups with enough images, so no group of one image decides it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dpe_monai.markdown import markdown_table

__all__ = ["LOWER_IS_BETTER", "best_of", "column_mean", "gap_closed", "is_missing", "verdict_table"]

LOWER_IS_BETTER = {"psnr": False, "ssim": False, "delta_e": True, "feature_distance": True}
_NAMES = {"psnr": "PSNR (dB)", "ssim": "SSIM", "delta_e": "DeltaE", "feature_distance": "feature distance"}


def is_missing(value: Any) -> bool:
    """None or NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def column_mean(summary: Mapping[str, Any], method: str, column: str, metric: str) -> Any:
    """The mean of ``metric`` for ``method`` in ``column`` (a group, ``"pooled"`` or ``"average"``); None if absent."""
    entry = summary[method]
    if column == "average":
        return entry["average"].get(metric)
    stats = entry.get(column, {}).get(metric, {})
    return stats.get("mean") if isinstance(stats, Mapping) else stats


def best_of(summary: Mapping[str, Any], methods: Iterable[str], column: str, metric: str) -> str | None:
    """The method among ``methods`` (those present in ``summary``) with the best ``metric`` in ``column``."""
    values = {m: column_mean(summary, m, column, metric) for m in methods if m in summary}
    values = {m: v for m, v in values.items() if not is_missing(v)}
    if not values:
        return None
    pick = min if LOWER_IS_BETTER[metric] else max
    return pick(values, key=values.get)


def gap_closed(
    summary: Mapping[str, Any],
    column: str,
    metric: str,
    classical: Iterable[str],
    method: str = "dpe",
    ceiling: str = "oracle",
) -> dict[str, Any] | None:
    """``method`` against the best of ``classical`` in one column, with the ceiling's gap.

    Returns:
        ``{"best", "best_value", "oracle", "value", "fraction", "wins"}`` (``fraction`` NaN where the best classical
        method beats the oracle: no gap to close; ``wins``: ``method`` strictly better than the best classical
        method), or None when a value is missing (the ceiling may be absent: then ``oracle`` and ``fraction`` are
        NaN).
    """
    if method not in summary:
        return None
    best = best_of(summary, classical, column, metric)
    if best is None:
        return None
    b, m = column_mean(summary, best, column, metric), column_mean(summary, method, column, metric)
    o = column_mean(summary, ceiling, column, metric) if ceiling in summary else math.nan
    if is_missing(b) or is_missing(m):
        return None
    lower = LOWER_IS_BETTER[metric]
    room = not is_missing(o) and ((o < b) if lower else (o > b))
    fraction = (m - b) / (o - b) if room else math.nan
    wins = (m < b) if lower else (m > b)
    return {"best": best, "best_value": b, "oracle": o, "value": m, "fraction": fraction, "wins": wins}


def verdict_table(
    summary: Mapping[str, Any],
    classical: Sequence[str],
    method: str = "dpe",
    columns: Sequence[str] = ("pooled", "average"),
    metrics: Sequence[str] = ("psnr", "delta_e"),
    labels: Mapping[str, str] | None = None,
) -> str:
    """Markdown: per metric and column, ``method`` vs the best classical method, the oracle and the gap closed."""
    labels = dict(labels or {})
    rows = []
    for metric in metrics:
        for column in columns:
            g = gap_closed(summary, column, metric, classical, method)
            if g is None:
                continue
            oracle = "-" if is_missing(g["oracle"]) else f"{g['oracle']:.2f}"
            fraction = "n/a" if is_missing(g["fraction"]) else f"{g['fraction']:.2f}"
            rows.append(
                [
                    _NAMES.get(metric, metric),
                    {"pooled": "all images (pooled)", "average": "mean of group means"}.get(column, column),
                    f"{g['value']:.2f}",
                    f"{labels.get(g['best'], g['best'])} {g['best_value']:.2f}",
                    "**wins**" if g["wins"] else "loses",
                    oracle,
                    fraction,
                ]
            )
    head = [
        "metric",
        "column",
        labels.get(method, method),
        "best simple method",
        "verdict",
        "oracle (unreachable)",
        "gap closed",
    ]
    return markdown_table(head, rows)
