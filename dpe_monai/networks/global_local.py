"""Global-local enhancer: a whole-image tone map (:class:`GlobalIntensity`) refined locally by a DPE body."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dpe_monai.networks.clean_gate import CleanGate, check_exposed
from dpe_monai.networks.dpenet import DPENet
from dpe_monai.networks.global_intensity import (
    GlobalIntensity,
    apply_global_intensity,
    global_summary,
)
from dpe_monai.networks.nonlocal_means import NonLocalMeans, noise_level_function, noise_sigma
from dpe_monai.networks.regional_limit import RegionalLimit
from dpe_monai.networks.scan_refiner import ScanRefiner
from dpe_monai.networks.scan_window import keep_own_scale, keep_saturation
from dpe_monai.networks.tracing import tracing

__all__ = ["GlobalLocalNet"]


class GlobalLocalNet(nn.Module):
    """Enhance in two steps: a per-image tone map from the whole image, then a local residual refinement.

    ``g = tone_map(x)`` (:class:`GlobalIntensity`, starts as a 0.5-99.5 % percentile stretch) and
    ``y = clip(g + 2 * (body([x, g, r]) - 0.5), 0, 1)`` where ``body`` is a :class:`DPENet` (residual blocks, gated
    skips) whose last convolution is zero-initialised, so an untrained model is exactly the percentile stretch and
    training only has to learn denoising, detail and the correction of the stretch. ``r`` is a constant plane
    holding the route flag (1: a scan, :func:`dpe_monai.contract.is_scan`, i.e. an image windowed relative to
    itself such as a 12/16-bit scan, or any grey image, whose tone target is its own window and which only needs
    local restoration; 0: colour 8-bit data, or unknown).

    With ``denoise_first`` the body also restores in the *input's* units, before the tone map:
    ``y = clip(T(x + input_scale * tanh(b_in)) + tanh(b_out), 0, 1)`` with ``T`` the tone map and ``b_in``,
    ``b_out`` the body's two output groups (``2 * out_channels`` channels). A badly exposed acquisition adds its
    noise *after* the exposure drop; inverting the exposure amplifies it, so it is best removed where it has its
    own, small level (the oracle does exactly this). The ``b_in`` group is zero-initialised, so a model converted
    from a plain checkpoint (:meth:`widen_state_dict`) starts exactly where that checkpoint was.

    With ``prefilter="nlm"`` the input is first denoised in its own units by :class:`NonLocalMeans` at the whole
    image's noise level (scikit-image's fast NLM, the strongest classical denoiser here), and everything above acts
    on the denoised input: the network starts from "NLM, then the tone map" and learns what those miss. The noise
    level then travels in ``params`` (second to last column) like the tone map.

    With ``prefilter_on="relative"`` only scans (``relative`` = 1, :func:`dpe_monai.contract.is_scan`: images the
    intensity contract windowed *relative to themselves*, i.e. 12/16-bit, HU, DICOM windows, and grey images of any
    bit depth, i.e. 8-bit exports too) take that path, and for them nothing learned acts but the optional
    ``scan_refiner`` on the NLM output (the tone map and the body stay off). A scan whose denoised
    values span at most ``keep_scale[0]`` (a dim or flat one) comes back as ``stretch(NLM(x))`` with the 0.5-99.5 %
    window measured on every pixel of the *denoised* whole image (the target of such an image is its own percentile
    window, and noise widens the window measured on the noisy one); one spanning at least ``keep_scale[1]`` (exposed
    well: typically a scan the contract windowed relative to itself, a good 8-bit export) keeps its own scale and comes
    back as ``NLM(x)`` (re-windowing would only brighten an export that does not fill 0..255 and clip its tails);
    in between the window moves linearly (``scan_window.keep_own_scale``). The body's residual is switched off for them.
    Colour 8-bit images (photographs, ``relative`` = 0 or None) take the plain path above: no NLM, the
    learned tone map and the body (with ``colour_restore="nlm"``: NLM, then the tone map; no body). This is the measured
    choice for the shipped weights, whose body costs 5-8 dB on unseen scans against NLM + stretch
    (``benchmarks/results``).

    With ``clean_gate`` a :class:`CleanGate` reads the whole image and gives ``w``, its pass weight (1 for an image it
    is sure is a good one given as it is); the colour path then returns ``x + (1 - w) * (y - x)`` (scans keep their
    own test, ``keep_scale``). ``w`` travels in ``params`` before the flag. In training (``context`` given) ``w = 0``.

    The tone map must come from the *whole* image. Callers that tile a large image (or enhance a volume slice by
    slice) compute it once with :meth:`estimate` and pass it to every tile as ``params``; the
    :class:`~dpe_monai.inference.Enhancer` does this. ``params`` carries the flag as its last column, so tiles and
    slices get it too.

    Shapes and values: ``(B, in_channels, *spatial)`` in [0, 1] -> ``(B, out_channels, *spatial)`` in [0, 1], any
    spatial size (the body pads to a multiple of 16 and crops back).

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels (1 grey or 3 RGB).
        out_channels: output channels (must equal ``in_channels``: the tone map is applied to the input).
        channels: feature depth per level of the DPE body.
        thumb: thumbnail side of the global branch.
        knots: segments of the global correction curve.
        denoise_first: add the input-domain restoration group (see above).
        input_scale: largest input-domain correction, in the input's [0, 1] units.
        prefilter: None, or ``"nlm"`` (see above).
        prefilter_on: ``"all"`` images, or only ``"relative"`` ones (see above).
        noise_model: the prefilter's noise model: ``"gaussian"`` (one level per image, :func:`noise_sigma`) or
            ``"auto"``: a signal-dependent (Poisson-Gaussian) model where the image shows one
            (:func:`noise_level_function`), denoised in its variance-stabilised domain, and a scan's window keeps
            the input's maximum where the input has a saturated plateau there (denoising would pull a clipped
            plateau below the clip level; ``scan_window.keep_saturation``). The parameters from :meth:`estimate` then
            carry the gain as a column before the flag. Images whose noise shows no signal dependence get exactly
            the Gaussian model. The estimate is eager only: a TorchScript or ONNX graph that estimates its own
            parameters keeps the Gaussian model.
        keep_scale: ``(a, b)`` with ``0 < a < b <= 1``: a scan whose denoised values span at least ``b`` (from
            their minimum to the window's upper end, the 99.5th percentile) keeps its own scale (window ``[0, 1]``:
            it comes back as ``NLM(x)``); one spanning at most ``a`` is stretched to its window; in between the
            window moves linearly from one to the other (no jump in the output for a small change of the input).
            Algorithm 1's contrast and brightness factors (at most 0.8 each) leave a span of at most 0.64. None:
            always the window. Acts only on the scan path (``prefilter="nlm"``, ``prefilter_on="relative"``) when
            the network estimates the tone map from the whole image (``estimate``, or no ``params``/``context``).
        nlm_h_factor: the prefilter's strength, ``h = nlm_h_factor * sigma``
            (:class:`~dpe_monai.networks.NonLocalMeans`; 0.8 is scikit-image's rule, which its own arithmetic makes
            about as strong as 1.0 here).
        nlm_sure_factors: if given, the prefilter picks each image's strength among these factors by Stein's
            unbiased risk estimate (``NonLocalMeans(sure_factors=...)``; eager only, two filter passes per factor;
            a tiled image picks per tile).
        scan_refiner: follow the prefilter with a learned residual on its output (:class:`ScanRefiner`, needs
            ``prefilter="nlm"``; trained by ``bundles/dpe_enhancement/scripts/train_scan_refiner.py``). Its window
            is read on what it is given: the whole image, or each tile of a tiled one.
        refiner_channels: the refiner's ``channels`` (``"each"`` or ``"mean"``: one correction for all channels,
            learned on their mean, so it adds no colour; see :class:`ScanRefiner`).
        clean_gate: blend the colour path's output back towards a good input (:class:`CleanGate`, trained by
            ``bundles/dpe_enhancement/scripts/train_clean_gate.py``; an untrained gate passes nothing).
        exposed: ``(a, b)``, ``0 < a < b <= 1``: an image whose bright end reaches ``b`` of white is taken as exposed,
            not darkened, and is not stretched (from ``a`` on, partly): a scan keeps its own scale (its denoised
            99.5th percentile is read, as ``keep_scale`` reads its span; a scan without a black point, such as a
            near-uniform bright field, has a small span but is no darkened image), and the colour path passes it
            through the clean gate (the grey 99th percentile; :class:`CleanGate`). No degradation the enhancer was
            made for leaves an image's bright end near white (Algorithm 1's brightness factor is at most 0.8).
            None: off.
        regional_limit: ``(t0, t1)``: the body's residual is attenuated where its mean over 16-px cells darkens the
            tone-mapped image by more than ``t0``, and off from ``t1`` (:class:`RegionalLimit`; a dermoscopy prior
            that blackened regions of dark fundus photographs). None: off. Has no weights.
        tone_window: the colour path's base window, ``"grey"`` or ``"channels"`` (:class:`GlobalIntensity`).
        tone_strength: the strength of the colour path's learned tone correction, in [0, 1] (0: the base window
            alone; :class:`GlobalIntensity`). No weights: a checkpoint loads under any strength.
        colour_restore: what restores a colour image after its tone map: ``"body"`` (the learned DPE residual, as
            above) or ``"nlm"`` (needs ``prefilter="nlm"`` and ``prefilter_on="relative"``): the prefilter denoises
            it in its own units at its own noise level, then the tone map, and the body is not run at all
            (``y = T(NLM(x))``, the clean gate as before). Non-local means only averages similar patches of the
            image, so it cannot paint a structure the image does not hold; the body, a dermoscopy prior on a CPU
            budget, painted dark blotches and a grid into real fundus photographs.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 3,
        channels: Sequence[int] = (32, 48, 64, 96, 128),
        thumb: int = 64,
        knots: int = 16,
        denoise_first: bool = False,
        input_scale: float = 0.25,
        prefilter: str | None = None,
        prefilter_on: str = "all",
        noise_model: str = "gaussian",
        keep_scale: tuple[float, float] | None = (0.8, 0.9),
        nlm_h_factor: float = 0.8,
        nlm_sure_factors: Sequence[float] | None = None,
        scan_refiner: bool = False,
        refiner_channels: str = "each",
        clean_gate: bool = False,
        exposed: tuple[float, float] | None = None,
        regional_limit: tuple[float, float] | None = None,
        tone_window: str = "grey",
        tone_strength: float = 1.0,
        colour_restore: str = "body",
    ) -> None:
        super().__init__()
        if in_channels != out_channels:
            raise ValueError(f"GlobalLocalNet needs in_channels == out_channels, got {in_channels}, {out_channels}.")
        self.spatial_dims = int(spatial_dims)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.denoise_first = bool(denoise_first)
        self.input_scale = float(input_scale)
        if prefilter not in (None, "nlm"):
            raise ValueError(f"prefilter must be None or 'nlm', got {prefilter!r}.")
        if prefilter_on not in ("all", "relative"):
            raise ValueError(f"prefilter_on must be 'all' or 'relative', got {prefilter_on!r}.")
        if noise_model not in ("gaussian", "auto"):
            raise ValueError(f"noise_model must be 'gaussian' or 'auto', got {noise_model!r}.")
        if noise_model == "auto" and prefilter != "nlm":
            raise ValueError("noise_model='auto' is the prefilter's noise model: it needs prefilter='nlm'.")
        self.prefilter_on = prefilter_on
        if colour_restore not in ("body", "nlm"):
            raise ValueError(f"colour_restore must be 'body' or 'nlm', got {colour_restore!r}.")
        if colour_restore == "nlm" and (prefilter != "nlm" or prefilter_on != "relative"):
            raise ValueError("colour_restore='nlm' needs prefilter='nlm' and prefilter_on='relative'.")
        self.colour_nlm = colour_restore == "nlm"
        if keep_scale is not None and not 0.0 < keep_scale[0] < keep_scale[1] <= 1.0:
            raise ValueError(f"keep_scale must be (a, b) with 0 < a < b <= 1, or None; got {keep_scale!r}.")
        self.keep_scale = None if keep_scale is None else (float(keep_scale[0]), float(keep_scale[1]))
        self.exposed = check_exposed(exposed)
        self.noise_model = noise_model
        self.auto_noise = noise_model == "auto" and prefilter == "nlm"
        self.relative_only = prefilter_on == "relative"
        # 13^2 shifts in 2-D; 7^3 in 3-D (13^3 would cost 13x more for little gain)
        search = 6 if spatial_dims == 2 else 3
        self.prefilter = (
            NonLocalMeans(spatial_dims, patch_distance=search, h_factor=nlm_h_factor, sure_factors=nlm_sure_factors)
            if prefilter == "nlm"
            else None
        )
        if scan_refiner and prefilter != "nlm":
            raise ValueError("scan_refiner refines the prefilter's output: it needs prefilter='nlm'.")
        self.refiner = ScanRefiner(spatial_dims, channels=refiner_channels) if scan_refiner else None
        self.gate = CleanGate(exposed=self.exposed) if clean_gate else None
        self.limit = None if regional_limit is None else RegionalLimit(spatial_dims, regional_limit)
        self.global_branch = GlobalIntensity(
            in_channels=in_channels, thumb=thumb, knots=knots, window=tone_window, strength=tone_strength
        )
        self.body = DPENet(
            spatial_dims=spatial_dims,
            in_channels=2 * in_channels + 1,
            out_channels=2 * out_channels if denoise_first else out_channels,
            channels=channels,
            global_residual=False,
        )
        last = self.body.tail.conv if hasattr(self.body.tail, "conv") else self.body.tail
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def estimate(self, x: torch.Tensor, relative: torch.Tensor | None = None) -> torch.Tensor:
        """Parameters ``(B, P + 1)`` of whole images or volumes ``x``: the tone map (:class:`GlobalIntensity`) and
        the route flag ``relative`` (``(B,)``, None = 0) as the last column (with ``prefilter``, the noise
        level :func:`noise_sigma` before it; with ``noise_model="auto"``, the noise level and then the gain of
        :func:`noise_level_function`; with ``clean_gate``, the gate's ``w`` just before the flag)."""
        return self._with_flag(self._tone(x, None, relative)[0], relative)

    def _tone(
        self, x: torch.Tensor, context: torch.Tensor | None, relative: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The tone map (and noise level) of ``x``, and ``x`` denoised when that was needed for it (a batch of 2-D
        images with a relative one), so :meth:`forward` need not run the prefilter a second time; else None."""
        if self.prefilter is None:
            return self._gated(self.global_branch(x, summary=context, relative=relative), x, context), None
        # the whole image's noise level: from its summary (a crop's context in training) or from x itself
        sigma = context[:, -1] if context is not None else noise_sigma(x)
        gain = torch.zeros_like(sigma)
        if self.auto_noise and context is None and not torch.jit.is_scripting() and not tracing():
            sigma, gain = noise_level_function(x)
        summary = context
        reuse: torch.Tensor | None = None
        if self.relative_only and relative is not None and context is None:
            rel = relative.reshape(-1) > 0.5
            # relative images: the window of the denoised whole image (or volume); while exporting, always computed
            # and selected, as the flag is an input of the graph
            if tracing() or bool(rel.any()):
                plain = self.global_branch.summary(x)
                den = self._denoised_view(x, sigma, gain)
                branch = self.global_branch
                # every pixel, as the contract's window is measured (a strided sample costs up to 2 dB on a dark CT)
                every = global_summary(
                    den, branch.thumb, branch.n_quantiles, branch.lower, branch.upper, den[0, 0].numel(), False
                )
                if self.auto_noise and not torch.jit.is_scripting() and not tracing():
                    every = keep_saturation(every, x, gain > 0, branch.upper)
                floor = den.float().mean(dim=1).reshape(den.shape[0], -1).amin(dim=1)
                every = keep_own_scale(every, floor, self.keep_scale, self.exposed)
                summary = torch.where(rel[:, None], every, plain)
                if x.ndim == self.spatial_dims + 2:  # the whole batch denoised (a volume's view is a sample)
                    reuse = den
        tone = self.global_branch(x, summary=summary, relative=relative)
        cols = [tone, sigma[:, None].to(tone.dtype)]
        if self.auto_noise:
            cols.append(gain[:, None].to(tone.dtype))
        return self._gated(torch.cat(cols, dim=1), x, context), reuse

    def _gated(self, params: torch.Tensor, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """``params`` with the gate's ``w`` of the whole image ``x`` appended (0 in training: ``context``)."""
        if self.gate is None:
            return params
        p = torch.zeros_like(params[:, 0]) if context is not None else self.gate(x).to(params.dtype)
        return torch.cat([params, p[:, None]], dim=1)

    def _denoised_view(self, x: torch.Tensor, sigma: torch.Tensor, gain: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` denoised by the prefilter; a volume given to a 2-D network: up to 16 evenly spaced slices of it
        (the ones :func:`~dpe_monai.networks.global_intensity.global_summary` reads), ``(B, C, H, W, S)``."""
        if x.ndim == self.spatial_dims + 2:
            return self.restore(x, sigma, gain)
        step = max(1, x.shape[-1] // 16)
        sl = x[..., ::step]
        b, c, h, w, n = sl.shape
        flat = sl.movedim(-1, 1).reshape(b * n, c, h, w)
        den = self.restore(flat, sigma.repeat_interleave(n), None if gain is None else gain.repeat_interleave(n))
        return den.reshape(b, n, c, h, w).movedim(1, -1)

    def restore(self, x: torch.Tensor, sigma: torch.Tensor, gain: torch.Tensor | None = None) -> torch.Tensor:
        """The prefilter's output on ``x``, refined by the :class:`ScanRefiner` where there is one."""
        assert self.prefilter is not None
        den = self.prefilter(x, sigma, gain)
        if self.refiner is not None:
            den = self.refiner(x, den, sigma)
        return den

    @staticmethod
    def _with_flag(params: torch.Tensor, relative: torch.Tensor | None) -> torch.Tensor:
        flag = torch.zeros_like(params[:, :1])
        if relative is not None:
            flag = flag + relative.to(params.dtype).reshape(-1, 1)
        return torch.cat([params, flag], dim=1)

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
            params: parameters from :meth:`estimate` on the whole image (tone map and flag); default: estimated
                from ``context``, else from ``x`` itself, with the flag ``relative``.
            context: :func:`~dpe_monai.networks.global_intensity.global_summary` of the whole image the crop
                ``x`` came from, ``(B, S)`` (``GlobalContextd`` in training).
            relative: ``(B,)`` the route flag (:func:`dpe_monai.contract.is_scan`; see :class:`GlobalIntensity`).
        """
        flagged = params is not None or relative is not None  # else no image is relative, known without data
        denoised: torch.Tensor | None = None  # the prefilter's output, when estimating the tone map needed it
        if params is None:
            tone, denoised = self._tone(x, context, relative)
            params = self._with_flag(tone, relative)
        params = params.to(x.dtype)
        if params.shape[0] != x.shape[0]:
            params = params.expand(x.shape[0], -1)
        flag = params[:, -1:].reshape([x.shape[0], 1] + [1] * (x.ndim - 2)).expand_as(x[:, :1])
        if self.gate is not None:  # the colour path's blend weight 1 - w; a scan keeps 1
            shape = [x.shape[0], 1] + [1] * (x.ndim - 2)
            gate = 1.0 - params[:, -2].reshape(shape)
            strength = torch.where(flag[:, :1] > 0.5, torch.ones_like(gate), gate)
            params = torch.cat([params[:, :-2], params[:, -1:]], dim=1)
            return x + strength * (self._enhance(x, params, flag, flagged, denoised) - x)
        return self._enhance(x, params, flag, flagged, denoised)

    def _enhance(
        self, x: torch.Tensor, params: torch.Tensor, flag: torch.Tensor, flagged: bool, denoised: torch.Tensor | None
    ) -> torch.Tensor:
        """:meth:`forward` after the parameters: ``params`` without the gate's column."""
        keep = torch.ones_like(flag)  # where the body's residual acts
        if self.prefilter is not None:
            gain: torch.Tensor | None = None
            if self.auto_noise:
                sigma, gain = params[:, -3], params[:, -2]
                params = torch.cat([params[:, :-3], params[:, -1:]], dim=1)
            else:
                sigma = params[:, -2]
                params = torch.cat([params[:, :-2], params[:, -1:]], dim=1)
            if not self.relative_only:
                x = self.restore(x, sigma, gain)
            elif flagged or self.colour_nlm:
                keep = (flag <= 0.5).to(x.dtype)
                if self.colour_nlm:  # colour images: NLM in their own units; scans: NLM (+ refiner); then the map
                    den = self._colour_nlm(x, keep, sigma, gain, denoised)
                    return apply_global_intensity(den, params[:, :-1]).clamp(0.0, 1.0)
                if tracing():  # no data-dependent branches while exporting: both paths, selected
                    den = self.restore(x, sigma, gain) if denoised is None else denoised  # one NLM in the graph
                    x = torch.where(keep > 0, x, den)
                else:
                    if bool((keep < 1).any()):
                        den = self.restore(x, sigma, gain) if denoised is None else denoised
                        x = torch.where(keep > 0, x, den)
                    if not bool((keep > 0).any()):  # only relative images: NLM (+ refiner) and the window
                        return apply_global_intensity(x, params[:, :-1]).clamp(0.0, 1.0)
        g = apply_global_intensity(x, params[:, :-1])
        r = 2.0 * self.body(torch.cat([x, g, flag], dim=1)) - 1.0  # tanh of the body's head, in [-1, 1]
        if self.limit is not None:
            r = self.limit(r)
        r = r * keep if self.relative_only else r
        if self.denoise_first:
            c = self.out_channels
            g = apply_global_intensity(x + self.input_scale * r[:, :c], params[:, :-1])
            r = r[:, c:]
        return (g + r).clamp(0.0, 1.0)

    def _colour_nlm(
        self,
        x: torch.Tensor,
        keep: torch.Tensor,
        sigma: torch.Tensor,
        gain: torch.Tensor | None,
        denoised: torch.Tensor | None,
    ) -> torch.Tensor:
        """``x`` denoised: colour images (``keep``) by the prefilter alone, scans as the scan path (+ refiner)."""
        assert self.prefilter is not None
        if not tracing() and x.device.type != "meta" and not bool((keep > 0).any()):  # scans only: denoised once
            return self.restore(x, sigma, gain) if denoised is None else denoised
        colour = self.prefilter(x, sigma, gain)
        if self.refiner is None:
            return colour
        # meta (FLOP counting, which never passes a flag): the colour path alone, as it runs on a colour image
        if tracing() or (x.device.type != "meta" and bool((keep < 1).any())):
            scan = self.refiner(x, colour, sigma) if denoised is None else denoised
            return torch.where(keep > 0, colour, scan)
        return colour

    @staticmethod
    def widen_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A plain state dict converted for ``denoise_first=True``: the body's head gets a zero-initialised
        input-domain group before its output-domain one, so the converted network computes what the plain one did."""
        state = dict(state)
        for key in [k for k in state if k.endswith("body.tail.weight") or k.endswith("body.tail.bias")]:
            w = state[key]
            state[key] = torch.cat([torch.zeros_like(w), w], dim=0)
        return state
