"""Sampling weights that balance the modality groups (the packaged collection is mostly dermoscopy patches)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

__all__ = ["group_balanced_weights"]


def group_balanced_weights(items: Sequence[Mapping], key: str = "modality_group") -> list[float]:
    """Per-item weights so each value of ``items[i][key]`` is drawn equally often by a weighted sampler.

    Items without ``key`` form their own group. Weights sum to 1.
    """
    groups = [str(item.get(key, "")) for item in items]
    counts = Counter(groups)
    return [1.0 / (len(counts) * counts[g]) for g in groups]
