"""A learned residual on non-local means for scans: what NLM misses, learned from pairs, in the window's units.

Non-local means at the image's noise level is the scan path's denoiser (:class:`~dpe_monai.networks.NonLocalMeans`).
It leaves residual noise in flat tissue, rounds fine edges, and keeps the positive bias of noise clipped at black
(a background raised by ``clip(0 + n)``). :class:`ScanRefiner` learns a bounded correction of its output from the
noisy input, the NLM output and the noise level, like IRCNN's dilated denoiser (Zhang et al., CVPR 2017) but as a
residual on NLM, so a zero-initialised refiner is NLM exactly.

Everything runs one channel at a time (a grey image replicated to RGB, or with per-channel noise, is three grey
images) in the units of the *noisy input's* 0.5-99.5 % window ``[lo, hi]`` (so one network serves a dark
Algorithm 1 image and a well-exposed scan alike): ``u = (v - lo) / max(hi - lo, min_span)``. With
``channels="mean"`` a multi-channel image is refined once, on its channel mean (at that mean's own noise level), and
the one correction is added to every channel: the refiner then adds no chroma (a grey image whose channels carry
independent noise stays as grey as its NLM output).
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv
from torch import nn

from dpe_monai.networks.nonlocal_means import noise_sigma, strided_sorted
from dpe_monai.networks.tracing import tracing

__all__ = ["ScanRefiner", "window_of"]


def window_of(x: torch.Tensor, lower: float = 0.005, upper: float = 0.995, samples: int = 65536) -> torch.Tensor:
    """The ``lower``/``upper`` quantiles of each image of ``x`` ``(B, C, *spatial)`` over all its values (strided
    to about ``samples``), ``(B, 2)``: the contract's percentile window, read on the noisy input."""
    flat = strided_sorted(x.float().reshape(x.shape[0], -1), samples)
    # the indices int(q * (n - 1)) as tensor arithmetic in float64 (the same floor as Python's), so an export keeps
    # them symbolic in the image size instead of freezing the traced size's (the ONNX scan path was wrong elsewhere)
    q = torch.tensor([lower, upper], dtype=torch.float64, device=flat.device)
    idx = (q * (flat.shape[1] - 1)).floor().long()
    return flat.index_select(1, idx)


class ScanRefiner(nn.Module):
    """``refined = d + span * bound * tanh(net([u_d, u_x - u_d, sigma / span]))`` per channel.

    Shapes and values: ``x`` (noisy) and ``d`` (its NLM output) ``(B, C, *spatial)`` in [0, 1], ``sigma`` ``(B,)``
    in the same units (the level NLM ran at) -> ``(B, C, *spatial)`` in [0, 1]. Any size; 2-D and 3-D.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the image (each refined on its own; the weights are shared).
        out_channels: must equal ``in_channels``.
        features: feature channels of the dilated body.
        dilations: one 3x3 convolution per entry (IRCNN's 1, 2, 3, 4, 3, 2, 1: a 33-pixel field of view).
        bound: largest correction, in units of the window's span.
        min_span: the window's span is at least this (a flat image is not blown up).
        channels: ``"each"``: every channel refined on its own; ``"mean"``: one correction, learned on the channel
            mean at its own noise level (:func:`~dpe_monai.networks.nonlocal_means.noise_sigma`), added to every
            channel, so the refiner adds no colour.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        features: int = 32,
        dilations: tuple[int, ...] = (1, 2, 3, 4, 3, 2, 1),
        bound: float = 0.25,
        min_span: float = 0.05,
        channels: str = "each",
    ) -> None:
        super().__init__()
        if in_channels != out_channels:
            raise ValueError(f"ScanRefiner needs in_channels == out_channels, got {in_channels}, {out_channels}.")
        if channels not in ("each", "mean"):
            raise ValueError(f"channels must be 'each' or 'mean', got {channels!r}.")
        self.channels = channels
        self.spatial_dims = int(spatial_dims)
        self.bound = float(bound)
        self.min_span = float(min_span)
        layers: list[nn.Module] = []
        ch = 3
        for d in dilations[:-1]:
            layers.append(
                Convolution(spatial_dims, ch, features, kernel_size=3, dilation=d, act="relu", norm=None, bias=True)
            )
            ch = features
        self.body = nn.Sequential(*layers)
        for m in self.body.modules():  # He init: PyTorch's default shrinks the signal through a deep ReLU stack
            if isinstance(m, nn.modules.conv._ConvNd):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        d = dilations[-1]
        self.head = Conv[Conv.CONV, spatial_dims](ch, 1, kernel_size=3, dilation=d, padding=d)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(
        self, x: torch.Tensor, d: torch.Tensor, sigma: torch.Tensor, window: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Refine ``d`` (NLM of ``x``). ``window`` ``(B, 2)``: the normalising window (default: :func:`window_of`
        ``x``; pass the whole image's when ``x`` is a tile or a crop)."""
        if window is None:
            window = window_of(x)
        if x.shape[1] > 1 and x.device.type != "meta" and not tracing():
            if bool((x == x[:, :1]).all()) and bool((d == d[:, :1]).all()):
                # grey replicated to RGB (every scan): one channel refined, as NonLocalMeans denoises one
                return self._refine(x[:, :1], d[:, :1], sigma, window).expand_as(x)
        if self.channels == "mean" and x.shape[1] > 1:
            xm, dm = x.mean(dim=1, keepdim=True), d.mean(dim=1, keepdim=True)
            level = noise_sigma(xm).to(sigma.dtype)
            # a grey image replicated to RGB keeps the level it was given, as the shortcut above does (an export
            # takes this branch for every image; the channel mean's strided sample differs on large images)
            level = torch.where((x == x[:, :1]).flatten(1).all(dim=1), sigma.to(level.dtype), level)
            correction = self._refine(xm, dm, level, window) - dm
            return (d + correction).clamp(0.0, 1.0)
        return self._refine(x, d, sigma, window)

    def _refine(self, x: torch.Tensor, d: torch.Tensor, sigma: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[0], x.shape[1]
        view = [b, 1] + [1] * (x.ndim - 2)
        lo = window[:, 0].to(x.dtype).reshape(view)
        span = (window[:, 1] - window[:, 0]).to(x.dtype).clamp_min(self.min_span).reshape(view)
        s = (sigma.to(x.dtype).reshape(view) / span).expand_as(x)
        ux, ud = (x - lo) / span, (d - lo) / span
        spatial = list(x.shape[2:])
        stack = torch.stack([ud, ux - ud, s], dim=2).reshape([b * c, 3] + spatial)
        r = torch.tanh(self.head(self.body(stack))).reshape([b, c] + spatial)
        return (d + span * self.bound * r).clamp(0.0, 1.0)
