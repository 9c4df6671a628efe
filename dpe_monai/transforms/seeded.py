"""Deterministic, per-item degradation for validation, test and demo sets (cacheable by MONAI datasets)."""

from __future__ import annotations

import zlib
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

from monai.config import KeysCollection
from monai.transforms import MapTransform

from dpe_monai.transforms.low_quality import RandLowQualityd

__all__ = ["SeededLowQualityd", "SeededLowQualityD", "SeededLowQualityDict"]


class SeededLowQualityd(MapTransform):
    """:class:`RandLowQualityd` re-seeded for every item from ``seed`` and the item's identity.

    The same item always gets the same degradation, whatever the order, epoch, worker count or cache, so
    validation and benchmark numbers are reproducible. It is deliberately *not* a ``Randomizable`` transform,
    so ``CacheDataset`` caches its output.

    Args:
        keys: keys of the clean images.
        seed: global seed.
        id_key: item key holding a stable identifier; default: the last three parts of the first key's
            ``meta["filename_or_obj"]`` (e.g. ``radiology/pydicom_data/x.png``), so the draw does not depend on
            where the collection lives.
        kwargs: forwarded to :class:`RandLowQualityd` (``lq_keys``, ``params_key``, ``mode``, factors...).
    """

    def __init__(
        self,
        keys: KeysCollection,
        seed: int = 0,
        id_key: str | None = None,
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.seed = int(seed)
        self.id_key = id_key
        self.degrader = RandLowQualityd(keys, allow_missing_keys=allow_missing_keys, **kwargs)

    def _identifier(self, d: Mapping[Hashable, Any]) -> str:
        if self.id_key is not None:
            return str(d[self.id_key])
        img = d[self.first_key(d)]
        name = getattr(img, "meta", {}).get("filename_or_obj")
        if name is None:
            raise ValueError("SeededLowQualityd needs `id_key` or images loaded with meta (filename_or_obj)")
        return "/".join(Path(str(name)).parts[-3:])

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        item_seed = (self.seed * 1_000_003 + zlib.crc32(self._identifier(d).encode())) % (2**32)
        self.degrader.set_random_state(seed=item_seed)
        return self.degrader(d)


SeededLowQualityD = SeededLowQualityDict = SeededLowQualityd
