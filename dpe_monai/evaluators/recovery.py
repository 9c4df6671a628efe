"""Downstream recovery: how much of the gap between degraded and clean inputs an enhancement closes."""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["recovery", "recovery_table"]


def recovery(enhanced: float, degraded: float, clean: float, min_gap: float = 1e-3) -> float:
    """``(score_enh - score_LQ) / (score_clean - score_LQ)`` for a higher-is-better score (Dice, mAP).

    1 means the enhanced input scores like the clean one, 0 like the degraded one; negative values mean the
    enhancement hurts, values above 1 that it beats the clean input. NaN when the degradation costs less than
    ``min_gap``, including when the degraded input scores *better* than the clean one (the ratio is meaningless
    then, and its sign would flip), or any score is NaN.

    Args:
        enhanced: score on enhanced inputs.
        degraded: score on degraded inputs.
        clean: score on clean inputs.
        min_gap: smallest ``clean - degraded`` for which a ratio is reported.
    """
    if any(isinstance(v, float) and math.isnan(v) for v in (enhanced, degraded, clean)):
        return math.nan
    gap = clean - degraded
    if not gap >= min_gap:
        return math.nan
    return float((enhanced - degraded) / gap)


def recovery_table(
    scores: Mapping[str, float], degraded_key: str = "degraded", clean_key: str = "clean", min_gap: float = 1e-3
) -> dict[str, float]:
    """Recovery of every input in ``scores`` other than the degraded and clean ones.

    Args:
        scores: input name -> score (must hold ``degraded_key`` and ``clean_key``).
        degraded_key: name of the degraded input.
        clean_key: name of the clean input.
        min_gap: see :func:`recovery`.
    """
    lq, hq = scores[degraded_key], scores[clean_key]
    return {k: recovery(v, lq, hq, min_gap) for k, v in scores.items() if k not in (degraded_key, clean_key)}
