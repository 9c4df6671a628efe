"""The unreachable ceiling: invert the simulator's true intensity map, then denoise (benchmarks only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from dpe_monai.baselines.classical import nlm

__all__ = ["OracleEnhancer", "invert_intensity_map"]


def invert_intensity_map(lq: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """Undo Algorithm 1's ``b * (m + c * (x - m))`` with the true ``brightness``, ``contrast`` and ``pivot``.

    Args:
        lq: degraded image, any shape, in [0, 1].
        params: :class:`~dpe_monai.transforms.RandLowQuality`'s ``last_params`` (paper mode).

    Returns:
        ``clip((lq / b - m) / c + m, 0, 1)``: the clean image plus the noise (amplified by ``1 / (b c)`` when it was
        added after the exposure drop), minus what clipping destroyed.
    """
    b, c, m = float(params["brightness"]), float(params["contrast"]), float(params["pivot"])
    if not all(np.isfinite([b, c, m])) or b <= 0 or c <= 0:
        raise ValueError(f"the oracle needs finite positive brightness/contrast and a pivot, got {dict(params)}")
    return np.clip((lq / b - m) / c + m, 0.0, 1.0)


class OracleEnhancer:
    """Knows each image's true degradation factors: inverts them exactly, then applies non-local means.

    Not an enhancer anyone can run on a real scan: it is the ceiling a method that estimated the intensity map
    perfectly (and denoised as well as NLM) would reach, so benchmarks can report how much of the gap between the
    best classical method and this ceiling a model closes. ``uses_params`` tells
    :func:`~dpe_monai.evaluators.quality.score_enhancers` to call it as ``oracle(lq, params)``.
    """

    uses_params = True
    in_channels = 3

    def __call__(self, x: torch.Tensor, params: Mapping[str, Any]) -> torch.Tensor:
        """``x``: ``(B, C, H, W)`` degraded images in [0, 1] (one ``params`` for the batch). Returns the same shape."""
        out = []
        for img in x.detach().float().cpu().numpy():
            inv = invert_intensity_map(img.astype(np.float64), params)
            grey = img.shape[0] == 1 or (np.allclose(inv[0], inv[1]) and np.allclose(inv[0], inv[2]))
            res = (
                nlm(inv[0])[None].repeat(img.shape[0], 0) if grey else np.moveaxis(nlm(np.moveaxis(inv, 0, -1)), -1, 0)
            )
            out.append(np.clip(res, 0.0, 1.0).astype(np.float32))
        return torch.from_numpy(np.stack(out)).to(x.device)
