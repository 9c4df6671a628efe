"""A bound on how far a local refinement may darken whole regions of the image it refines.

The colour path's body (a DPE residual on top of the whole-image tone map, :class:`GlobalLocalNet`) learned its
residual on dermoscopy, where dark regions are lesions and a regional darkening reproduces them. On a dark colour
image of another kind (a real under-exposed fundus photograph) the same prior blackens whole regions of retina
(``benchmarks/results/colour_conventions.json``): it erases structure. On its own test images the body's residual
is small and local; its regional mean rarely darkens the tone-mapped image by more than a few hundredths.

This module attenuates the residual where it does more: the residual's channel mean is averaged over cells of
``cell`` pixels (a regional tone change, the tone map's job), each cell gets the weight
``clip((m + t1) / (t1 - t0), 0, 1)`` (``m`` its mean: 1 down to a darkening of ``t0``, 0 from ``t1``), the weights are
eroded by one cell (the edges of a darkened region go too) and interpolated back to full resolution. Brightening and
texture are untouched; where the weight is 0 the output is the tone map itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Pool
from torch import nn

__all__ = ["RegionalLimit"]


class RegionalLimit(nn.Module):
    """Attenuate a residual ``r`` ``(B, C, *spatial)`` in [-1, 1] where its regional mean darkens by more than ``t0``.

    Args:
        spatial_dims: 2 or 3.
        limit: ``(t0, t1)``, ``0 <= t0 < t1``: full weight down to a regional darkening of ``t0``, none from ``t1``
            (in [0, 1] image units).
        cell: side of the cells the regional mean is taken over, in pixels.

    Shapes: ``(B, C, *spatial)`` -> the same; the weight is shared by all channels.
    """

    def __init__(self, spatial_dims: int, limit: tuple[float, float], cell: int = 16) -> None:
        super().__init__()
        t0, t1 = float(limit[0]), float(limit[1])
        if not 0.0 <= t0 < t1:
            raise ValueError(f"regional limit must be (t0, t1) with 0 <= t0 < t1, got {limit!r}.")
        self.t0, self.t1 = t0, t1
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"
        self.mean = Pool[Pool.AVG, spatial_dims](kernel_size=cell, stride=cell, ceil_mode=True)
        self.erode = Pool[Pool.MAX, spatial_dims](kernel_size=3, stride=1, padding=1)

    def weight(self, r: torch.Tensor) -> torch.Tensor:
        """The weight ``(B, 1, *spatial)`` in [0, 1] of residual ``r``."""
        cells = self.mean(r.mean(dim=1, keepdim=True))
        w = ((cells + self.t1) / (self.t1 - self.t0)).clamp(0.0, 1.0)
        w = -self.erode(-w)  # a cell next to a darkened one is attenuated too
        return F.interpolate(w, size=r.shape[2:], mode=self.mode, align_corners=False)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return r * self.weight(r)
