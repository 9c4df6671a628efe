"""``GlobalContext(d)``: the whole image's thumbnail, kept beside a training crop for a global-local network."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_tensor

from dpe_monai.contract import is_scan
from dpe_monai.networks.global_intensity import global_summary
from dpe_monai.transforms.preprocess import is_near_grey

__all__ = [
    "GlobalContext",
    "GlobalContextd",
    "GlobalContextD",
    "GlobalContextDict",
    "RelativeFlagd",
    "RelativeFlagD",
    "RelativeFlagDict",
]


class GlobalContext(Transform):
    """Whole-image statistics (:func:`~dpe_monai.networks.global_intensity.global_summary`) for a global branch.

    Put it after the degradation and before the random crop, so the network estimates the tone map of the image
    that was degraded, not of the crop (the crop alone cannot tell where the image's black and white points are).

    Args:
        thumb, n_quantiles: must match the network's global branch (defaults do).
    """

    def __init__(self, thumb: int = 64, n_quantiles: int = 33) -> None:
        self.thumb = int(thumb)
        self.n_quantiles = int(n_quantiles)

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        """``img``: a ``(C, H, W)`` image or a ``(C, H, W, D)`` volume (slices along the last axis, MONAI's layout)
        in [0, 1]. Returns a float32 ``(2 * n_quantiles + 31,)`` tensor (no meta): what a 2-D or 3-D
        ``GlobalLocalNet`` reads from the whole image or volume."""
        t = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
        if t.ndim not in (3, 4):
            raise ValueError(
                f"GlobalContext takes (C, H, W) images or (C, H, W, D) volumes, got shape {tuple(t.shape)}."
            )
        return global_summary(t[None], self.thumb, self.n_quantiles)[0]


class GlobalContextd(MapTransform):
    """Dictionary twin of :class:`GlobalContext`: writes the statistics of ``keys`` under ``context_keys``.

    Args:
        keys: images to summarise (e.g. the degraded ``"lq"``).
        context_keys: output keys; default ``f"{key}_context"``.
        thumb, n_quantiles: as in :class:`GlobalContext`.
    """

    def __init__(
        self,
        keys: KeysCollection,
        context_keys: KeysCollection | None = None,
        thumb: int = 64,
        n_quantiles: int = 33,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if context_keys is None:
            self.context_keys = [f"{k}_context" for k in self.keys]
        else:
            self.context_keys = [context_keys] if isinstance(context_keys, str) else list(context_keys)
        self.transform = GlobalContext(thumb, n_quantiles)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, out in self.key_iterator(d, self.context_keys):
            d[out] = self.transform(d[key])
        return d


class RelativeFlagd(MapTransform):
    """Write the network's route flag (``relative``) of an image windowed by ``IntensityWindowd(..., params_postfix=)``.

    ``1.0`` for a scan (:func:`dpe_monai.contract.is_scan`): the contract windowed it relative to itself (``rule``
    ``"percentile"``, ``"dicom"``, ``"minmax"``), or the clean image ``image_key`` is grey
    (:func:`~dpe_monai.transforms.is_near_grey`: any bit depth, so 8-bit grey exports too, and grey scans stored in
    colour). ``0.0`` for colour images under the absolute ``"container"`` rule (8-bit photographs). The
    CLI (:func:`~dpe_monai.inference.enhance_native`) and the benchmarks
    (:func:`~dpe_monai.evaluators.common.load_clean`) decide it the same way. See
    :class:`~dpe_monai.networks.GlobalLocalNet`.

    Args:
        keys: the window records (e.g. ``"image_window"``).
        flag_key: where to write the float32 scalar tensor.
        image_key: the *clean* image ``(C, *spatial)`` whose greyness counts (the simulator's output would carry
            per-channel noise); None, or absent from the data: the rule alone decides.
        allow_missing_keys: don't raise when a window record is missing (no flag is written then).
    """

    def __init__(
        self,
        keys: KeysCollection = "image_window",
        flag_key: str = "relative",
        image_key: str | None = "image",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.flag_key = flag_key
        self.image_key = image_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        grey = self.image_key is not None and self.image_key in d and is_near_grey(d[self.image_key])
        for key in self.key_iterator(d):
            d[self.flag_key] = torch.tensor(float(is_scan(d[key].get("rule"), grey)))
        return d


GlobalContextD = GlobalContextDict = GlobalContextd
RelativeFlagD = RelativeFlagDict = RelativeFlagd
