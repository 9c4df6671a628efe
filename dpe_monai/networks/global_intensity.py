"""Global intensity branch: a per-image tone map estimated from a thumbnail of the *whole* image.

Algorithm 1 of the DPE paper (and a badly exposed acquisition) is mostly one global intensity map per image. A
convolutional body with a bounded receptive field cannot see the image's black and white points; this branch can.
It starts as a robust percentile stretch (the strongest simple method) and learns a bounded correction on top:

1. base window: the ``lower``/``upper`` quantiles over the body of the full-resolution grey values (strided to
   about ``samples``), i.e. the intensity contract's percentile window (:mod:`dpe_monai.contract`); with
   ``window="channels"`` a colour image's window is taken over all its channel values instead (auto-levels');
2. features: ``n_quantiles`` quantiles of the full-resolution values and of a denoised thumbnail (2x average
   pooled, resized to ``thumb`` per side), both normalised by the base window, ``log`` of the window width and of
   the mean absolute neighbour difference (a noise level);
3. a small MLP predicts (a) a shift of the window centre and a log scale of its width (so the black and white
   points can move wherever the training targets' convention puts them, e.g. the 0..255 range of photographs)
   and (b) ``knots`` positive increments of a monotone piecewise-linear curve on [0, 1]. Its last layer is
   zero-initialised, so an untrained branch is exactly the percentile stretch.

Everything is static-shape tensor algebra (sort, gather, linear), so the branch scripts and exports to ONNX.
Ideas from IAT (a global branch predicting a few colour/gamma parameters) and CSRNet/3D-LUT (a global curve).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dpe_monai.networks.nonlocal_means import noise_sigma
from dpe_monai.networks.tracing import tracing

__all__ = ["GlobalIntensity", "apply_global_intensity", "global_summary", "grey_thumbnail"]


def grey_thumbnail(x: torch.Tensor, thumb: int = 64) -> torch.Tensor:
    """The global branch's view of whole 2-D images: ``(B, C, H, W)`` -> ``(B, 1, thumb, thumb)`` grey thumbnails.

    The channel mean, 2x average-pooled when the image is at least ``2 * thumb`` on its short side (halves the
    noise), then bilinearly resized. A thumbnail passed through again comes back unchanged, so a training pipeline
    can precompute it from the whole image (``GlobalContextd``) and pass it as the network's ``context``.
    """
    grey = x.float().mean(dim=1, keepdim=True)
    if tracing():
        # symbolic height and width (ONNX, torch.export): the same rule as data, not as a Python branch, or the
        # exporter would bake in the example's side of it
        plain = F.interpolate(grey, size=(thumb, thumb), mode="bilinear", align_corners=False)
        pooled = F.interpolate(F.avg_pool2d(grey, 2), size=(thumb, thumb), mode="bilinear", align_corners=False)
        short = torch.minimum(torch.scalar_tensor(grey.shape[-2]), torch.scalar_tensor(grey.shape[-1]))
        return torch.where(short >= 2 * thumb, pooled, plain)
    if grey.shape[-2] == thumb and grey.shape[-1] == thumb:
        return grey
    if min(grey.shape[-2:]) >= 2 * thumb:
        grey = F.avg_pool2d(grey, 2)
    return F.interpolate(grey, size=(thumb, thumb), mode="bilinear", align_corners=False)


def apply_global_intensity(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Map ``x`` through per-image tone maps.

    Args:
        x: ``(B, C, *spatial)`` image in [0, 1].
        params: ``(B or 1, 2 + K + 1)``: ``lo``, ``hi`` (black/white point in ``x``'s units) then the ``K + 1``
            cumulative knot values of a monotone curve from 0 to 1.

    Returns:
        ``curve(clip((x - lo) / (hi - lo), 0, 1))``, same shape as ``x``, in [0, 1].
    """
    b = x.shape[0]
    if params.shape[0] != b:
        params = params.expand(b, -1)
    lo, hi, cum = params[:, 0], params[:, 1], params[:, 2:]
    k = cum.shape[1] - 1
    view = [b] + [1] * (x.ndim - 1)
    s = ((x - lo.view(view)) / (hi - lo).clamp_min(1e-6).view(view)).clamp(0.0, 1.0)
    t = s.reshape(b, -1) * k
    idx = t.floor().clamp(0, k - 1)
    frac = t - idx
    idx = idx.long()
    left = torch.gather(cum, 1, idx)
    right = torch.gather(cum, 1, idx + 1)
    return (left + frac * (right - left)).reshape(x.shape)


