"""Sampling weights that balance the modality groups (the packaged collection is mostly dermoscopy patches)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

__all__ = ["group_balanced_weights"]


def group_balanced_weights(
    items: Sequence[Mapping], key: str = "modality_group", group_weights: Mapping[str, float] | None = None
) -> list[float]:
    """Per-item weights so each value of ``items[i][key]`` is drawn equally often by a weighted sampler.

    Items without ``key`` form their own group. ``group_weights`` (group -> relative weight, default 1) draws some
    groups more often than others, e.g. ``{"radiology": 2}`` twice as often. Weights sum to 1.
    """
    groups = [str(item.get(key, "")) for item in items]
    counts = Counter(groups)
    rel = {g: float((group_weights or {}).get(g, 1.0)) for g in counts}
    total = sum(rel.values())
    return [rel[g] / (total * counts[g]) for g in groups]
