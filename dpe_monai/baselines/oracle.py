"""The unreachable ceiling: knows the simulator's true intensity map, noise level and noise order (benchmarks only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from dpe_monai.baselines.classical import nlm
from dpe_monai.transforms.preprocess import is_grey

__all__ = ["OracleEnhancer", "invert_intensity_map", "oracle_restore"]


def _factors(params: Mapping[str, Any]) -> tuple[float, float, float]:
    b, c, m = float(params["brightness"]), float(params["contrast"]), float(params["pivot"])
    if not all(np.isfinite([b, c, m])) or b <= 0 or c <= 0:
        raise ValueError(f"the oracle needs finite positive brightness/contrast and a pivot, got {dict(params)}")
    return b, c, m


def invert_intensity_map(lq: np.ndarray, params: Mapping[str, Any], clip: bool = True) -> np.ndarray:
    """Undo Algorithm 1's ``b * (m + c * (x - m))`` with the true ``brightness``, ``contrast`` and ``pivot``.

    Args:
        lq: degraded image, any shape, in [0, 1].
        params: :class:`~dpe_monai.transforms.RandLowQuality`'s ``last_params`` (paper mode).
        clip: clip the result to [0, 1] (off: keep the noise symmetric for a denoiser that follows).

    Returns:
        ``(lq / b - m) / c + m``: the clean image plus the noise (amplified by ``1 / (b c)`` when it was added after
        the exposure drop), minus what clipping destroyed.
    """
    b, c, m = _factors(params)
    out = (lq / b - m) / c + m
    return np.clip(out, 0.0, 1.0) if clip else out


def oracle_restore(img: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """The ceiling for one degraded image ``(C, H, W)`` in [0, 1], C = 1 or 3, given its true ``params``.

    Non-local means at the true noise level, in the domain where the noise has that level: on the degraded image
    when the noise came after the exposure drop (``noise_after``), then the inverse map; otherwise the inverse map
    first (unclipped), then non-local means. Grey images (equal channels) are denoised once and repeated.
    """
    _factors(params)
    sigma = float(params["sigma"]) / 255.0
    grey = is_grey(img)

    def denoise(a: np.ndarray) -> np.ndarray:
        if grey:
            return nlm(a[0], sigma)[None].repeat(a.shape[0], 0)
        return np.moveaxis(nlm(np.moveaxis(a, 0, -1), sigma), -1, 0)

    if bool(params.get("noise_after", False)):
        return invert_intensity_map(np.clip(denoise(img), 0.0, 1.0), params)
    return np.clip(denoise(invert_intensity_map(img, params, clip=False)), 0.0, 1.0)


class OracleEnhancer:
    """Knows each image's true degradation: intensity factors, noise level and order (see :func:`oracle_restore`).

    Not an enhancer anyone can run on a real scan: it is the ceiling a method that estimated the degradation
    perfectly (and denoised as well as non-local means at the true noise level) would reach, so benchmarks can
    report how much of the gap between the best classical method and this ceiling a model closes. ``uses_params``
    tells :func:`~dpe_monai.evaluators.quality.score_enhancers` to call it as ``oracle(lq, params)``.
    """

    uses_params = True
    in_channels = 3
    #: what the ceiling knows and does; benchmarks record it, so a report can tell a row scored by another definition
    definition = "true factors, noise level and order; NLM at the true noise level in the domain where the noise has it"

    def __call__(self, x: torch.Tensor, params: Mapping[str, Any]) -> torch.Tensor:
        """``x``: ``(B, C, H, W)`` degraded images in [0, 1] (one ``params`` for the batch). Returns the same shape."""
        out = [oracle_restore(img.astype(np.float64), params) for img in x.detach().float().cpu().numpy()]
        return torch.from_numpy(np.stack(out).astype(np.float32)).to(x.device)
