"""The scan path's window rules: where a scan's percentile window is kept or moved towards its own scale.

:class:`~dpe_monai.networks.GlobalLocalNet` reads a scan's window on its denoised whole image; these two rules then
adjust it: a clipped plateau keeps its clip level (:func:`keep_saturation`), and a scan exposed well enough keeps its
own scale instead of being stretched (:func:`keep_own_scale`). Tensor algebra only (eager, scripts, exports).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dpe_monai.networks.clean_gate import exposure_weight, flatness_weight

__all__ = ["keep_own_scale", "keep_saturation"]


def keep_saturation(summary: torch.Tensor, x: torch.Tensor, stabilised: torch.Tensor, upper: float) -> torch.Tensor:
    """``summary`` with its upper window end set to ``x``'s maximum for the images ``stabilised`` (``(B,)``
    bool: denoised under the signal-dependent model, which pulls a clipped plateau below the clip level) where
    ``x`` has a saturated *plateau* there: at least the share ``1 - upper`` of the body sits at the
    maximum, and those pixels have on average at least 40 % of their 3x3 in-slice neighbours at it too (a
    structure clipped at the window's top, e.g. bone in a soft-tissue CT window, rather than noise tails of
    bright tissue crossing the clip level). Other images keep the Gaussian model's window exactly."""
    b = x.shape[0]
    grey = x.float().mean(dim=1)
    if grey.ndim == 4:  # a volume (to a 2-D or a 3-D network): the test runs within its slices
        grey = grey.movedim(-1, 1).reshape(-1, grey.shape[1], grey.shape[2])
    flat = grey.reshape(b, -1)
    top, bottom = flat.amax(dim=1, keepdim=True), flat.amin(dim=1, keepdim=True)
    at_top = (flat == top) & (flat > bottom)
    body = (flat > bottom).sum(dim=1).clamp_min(1)
    frequent = at_top.sum(dim=1).float() >= (1.0 - upper) * body.float()
    ind = at_top.reshape(grey.shape).float()[:, None]
    share = F.avg_pool2d(ind, 3, stride=1, padding=1, count_include_pad=False).reshape(b, -1)
    clustered = (share * at_top).sum(dim=1) / at_top.sum(dim=1).clamp_min(1) >= 0.4
    out = summary.clone()
    out[:, 1] = torch.where(frequent & clustered & stabilised, top[:, 0].to(out.dtype), summary[:, 1])
    return out


def keep_own_scale(
    summary: torch.Tensor,
    floor: torch.Tensor,
    keep: tuple[float, float] | None,
    exposed: tuple[float, float] | None,
) -> torch.Tensor:
    """``summary`` with its window ``[q_lo, q_hi]`` moved towards ``[0, 1]`` by ``t = clip((w - a) / (b - a), 0,
    1)``, ``w = q_hi - floor`` (``floor``: ``(B,)`` the denoised image's minimum, so a black background counts
    as the image's black point) and ``(a, b) = keep`` (None: unchanged): a scan exposed well enough keeps its own
    scale; with ``exposed``, ``t`` is at least :func:`exposure_weight` of ``q_hi`` (a bright end near white), and it
    is at least :func:`flatness_weight` of the window's width (an image with an (almost) empty window is not
    stretched)."""
    if keep is None:
        return summary
    lo, hi = summary[:, :1], summary[:, 1:2]
    t = ((hi - floor[:, None].to(hi.dtype) - keep[0]) / (keep[1] - keep[0])).clamp(0.0, 1.0)
    if exposed is not None:
        t = torch.maximum(t, exposure_weight(hi, exposed))
    t = torch.maximum(t, flatness_weight(hi - lo))  # an (almost) empty window: nothing to stretch
    return torch.cat([lo * (1.0 - t), hi + t * (1.0 - hi), summary[:, 2:]], dim=1)
