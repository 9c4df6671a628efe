"""Classical enhancement baselines (scikit-image), as torch callables on ``(B, C, H, W)`` images in [0, 1]."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from skimage import color, exposure, restoration

from dpe_monai.baselines.illumination import dual, lime
from dpe_monai.transforms.preprocess import is_grey

__all__ = [
    "CLASSICAL",
    "ClassicalEnhancer",
    "auto_levels",
    "auto_levels_nlm",
    "clahe",
    "hist_eq",
    "identity",
    "nlm",
    "nlm_stretch",
    "percentile_stretch",
    "stretch_nlm",
]


def _on_value(img: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``fn`` to the HSV value channel of an RGB ``(H, W, 3)`` image, or directly to a grey ``(H, W)`` one."""
    if img.ndim == 2:
        return fn(img)
    hsv = color.rgb2hsv(img)
    hsv[..., 2] = fn(hsv[..., 2])
    return color.hsv2rgb(hsv)


def identity(img: np.ndarray) -> np.ndarray:
    """The input as-is."""
    return img


def hist_eq(img: np.ndarray) -> np.ndarray:
    """Global histogram equalisation of the luminance (HSV value)."""
    return _on_value(img, lambda v: exposure.equalize_hist(v))


def clahe(img: np.ndarray, clip_limit: float = 0.01) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (``skimage.exposure.equalize_adapthist``; RGB via HSV V)."""
    return exposure.equalize_adapthist(img, clip_limit=clip_limit)


def auto_levels(img: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Percentile stretch: the ``low``/``high`` percentiles of all channels map to 0/1."""
    lo, hi = np.percentile(img, [low, high])
    if hi <= lo:
        return img
    return np.clip((img - lo) / (hi - lo), 0.0, 1.0)


def _noise_sigma(img: np.ndarray) -> float:
    """Robust noise estimate: MAD of horizontal neighbour differences / sqrt(2) (no PyWavelets needed)."""
    diff = np.diff(img, axis=1).ravel()
    return float(1.4826 * np.median(np.abs(diff - np.median(diff))) / np.sqrt(2.0))


def percentile_stretch(img: np.ndarray) -> np.ndarray:
    """The intensity contract's window applied to the image itself: the 0.5-99.5 % percentiles of the grey values
    over the body (:func:`dpe_monai.contract.body_percentiles`) map to 0/1, every channel alike. Under the contract
    this is exactly the target convention of 12/16-bit and HU data, so it is the strongest one-line baseline."""
    from dpe_monai.contract import body_percentiles

    grey = img if img.ndim == 2 else img.mean(axis=-1)
    lo, hi = body_percentiles(grey)
    if hi <= lo:
        return img
    return np.clip((img - lo) / (hi - lo), 0.0, 1.0)


def nlm(img: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """Non-local means (scikit-image, fast mode, 5x5 patches, 13x13 search) at the estimated noise level."""
    channel_axis = -1 if img.ndim == 3 else None
    sigma = _noise_sigma(img) if sigma is None else sigma
    if sigma <= 0:
        return img
    return restoration.denoise_nl_means(
        img, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True, channel_axis=channel_axis
    )


def stretch_nlm(img: np.ndarray) -> np.ndarray:
    """:func:`percentile_stretch`, then :func:`nlm` (suits noise added before the exposure drop)."""
    return nlm(percentile_stretch(img))


def nlm_stretch(img: np.ndarray) -> np.ndarray:
    """:func:`nlm` on the degraded image, then :func:`percentile_stretch` (suits noise added after the exposure drop:
    denoising first keeps the stretch from amplifying it and from reading the noise as the black/white points)."""
    return percentile_stretch(nlm(img))


def auto_levels_nlm(img: np.ndarray) -> np.ndarray:
    """Auto-levels followed by non-local means with the noise level estimated by ``estimate_sigma``."""
    stretched = auto_levels(img)
    channel_axis = -1 if stretched.ndim == 3 else None
    sigma = _noise_sigma(stretched)
    return restoration.denoise_nl_means(
        stretched, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True, channel_axis=channel_axis
    )


CLASSICAL: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": identity,
    "hist_eq": hist_eq,
    "clahe": clahe,
    "auto_levels": auto_levels,
    "auto_levels_nlm": auto_levels_nlm,
    "percentile_stretch": percentile_stretch,
    "stretch_nlm": stretch_nlm,
    "nlm_stretch": nlm_stretch,
    "lime": lime,
    "dual": dual,
}


class ClassicalEnhancer(torch.nn.Module):
    """Wrap a numpy method ``(H, W[, 3]) [0,1] -> same`` as a module on ``(B, C, H, W)`` tensors in [0, 1].

    Grey images with 3 identical channels are processed as grey. It has no parameters, so it drops into any
    place that takes an enhancement network (MONAI evaluators, :class:`~dpe_monai.inference.Enhancer`).

    Args:
        method: a name in :data:`CLASSICAL` or a callable.
    """

    def __init__(self, method: str | Callable[[np.ndarray], np.ndarray]) -> None:
        super().__init__()
        if isinstance(method, str) and method not in CLASSICAL:
            raise ValueError(f"unknown method {method!r}; choose from {sorted(CLASSICAL)}")
        self.name = method if isinstance(method, str) else getattr(method, "__name__", "custom")
        self.fn = CLASSICAL[method] if isinstance(method, str) else method
        self.in_channels = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        for img in x.detach().float().cpu().clamp(0, 1).numpy():
            grey = is_grey(img)
            arr = img[0] if grey else np.moveaxis(img, 0, -1)
            res = np.asarray(self.fn(arr.astype(np.float64)), dtype=np.float32)
            res = np.broadcast_to(res, img.shape).copy() if grey else np.moveaxis(res, -1, 0)
            out.append(np.clip(res, 0.0, 1.0))
        return torch.from_numpy(np.stack(out)).to(x.device)
