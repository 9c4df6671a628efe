"""CIEDE2000 colour difference (DeltaE), the paper's second metric, as a MONAI cumulative metric."""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics.regression import RegressionMetric
from monai.utils import MetricReduction
from skimage.color import deltaE_ciede2000, rgb2lab

__all__ = ["DeltaE2000Metric", "compute_delta_e"]


def _to_rgb_last(x: torch.Tensor) -> np.ndarray:
    """``(B, C, *spatial)`` tensor in [0, 1], C in {1, 3} -> float64 ``(B, *spatial, 3)`` array clipped to [0, 1]."""
    if x.ndim < 3:
        raise ValueError(f"expected (B, C, *spatial), got shape {tuple(x.shape)}")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, *x.shape[2:])
    elif x.shape[1] != 3:
        raise ValueError(f"DeltaE needs 1 (grey, replicated to RGB) or 3 (RGB) channels, got {x.shape[1]}")
    arr = x.detach().to("cpu", torch.float64).movedim(1, -1).numpy()
    return np.clip(arr, 0.0, 1.0)


def compute_delta_e(y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image mean CIEDE2000 difference between ``y_pred`` and ``y``.

    Protocol: both images are clipped to [0, 1], taken as sRGB (a grey channel is replicated to R = G = B),
    converted with ``skimage.color.rgb2lab`` (D65, 2 degree observer) and compared pixel-wise with
    ``skimage.color.deltaE_ciede2000`` (kL = kC = kH = 1); the pixel values are averaged per image.

    Args:
        y_pred: ``(B, C, *spatial)`` in [0, 1], C = 1 or 3.
        y: same shape as ``y_pred``.

    Returns:
        ``(B,)`` float32 tensor on ``y_pred``'s device (0 = identical; lower is better).
    """
    if y_pred.shape != y.shape:
        raise ValueError(f"y_pred and y shapes differ: {tuple(y_pred.shape)} vs {tuple(y.shape)}")
    a, b = _to_rgb_last(y_pred), _to_rgb_last(y)
    values = [float(np.mean(deltaE_ciede2000(rgb2lab(a[i]), rgb2lab(b[i])))) for i in range(a.shape[0])]
    return torch.tensor(values, dtype=torch.float32, device=y_pred.device)


class DeltaE2000Metric(RegressionMetric):
    """Mean CIEDE2000 colour difference per image (see :func:`compute_delta_e`), accumulated over iterations.

    Usage follows MONAI's ``PSNRMetric``::

        metric = DeltaE2000Metric()
        for pred, ref in batches:           # (B, C, H, W) in [0, 1]
            metric(y_pred=pred, y=ref)      # returns (B, 1) for this batch
        value = metric.aggregate().item()   # mean over all images
        metric.reset()

    Args:
        reduction: MONAI reduction of the ``(N, 1)`` buffer (``"mean"``, ``"sum"``, ``"none"``, ...).
        get_not_nans: ``aggregate`` also returns the not-nan count.
    """

    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN, get_not_nans: bool = False) -> None:
        super().__init__(reduction=reduction, get_not_nans=get_not_nans)

    def _compute_metric(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return compute_delta_e(y_pred, y).unsqueeze(1)
