"""Input preparation for the RGB DPE model: grayscale -> RGB and a minimum spatial size."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Resize, Transform
from monai.utils import convert_to_dst_type, convert_to_tensor

__all__ = [
    "ToRGB",
    "ToRGBd",
    "ToRGBD",
    "ToRGBDict",
    "EnsureMinSize",
    "EnsureMinSized",
    "EnsureMinSizeD",
    "EnsureMinSizeDict",
    "grey_mask",
    "is_grey",
    "is_near_grey",
]

#: :func:`is_near_grey`'s tolerances in [0, 1] units: the mean and the 99th percentile of the channel spread.
NEAR_GREY_MEAN, NEAR_GREY_P99 = 3.0 / 255.0, 10.0 / 255.0


def grey_mask(x: torch.Tensor) -> torch.Tensor:
    """Which items of a batch ``(B, C, *spatial)`` are grey: one channel, or three exactly equal channels.

    Returns:
        ``(B,)`` bool tensor on ``x``'s device.
    """
    b, c = x.shape[:2]
    if c == 1:
        return torch.ones(b, dtype=torch.bool, device=x.device)
    if c != 3:
        return torch.zeros(b, dtype=torch.bool, device=x.device)
    return (x[:, 0] == x[:, 1]).flatten(1).all(1) & (x[:, 1] == x[:, 2]).flatten(1).all(1)


def is_grey(img: NdarrayOrTensor) -> bool:
    """Whether one channel-first image ``(C, *spatial)`` (array or tensor) is grey, as :func:`grey_mask` decides."""
    return bool(grey_mask(torch.as_tensor(img)[None])[0])


def is_near_grey(img: NdarrayOrTensor, mean_tol: float = NEAR_GREY_MEAN, p99_tol: float = NEAR_GREY_P99) -> bool:
    """Whether ``img`` ``(C, *spatial)`` in [0, 1] is grey up to the chroma noise of lossy colour storage.

    A grey scan saved as an RGB JPEG (or through a colour video or screen capture) has channels that differ by a few
    levels. It counts as grey when the per-pixel channel spread (max - min) has a mean <= ``mean_tol`` and a 99th
    percentile <= ``p99_tol`` (3 and 10 levels of 255). Stained slides, dermoscopy and photographs spread by tens of
    levels. Exactly grey images (:func:`is_grey`) always count.
    """
    if is_grey(img):
        return True
    x = torch.as_tensor(img).float()
    if x.shape[0] != 3:
        return False
    spread = (x.amax(0) - x.amin(0)).flatten()
    if spread.numel() > 1_000_000:  # a strided sample keeps big images fast
        spread = spread[:: spread.numel() // 500_000]
    return bool(spread.mean() <= mean_tol) and bool(torch.quantile(spread, 0.99) <= p99_tol)


class ToRGB(Transform):
    """Replicate a 1-channel image to 3 channels; 3-channel images pass through; others raise.

    Args:
        drop_alpha: drop the 4th channel of an RGBA image instead of raising.
    """

    def __init__(self, drop_alpha: bool = False) -> None:
        self.drop_alpha = drop_alpha

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """``img``: channel-first ``(C, *spatial)``; returns ``(3, *spatial)``."""
        c = img.shape[0]
        if c == 3:
            return img
        if c == 1:
            out = convert_to_tensor(img, track_meta=True).repeat(3, *([1] * (img.ndim - 1)))
            return convert_to_dst_type(out, img)[0]
        if c == 4 and self.drop_alpha:
            return img[:3]
        raise ValueError(f"expected 1 or 3 channels, got {c} (shape {tuple(img.shape)})")


class EnsureMinSize(Transform):
    """Upsample (bilinear, aspect kept) images whose smallest spatial side is below ``min_size``.

    Larger images pass through unchanged, so full-resolution noise statistics are kept for random crops; small
    patches (e.g. 32x32 dermoscopy) are resized up, as the paper resized its training images. A MetaTensor is
    resized by MONAI's ``Resize``: its affine follows (the voxel spacing shrinks), and the resize is recorded in its
    ``applied_operations``.

    Args:
        min_size: the smallest allowed spatial side.
    """

    def __init__(self, min_size: int) -> None:
        self.min_size = int(min_size)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """``img``: ``(C, H, W)`` or ``(C, H, W, D)``; returns the same or an upsampled copy."""
        spatial = img.shape[1:]
        smallest = min(spatial)
        if smallest >= self.min_size:
            return img
        scale = self.min_size / smallest
        size = [max(self.min_size, round(s * scale)) for s in spatial]
        mode = "bilinear" if len(spatial) == 2 else "trilinear"
        if isinstance(img, MetaTensor):  # MONAI's Resize: the same interpolation, and the affine and the inverse
            return Resize(size, mode=mode, align_corners=False, anti_aliasing=False, dtype=torch.float32)(img)
        t = convert_to_tensor(img, track_meta=False, dtype=torch.float32)[None]
        out = F.interpolate(t, size=size, mode=mode, align_corners=False)[0]
        return convert_to_dst_type(out, img, dtype=torch.float32)[0]


class _Dict(MapTransform):
    transform: Transform

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


class ToRGBd(_Dict):
    """Dictionary twin of :class:`ToRGB`.

    Args:
        keys: keys of the images to convert (``(C, *spatial)``, C = 1 or 3, or 4 with ``drop_alpha``; 3 out).
        drop_alpha: as in :class:`ToRGB`.
        allow_missing_keys: don't raise if a key is missing.
    """

    def __init__(self, keys: KeysCollection, drop_alpha: bool = False, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = ToRGB(drop_alpha)


class EnsureMinSized(_Dict):
    """Dictionary twin of :class:`EnsureMinSize`.

    Args:
        keys: keys of the images to upsample (``(C, H, W)`` or ``(C, H, W, D)``).
        min_size: as in :class:`EnsureMinSize`.
        allow_missing_keys: don't raise if a key is missing.
    """

    def __init__(self, keys: KeysCollection, min_size: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = EnsureMinSize(min_size)


ToRGBD = ToRGBDict = ToRGBd
EnsureMinSizeD = EnsureMinSizeDict = EnsureMinSized
