"""Global-local enhancer: a whole-image tone map (:class:`GlobalIntensity`) refined locally by a DPE body."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dpe_monai.networks.dpenet import DPENet
from dpe_monai.networks.global_intensity import GlobalIntensity, apply_global_intensity

__all__ = ["GlobalLocalNet"]


class GlobalLocalNet(nn.Module):
    """Enhance in two steps: a per-image tone map from the whole image, then a local residual refinement.

    ``g = tone_map(x)`` (:class:`GlobalIntensity`, starts as a 0.5-99.5 % percentile stretch) and
    ``y = clip(g + 2 * (body([x, g]) - 0.5), 0, 1)`` where ``body`` is a :class:`DPENet` (residual blocks, gated
    skips) whose last convolution is zero-initialised, so an untrained model is exactly the percentile stretch and
    training only has to learn denoising, detail and the correction of the stretch.

    The tone map must come from the *whole* image. Callers that tile a large image (or enhance a volume slice by
    slice) compute it once with :meth:`estimate` and pass it to every tile as ``params``; the
    :class:`~dpe_monai.inference.Enhancer` does this.

    Shapes and values: ``(B, in_channels, *spatial)`` in [0, 1] -> ``(B, out_channels, *spatial)`` in [0, 1], any
    spatial size (the body pads to a multiple of 16 and crops back).

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels (1 grey or 3 RGB).
        out_channels: output channels (must equal ``in_channels``: the tone map is applied to the input).
        channels: feature depth per level of the DPE body.
        thumb: thumbnail side of the global branch.
        knots: segments of the global correction curve.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 3,
        channels: Sequence[int] = (32, 48, 64, 96, 128),
        thumb: int = 64,
        knots: int = 16,
    ) -> None:
        super().__init__()
        if in_channels != out_channels:
            raise ValueError(f"GlobalLocalNet needs in_channels == out_channels, got {in_channels}, {out_channels}.")
        self.spatial_dims = int(spatial_dims)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.global_branch = GlobalIntensity(in_channels=in_channels, thumb=thumb, knots=knots)
        self.body = DPENet(
            spatial_dims=spatial_dims,
            in_channels=2 * in_channels,
            out_channels=out_channels,
            channels=channels,
            global_residual=False,
        )
        last = self.body.tail.conv if hasattr(self.body.tail, "conv") else self.body.tail
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def estimate(self, x: torch.Tensor, relative: torch.Tensor | None = None) -> torch.Tensor:
        """Tone-map parameters ``(B, P)`` of whole images or volumes ``x`` (see :class:`GlobalIntensity`)."""
        return self.global_branch(x, relative=relative)

    def forward(
        self,
        x: torch.Tensor,
        params: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        relative: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Enhance ``x`` ``(B, C, *spatial)`` in [0, 1].

        Args:
            x: the image (or a tile or crop of it).
            params: tone-map parameters from :meth:`estimate` on the whole image; default: estimated from
                ``context``, else from ``x`` itself.
            context: :func:`~dpe_monai.networks.global_intensity.global_summary` of the whole image the crop
                ``x`` came from, ``(B, S)`` (``GlobalContextd`` in training).
            relative: ``(B,)`` the intensity convention flag (see :class:`GlobalIntensity`).
        """
        if params is None:
            params = self.global_branch(x, summary=context, relative=relative)
        g = apply_global_intensity(x, params.to(x.dtype))
        r = self.body(torch.cat([x, g], dim=1))
        return (g + 2.0 * (r - 0.5)).clamp(0.0, 1.0)