def _grey_slices(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> itself; a ``(B, C, H, W, D)`` volume -> up to 16 evenly spaced slices ``(B*S, C, H, W)``."""
    if x.ndim == 5:
        step = max(1, x.shape[-1] // 16)
        x = x[..., ::step].movedim(-1, 1).reshape(-1, x.shape[1], x.shape[2], x.shape[3])
    return x


def global_summary(
    x: torch.Tensor,
    thumb: int = 64,
    n_quantiles: int = 33,
    lower: float = 0.005,
    upper: float = 0.995,
    samples: int = 65536,
    channel_window: bool = True,
) -> torch.Tensor:
    """Parameter-free statistics of whole images that the global branch reads: ``(B, 2 * n_quantiles + 3 + 28)``.

    ``[q_lo, q_hi, full quantiles (n), thumbnail quantiles (n), noise, colour (25), c_lo, c_hi, sigma]``:
    ``q_lo``/``q_hi`` are the ``lower``/``upper`` quantiles over the body (values above the minimum when they are
    >= 1 %) of the full-resolution grey values (strided to about ``samples``), i.e. the intensity contract's
    percentile window (:mod:`dpe_monai.contract`); the quantile vectors (evenly spaced over the body for full
    resolution, over all values for the 2x-pooled ``thumb``-side thumbnail) and the noise level (mean absolute
    vertical neighbour difference) are in raw [0, 1] units. Colour: 7 quantiles (5 %, 20 %, ..., 95 %) of each of
    the three channels, the mean absolute deviation of the channels from their mean (chroma) and the three channel
    means (grey images count as three equal channels): Algorithm 1 and a badly exposed photograph scale chroma with
    contrast, so skin or stain colour tells the global branch how far the contrast was cut. ``c_lo``/``c_hi``: the
    window of ``q_lo``/``q_hi`` taken over all channel values (auto-levels' window: a red-dominant fundus
    photograph's red channel sets its white point, where the grey window would clip it). A training pipeline
    computes this on the whole degraded image (``GlobalContextd``) so a random crop still gets the whole image's
    tone map. ``sigma`` is the robust noise level :func:`~dpe_monai.networks.nonlocal_means.noise_sigma` of the
    whole image, so a crop is denoised at the level its image has (a crop of flat background would read 0), as at
    inference.

    Args:
        x: ``(B, C, H, W)`` images or ``(B, C, H, W, D)`` volumes (slices along the last axis) in [0, 1].
        channel_window: compute ``c_lo``/``c_hi``; False copies ``q_lo``/``q_hi`` there (a scan's window, read on
            every pixel of the denoised image, uses the grey one: the sort of three times the pixels is saved).
    """
    b = x.shape[0]
    sigma = noise_sigma(x, samples)
    x = _grey_slices(x).float()
    grey = x.mean(dim=1)  # (B*S, H, W)
    colour = x[:, :3] if x.shape[1] == 3 else grey[:, None].expand(-1, 3, -1, -1)
    flat = grey.reshape(b, -1)
    step = max(1, flat.shape[1] // samples)
    if not torch.jit.is_scripting():
        if torch.compiler.is_compiling():
            step = torch.sym_max(1, flat.shape[1] // samples)  # stays symbolic when traced for export
    full = torch.sort(flat[:, ::step], dim=1).values
    n = full.shape[1]
    q_frac = torch.linspace(0.0, 1.0, n_quantiles, device=x.device)
    n_min = (full <= full[:, :1]).sum(dim=1)
    n_min = torch.where(n_min.float() > 0.99 * n, torch.zeros_like(n_min), n_min)
    span = (n - 1 - n_min).float()
    lo_i = (n_min.float() + lower * span).round().long()[:, None]
    hi_i = (n_min.float() + upper * span).round().long()[:, None]
    q_i = (n_min.float()[:, None] + q_frac[None] * span[:, None]).round().long()
    thumb_sorted = torch.sort(grey_thumbnail(x, thumb).reshape(b, -1), dim=1).values
    m = thumb_sorted.shape[1]
    noise = (grey[:, 1:] - grey[:, :-1]).abs().reshape(b, -1).mean(dim=1)
    # per channel, the same strided sample as the grey values (the slices of a volume pooled)
    dev = (colour - colour.mean(dim=1, keepdim=True)).abs()
    c_idx = (torch.linspace(0.05, 0.95, 7, device=x.device) * (n - 1)).round().long()  # n: samples per channel too
    chan_q: list[torch.Tensor] = []
    chan_mean: list[torch.Tensor] = []
    chan_values: list[torch.Tensor] = []
    chroma = torch.zeros_like(noise)
    for c in range(3):
        values = colour[:, c].contiguous().reshape(b, -1)[:, ::step]
        chan_values.append(values)
        chan_q.append(torch.sort(values, dim=1).values[:, c_idx])
        chan_mean.append(values.mean(dim=1, keepdim=True))
        chroma = chroma + dev[:, c].contiguous().reshape(b, -1)[:, ::step].mean(dim=1) / 3.0
    q_lo, q_hi = torch.gather(full, 1, lo_i), torch.gather(full, 1, hi_i)
    c_lo, c_hi = q_lo, q_hi
    if channel_window:  # the window over all channel values (auto-levels' window), over the body as the grey one
        every = torch.sort(torch.cat(chan_values, dim=1), dim=1).values
        n3 = every.shape[1]
        n3_min = (every <= every[:, :1]).sum(dim=1)
        n3_min = torch.where(n3_min.float() > 0.99 * n3, torch.zeros_like(n3_min), n3_min)
        span3 = (n3 - 1 - n3_min).float()
        c_lo = torch.gather(every, 1, (n3_min.float() + lower * span3).round().long()[:, None])
        c_hi = torch.gather(every, 1, (n3_min.float() + upper * span3).round().long()[:, None])
    return torch.cat(
        [
            q_lo,
            q_hi,
            torch.gather(full, 1, q_i),
            thumb_sorted[:, (q_frac * (m - 1)).round().long()],
            noise[:, None],
            torch.cat(chan_q, dim=1),
            chroma[:, None],
            torch.cat(chan_mean, dim=1),
            c_lo,
            c_hi,
            sigma[:, None],
        ],
        dim=1,
    )


class GlobalIntensity(nn.Module):
    """Estimate each image's tone map: robust percentile stretch plus a learned, bounded correction.

    Args:
        in_channels: image channels ``C`` (the statistics are of their mean).
        thumb: thumbnail side.
        n_quantiles: number of evenly spaced quantiles the MLP reads.
        knots: segments of the monotone correction curve.
        hidden: MLP width.
        lower: base black point quantile (0.005 = the 0.5th percentile, over the body).
        upper: base white point quantile.
        max_shift: largest shift of the window centre, as a fraction of the base window width.
        max_log_scale: the window width may be scaled by ``exp(+-max_log_scale)``.
        samples: full-resolution values (strided) the base window is computed from.
        window: the colour path's base window: ``"grey"`` (the quantiles of the channel mean, as the intensity
            contract windows a scan) or ``"channels"`` (the quantiles over all channel values, auto-levels' window:
            a red-dominant photograph's brightest channel is not clipped). Scans (``relative``) keep the grey one.
        strength: the learned correction's strength, in [0, 1]: the MLP's outputs (window shift, log scale and curve
            logits) are multiplied by it, so 0 is the base window exactly and 1 the correction as fitted; in between
            the map moves monotonically from one to the other. Algorithm 1 erases an image's brightness convention,
            so the correction can only restore its training targets' convention; a strength below 1 trades some of
            that for images of other conventions (chosen held-out by ``scripts/tone_strength.py``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        thumb: int = 64,
        n_quantiles: int = 33,
        knots: int = 16,
        hidden: int = 64,
        lower: float = 0.005,
        upper: float = 0.995,
        max_shift: float = 1.0,
        max_log_scale: float = 3.0,
        samples: int = 65536,
        window: str = "grey",
        strength: float = 1.0,
    ) -> None:
        super().__init__()
        if window not in ("grey", "channels"):
            raise ValueError(f"window must be 'grey' or 'channels', got {window!r}.")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength!r}.")
        self.window = window
        self.strength = float(strength)
        self.in_channels = int(in_channels)
        self.thumb = int(thumb)
        self.n_quantiles = int(n_quantiles)
        self.knots = int(knots)
        self.lower = float(lower)
        self.upper = float(upper)
        self.max_shift = float(max_shift)
        self.max_log_scale = float(max_log_scale)
        self.samples = int(samples)
        self.mlp = nn.Sequential(
            nn.Linear(2 * n_quantiles + 2 + 28, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, 2 + knots),
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def summary(self, x: torch.Tensor) -> torch.Tensor:
        """:func:`global_summary` of ``x`` with this branch's settings: ``(B, 2 * n_quantiles + 31)``."""
        return global_summary(x, self.thumb, self.n_quantiles, self.lower, self.upper, self.samples)

    def forward(
        self, x: torch.Tensor, summary: torch.Tensor | None = None, relative: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Tone-map parameters for whole images ``x`` (``(B, C, H, W)`` or volumes ``(B, C, H, W, D)``, in [0, 1]).

        Args:
            x: the whole images (ignored when ``summary`` is given).
            summary: precomputed :meth:`summary` of the whole images, ``(B, 2 * n_quantiles + 31)``.
            relative: ``(B,)`` 1 for scans (:func:`dpe_monai.contract.is_scan`): images whose values the intensity
                contract windowed *relative to themselves* (percentile or DICOM window: 12/16-bit, HU), and grey
                images of any bit depth; 0 for colour 8-bit data (photographs). The target of a scan is its own
                percentile window, which the base stretch already recovers, so its learned correction is switched
                off; photographs keep it, because their brightness convention must be learned. ``None``: the
                learned correction for all.

        Returns:
            ``(B, 2 + knots + 1)`` parameters for :func:`apply_global_intensity`.
        """
        if summary is None:
            summary = self.summary(x)
        summary = summary.to(self.mlp[-1].weight.dtype)  # float32 (also under autocast), float64 for .double()
        n = self.n_quantiles
        q_lo, q_hi = summary[:, 0], summary[:, 1]
        if self.window == "channels":
            colour_path = torch.ones_like(q_lo) if relative is None else 1.0 - relative.to(q_lo.dtype).reshape(-1)
            q_lo = torch.where(colour_path > 0.5, summary[:, -3], q_lo)
            q_hi = torch.where(colour_path > 0.5, summary[:, -2], q_hi)
        width = (q_hi - q_lo).clamp_min(1e-3)
        quant = (summary[:, 2 : 2 + 2 * n] - q_lo[:, None]) / width[:, None]
        noise = summary[:, 2 + 2 * n] / width
        col = summary[:, 3 + 2 * n :]
        chan_q = (col[:, :21] - q_lo[:, None]) / width[:, None]
        means = col[:, 22:25]
        grey_mean = means.mean(dim=1, keepdim=True)
        feats = torch.cat(
            [
                quant.clamp(-2.0, 3.0),
                torch.log(width)[:, None],
                torch.log(noise + 1e-4)[:, None],
                chan_q.clamp(-2.0, 3.0),
                torch.log(col[:, 21:22] / width[:, None] + 1e-4),
                means / grey_mean.clamp_min(1e-3),
                grey_mean,
                q_lo[:, None],
                q_hi[:, None],
            ],
            dim=1,
        )
        out = self.mlp(feats) * self.strength
        if relative is not None:
            out = out * (1.0 - relative.to(out.dtype).reshape(-1, 1))
        # a window narrower than the floor on its width starts at the image's black point (a black image stays
        # black; centred, its 0 would map to mid-grey); wider ones are centred exactly as computed
        middle = torch.where(q_hi - q_lo < 1e-3, q_lo + 0.5 * width, 0.5 * (q_lo + q_hi))
        centre = middle + self.max_shift * torch.tanh(out[:, 0]) * width
        half = 0.5 * width * torch.exp(out[:, 1].clamp(-self.max_log_scale, self.max_log_scale))
        lo, hi = centre - half, centre + half
        inc = torch.softmax(out[:, 2:], dim=1)
        cum = torch.cat([torch.zeros_like(inc[:, :1]), torch.cumsum(inc, dim=1)], dim=1)
        return torch.cat([lo[:, None], hi[:, None], cum], dim=1)
