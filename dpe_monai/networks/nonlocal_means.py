"""Non-local means as a network layer: scikit-image's fast NLM in tensor algebra, differentiable and exportable.

Classical non-local means at the estimated noise level is the strongest simple denoiser in this project's
benchmarks (``benchmarks/results/quality*.json``). As a layer it lets the enhancer start from it and learn only
what it misses: :class:`~dpe_monai.networks.GlobalLocalNet` with ``prefilter="nlm"`` denoises the input in its
own units (where noise added after an exposure drop still has its small level) before the tone map.

The weights follow ``skimage.restoration.denoise_nl_means(fast_mode=True, sigma=s, h=0.8 * s)``: for every shift
``t`` in the ``(2 * patch_distance + 1)^n`` search window, ``d_t`` is the mean over a ``patch_size^n`` patch and
the channels of the squared difference between the image and its shift, and
``w_t = exp(-max(d_t - 2 s^2, 0) / h^2)`` (0 where that exponent exceeds 5, scikit-image's cut-off). The output is
``sum_t w_t * x(. + t) / sum_t w_t``. Borders are reflected. ``s`` is :func:`noise_sigma` of the *whole* image
(callers that tile pass it in).

It is not scikit-image's exact arithmetic. scikit-image's fast mode (0.26) sums its integral image over a
``(patch_size - 1)^n`` box (``p - offset + 1 ... p + offset``) yet divides by ``patch_size^n``, and counts the zero
shift twice; with ``h = 0.8 s`` that is a smaller, off-centre patch filtered about as strongly as ``h = s`` here.
This layer uses the centred patch and counts the zero shift once, so it smooths a little less: the two agree to
more than 40 dB on the tests' images (``tests/test_nonlocal_means.py``), and a percentile stretch afterwards
multiplies the difference (the scan path's radiology rows against "NLM + stretch" in ``benchmarks/RESULTS.md``).

Everything is static-shape slicing, pooling and ``exp``: the layer scripts (TorchScript) and exports to ONNX.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Pool
from torch import nn

from dpe_monai.networks.tracing import tracing

__all__ = ["NonLocalMeans", "noise_level_function", "noise_sigma", "strided_sorted"]


def strided_sorted(flat: torch.Tensor, samples: int = 65536) -> torch.Tensor:
    """Every ``n``-th value of each row of ``flat`` ``(B, N)`` (``n`` keeps about ``samples`` of them), sorted:
    ``(B, M)``. The shared sample of :func:`noise_sigma` and of the refiner's window (``window_of``)."""
    step = max(1, flat.shape[1] // samples)
    if not torch.jit.is_scripting():
        if torch.compiler.is_compiling():
            step = torch.sym_max(1, flat.shape[1] // samples)  # stays symbolic when traced for export
    return torch.sort(flat[:, ::step], dim=1).values


def noise_sigma(x: torch.Tensor, samples: int = 65536) -> torch.Tensor:
    """Robust noise level of each image: ``1.4826 * MAD(neighbour differences) / sqrt(2)``, ``(B,)``.

    The differences are along the second spatial axis (the width of ``(B, C, H, W)`` and of ``(B, C, H, W, D)``,
    so a volume's slices along ``D`` give the same estimate as the slices themselves), over all channels (strided
    to about ``samples`` values), as :func:`dpe_monai.baselines.classical.nlm` estimates it for scikit-image.

    Args:
        x: ``(B, C, H, W)`` or ``(B, C, H, W, D)`` in [0, 1].
    """
    b = x.shape[0]
    diff = strided_sorted((x[:, :, :, 1:] - x[:, :, :, :-1]).float().reshape(b, -1), samples)
    mid = (diff.shape[1] - 1) // 2
    med = diff[:, mid : mid + 1]
    dev = torch.sort((diff - med).abs(), dim=1).values[:, mid]
    return 1.4826 * dev / math.sqrt(2.0)


@torch.jit.unused
def noise_level_function(
    x: torch.Tensor, samples: int = 262144, bins: int = 16, margin: float = 3.0, min_ratio: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image Poisson-Gaussian noise model ``var(v) = gain * v + sigma^2``: ``(sigma, gain)``, each ``(B,)``.

    Quantum-limited images (low-dose CT, radiographs, fluorescence) have a noise variance that grows with the
    signal; one whole-image level then smooths the bright parts too little and the dark parts too much. The fit:
    2x2 mixed second differences of the grey image (they cancel a linear ramp; their variance is the pixel
    variance) binned by the 2x2 mean into ``bins`` equal-count bins, robust (MAD) variance per bin, least squares
    over the bins. Blocks within ``margin`` noise levels (:func:`noise_sigma`) of the image's extremes are left out
    (clipping makes their noise one-sided). An image counts as signal-dependent when the fitted variance at the
    90th percentile of the mean is at least ``min_ratio`` times the one at the 10th; otherwise (and when too few
    blocks remain) it gets ``gain = 0`` and ``sigma = noise_sigma(x)``, the Gaussian model exactly.
    Measured in ``benchmarks/results/candidates/noise_model.json`` (``python -m benchmarks.noise_model``).
    Eager only (TorchScript and ONNX graphs keep the Gaussian model).

    Args:
        x: ``(B, C, H, W)`` or ``(B, C, H, W, D)`` in [0, 1] (a volume is read on up to 16 evenly spaced slices).
        samples: about this many 2x2 blocks per image are read (strided).
        bins: equal-count bins of the local mean.
        margin: blocks within this many noise levels of the extremes are left out.
        min_ratio: the variance ratio from which an image counts as signal-dependent.

    Returns:
        ``(sigma, gain)``, each ``(B,)`` in ``x``'s units: the Gaussian part's standard deviation and the gain
        (0 for images kept on the Gaussian model).
    """
    b = x.shape[0]
    base = noise_sigma(x)
    grey = x.float().mean(dim=1)
    if grey.ndim == 4:  # a volume: up to 16 evenly spaced slices, as the global summary reads it
        grey = grey[..., :: max(1, grey.shape[-1] // 16)]
    r = ((grey[:, :-1, :-1] - grey[:, :-1, 1:] - grey[:, 1:, :-1] + grey[:, 1:, 1:]) / 2).reshape(b, -1)
    m = ((grey[:, :-1, :-1] + grey[:, :-1, 1:] + grey[:, 1:, :-1] + grey[:, 1:, 1:]) / 4).reshape(b, -1)
    step = max(1, m.shape[1] // samples)
    r, m = r[:, ::step], m[:, ::step]
    flat = grey.reshape(b, -1)
    lo, hi = flat.amin(dim=1) + margin * base, flat.amax(dim=1) - margin * base
    sigma, gain = base.clone(), torch.zeros_like(base)
    for i in range(b):
        keep = (m[i] > lo[i]) & (m[i] < hi[i])
        mi, ri = m[i][keep], r[i][keep]
        if mi.numel() < 50 * bins:
            continue
        chunks = torch.tensor_split(torch.argsort(mi), bins)
        mk = torch.stack([mi[c].median() for c in chunks]).double()
        vk = torch.stack([(1.4826 * ri[c].abs().median()) ** 2 for c in chunks]).double()
        mean_m, mean_v = mk.mean(), vk.mean()
        a = ((mk - mean_m) * (vk - mean_v)).sum() / ((mk - mean_m).square().sum()).clamp_min(1e-30)
        v0 = mean_v - a * mean_m
        if v0 < 0:  # through the origin
            v0, a = torch.zeros_like(v0), ((mk * vk).sum() / mk.square().sum()).clamp_min(0.0)
        if a < 0:  # flat
            a, v0 = torch.zeros_like(a), mean_v
        q10, q90 = torch.quantile(mi.double(), torch.tensor([0.1, 0.9], dtype=torch.float64, device=mi.device))
        ratio = (a * q90 + v0) / (a * q10 + v0).clamp_min(1e-30)
        if bool(ratio >= min_ratio):
            gain[i], sigma[i] = a.to(gain.dtype), v0.sqrt().to(sigma.dtype)
    return sigma, gain


class NonLocalMeans(nn.Module):
    """Fast non-local means (see the module docstring) on ``(B, C, *spatial)`` images in [0, 1].

    Args:
        spatial_dims: 2 or 3.
        patch_size: side of the compared patches (odd).
        patch_distance: the search window reaches this far along each axis.
        h_factor: filter strength ``h = h_factor * sigma`` (scikit-image's rule of thumb for the fast mode: 0.8).
        cutoff: weights whose exponent exceeds it are 0.
        sure_factors: if given, each image's strength is the one of these factors with the lowest Monte-Carlo SURE
            (Stein's unbiased estimate of the mean squared error against the noise-free image, Ramani et al., IEEE
            TIP 2008; for NLM, Van De Ville and Kocher, IEEE SPL 2009) at its noise level; ``h_factor`` is then
            used only where the estimate cannot run (TorchScript, export, signal-dependent noise). Costs two
            filter passes per factor. Eager only.
    """

    __jit_ignored_attributes__ = ["sure_factors"]  # eager only (the SURE choice is skipped when scripted)

    def __init__(
        self,
        spatial_dims: int = 2,
        patch_size: int = 5,
        patch_distance: int = 6,
        h_factor: float = 0.8,
        cutoff: float = 5.0,
        sure_factors: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if patch_size % 2 != 1:
            raise ValueError(f"patch_size must be odd, got {patch_size}.")
        self.spatial_dims = int(spatial_dims)
        self.patch_size = int(patch_size)
        self.patch_distance = int(patch_distance)
        self.h_factor = float(h_factor)
        self.cutoff = float(cutoff)
        self.sure_factors = [float(f) for f in sure_factors or []]
        self.pool = Pool[Pool.AVG, self.spatial_dims](kernel_size=self.patch_size, stride=1)  # graphs (exports)
        d = self.patch_distance
        self.shifts: list[list[int]] = [list(t) for t in itertools.product(range(-d, d + 1), repeat=self.spatial_dims)]

    def _box(self, v: torch.Tensor) -> torch.Tensor:
        """Mean over each ``patch_size^n`` patch of ``v`` (valid positions only: each side ``patch_size - 1``
        shorter). Eager and TorchScript: separable sums of shifted slices, about 5x faster on CPU than ``avg_pool``
        with the same result up to float rounding; while a graph is recorded (ONNX, ``torch.export``, compile):
        ``avg_pool``, one node instead of ~20 per shift, which keeps exports small and quick."""
        if tracing():
            return self.pool(v)
        p = self.patch_size
        for dim in range(2, v.ndim):
            n = v.shape[dim] - p + 1
            acc = v.narrow(dim, 0, n)
            for i in range(1, p):
                acc = acc + v.narrow(dim, i, n)
            v = acc
        return v / float(p**self.spatial_dims)

    def _window(self, xp: torch.Tensor, start: list[int], size: list[int]) -> torch.Tensor:
        if self.spatial_dims == 2:
            return xp[:, :, start[0] : start[0] + size[0], start[1] : start[1] + size[1]]
        return xp[:, :, start[0] : start[0] + size[0], start[1] : start[1] + size[1], start[2] : start[2] + size[2]]

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor | None = None, gain: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Denoise ``x`` ``(B, C, *spatial)`` in [0, 1] at noise level ``sigma`` ``(B,)`` (default: estimated from
        ``x`` by :func:`noise_sigma`); returns the same shape. Images with ``sigma == 0`` come back unchanged.

        ``gain`` ``(B,)``: a signal-dependent model ``var(v) = gain * v + sigma^2`` (:func:`noise_level_function`).
        Images with ``gain > 0`` are denoised at unit noise in the generalised Anscombe domain of that model and
        mapped back with the asymptotically unbiased inverse; images with ``gain == 0`` exactly as without it."""
        if sigma is None:
            sigma = noise_sigma(x)
        if x.shape[1] > 1 and x.device.type != "meta" and not tracing() and bool((x == x[:, :1]).all()):
            # grey replicated to RGB (every scan): the distances and the output are the single channel's, 3x cheaper
            return self._stabilised(x[:, :1], sigma, gain).expand_as(x)
        return self._stabilised(x, sigma, gain)

    def _stabilised(self, x: torch.Tensor, sigma: torch.Tensor, gain: torch.Tensor | None) -> torch.Tensor:
        """:meth:`_denoise` at ``sigma``, or in the stabilised domain for the images with ``gain > 0``."""
        if gain is None or tracing() or not bool((gain > 0).any()):
            if not torch.jit.is_scripting():
                if self.sure_factors and not tracing():
                    return self._denoise(x, sigma, self.sure_h_factor(x, sigma))
            return self._denoise(x, sigma)
        view = [x.shape[0]] + [1] * (x.ndim - 1)
        a = gain.to(x.dtype).clamp_min(0.0).reshape(view)
        c = 0.375 * a * a + sigma.to(x.dtype).square().reshape(view)
        sc = c.clamp_min(1e-12).sqrt()
        # 2 (sqrt(a v + c) - sqrt(c)) / a, written so that a -> 0 gives v / sqrt(c)
        t = 2.0 * x / ((a * x + c).clamp_min(0.0).sqrt() + sc)
        d = self._denoise(t, torch.ones_like(sigma))
        back = (d * sc + a * d * d / 4.0 + a / 4.0).clamp(0.0, 1.0)
        if not bool((gain <= 0).any()):
            return back
        return torch.where(a > 0, back, self._denoise(x, sigma))

    @torch.jit.unused
    def sure_h_factor(self, x: torch.Tensor, sigma: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
        """Each image's strength among ``sure_factors`` with the lowest Monte-Carlo SURE, ``(B,)``.

        ``SURE(h) / N = mean((f_h(x) - x)^2) - sigma^2 + 2 sigma^2 mean(b * (f_h(x + eps b) - f_h(x))) / eps``
        with one seeded Rademacher probe ``b`` (the same for every factor, so the choice is deterministic).
        """
        gen = torch.Generator(device="cpu").manual_seed(0)
        probe = torch.randint(0, 2, x.shape, generator=gen).to(x) * 2.0 - 1.0
        s2 = sigma.to(x.dtype).square()
        risks = []
        for f in self.sure_factors:
            h = torch.full_like(s2, f)
            out = self._denoise(x, sigma, h)
            moved = self._denoise(x + eps * probe, sigma, h)
            div = (probe * (moved - out)).flatten(1).mean(1) / eps
            risks.append((out - x).square().flatten(1).mean(1) - s2 + 2.0 * s2 * div)
        best = torch.stack(risks, dim=1).argmin(dim=1)
        return torch.tensor(self.sure_factors, dtype=x.dtype, device=x.device)[best]

    def _denoise(self, x: torch.Tensor, sigma: torch.Tensor, h_factor: torch.Tensor | None = None) -> torch.Tensor:
        b = x.shape[0]
        view = [b] + [1] * (x.ndim - 1)
        sigma = sigma.to(x.dtype).reshape(view)
        if h_factor is None:
            h2 = (self.h_factor * sigma).square().clamp_min(1e-12)
        else:
            h2 = (h_factor.to(x.dtype).reshape(view) * sigma).square().clamp_min(1e-12)
        var2 = 2.0 * sigma.square()
        off, d = self.patch_size // 2, self.patch_distance
        spatial = list(x.shape[2:])
        pad = off + d
        mode = "reflect" if min(spatial) > pad else "replicate"
        xp = F.pad(x, [pad] * (2 * self.spatial_dims), mode=mode)
        ref_size = [s + 2 * off for s in spatial]
        ref = self._window(xp, [d] * self.spatial_dims, ref_size)
        num = torch.zeros_like(x)
        den = torch.zeros_like(x[:, :1])
        for t in self.shifts:
            shifted = self._window(xp, [d + s for s in t], ref_size)
            sq = (ref - shifted).square()
            dist = self._box(sq if sq.shape[1] == 1 else sq.mean(dim=1, keepdim=True))
            expo = (dist - var2).clamp_min(0.0) / h2
            w = torch.where(expo > self.cutoff, torch.zeros_like(expo), torch.exp(-expo))
            num = num + w * self._window(shifted, [off] * self.spatial_dims, spatial)
            den = den + w
        out = num / den.clamp_min(1e-12)
        return torch.where(sigma > 0, out, x)
