"""Tests of dpe_monai.metrics: DeltaE (CIEDE2000), the feature distance, and the re-exported PSNR / SSIM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import CumulativeIterationMetric
from skimage.color import deltaE_ciede2000, rgb2lab

from dpe_monai.metrics import (
    DeltaE2000Metric,
    FeatureDistanceMetric,
    PSNRMetric,
    SSIMMetric,
    compute_delta_e,
    compute_feature_distance,
)


def _pair(channels: int, seed: int = 0, batch: int = 3, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(batch, channels, size, size, generator=g)
    y_pred = (y + 0.1 * torch.randn(y.shape, generator=g)).clamp(0, 1)
    return y_pred, y


def _skimage_delta_e(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    out = []
    for x, y in zip(a.numpy().astype(np.float64), b.numpy().astype(np.float64)):
        if x.shape[0] == 1:
            x, y = np.repeat(x, 3, axis=0), np.repeat(y, 3, axis=0)
        lab_x, lab_y = rgb2lab(np.moveaxis(x, 0, -1)), rgb2lab(np.moveaxis(y, 0, -1))
        out.append(deltaE_ciede2000(lab_x, lab_y).mean())
    return np.asarray(out)


@pytest.mark.parametrize("channels", [3, 1])
def test_delta_e_matches_skimage(channels):
    y_pred, y = _pair(channels)
    values = compute_delta_e(y_pred, y)
    assert values.shape == (3,) and values.dtype == torch.float32
    np.testing.assert_allclose(values.numpy(), _skimage_delta_e(y_pred, y), rtol=1e-5)
    assert torch.all(values > 0)
    assert torch.all(compute_delta_e(y, y) == 0)


def test_delta_e_metric_accumulates():
    metric = DeltaE2000Metric()
    assert isinstance(metric, CumulativeIterationMetric)
    batches = [_pair(3, seed=s, batch=b) for s, b in ((0, 2), (1, 3))]
    for y_pred, y in batches:
        assert metric(y_pred=y_pred, y=y).shape == (y.shape[0], 1)
    expected = np.concatenate([_skimage_delta_e(p, t) for p, t in batches])
    assert metric.aggregate().item() == pytest.approx(expected.mean(), rel=1e-5)
    assert metric.aggregate(reduction="none").shape == (5, 1)
    metric.reset()
    metric(y_pred=[batches[0][0][0]], y=[batches[0][1][0]])  # a list of channel-first images
    assert metric.aggregate().item() == pytest.approx(expected[0], rel=1e-5)
    with pytest.raises(ValueError):
        compute_delta_e(torch.rand(1, 2, 8, 8), torch.rand(1, 2, 8, 8))


def test_feature_distance_metric():
    metric = FeatureDistanceMetric()  # HED VGG-16, LPIPS layers
    assert metric.backbone.layers == ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
    y = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    small, large = (y + 0.05 * noise).clamp(0, 1), (y + 0.3 * noise).clamp(0, 1)
    assert torch.all(compute_feature_distance(metric.backbone, y, y) == 0)
    d_small, d_large = metric(y_pred=small, y=y), metric(y_pred=large, y=y)
    assert d_small.shape == (2, 1)
    assert torch.all(d_small > 0) and torch.all(d_large > d_small) and torch.all(d_large <= 4)
    assert metric.aggregate().item() == pytest.approx(torch.cat([d_small, d_large]).mean().item(), rel=1e-6)
    assert "not LPIPS" in FeatureDistanceMetric.__doc__


def test_psnr_ssim_importable_and_work():
    y_pred, y = _pair(1, size=32)
    psnr = PSNRMetric(max_val=1.0)
    assert psnr(y_pred, y).shape == (3, 1) and psnr.aggregate().item() > 10
    ssim = SSIMMetric(spatial_dims=2, data_range=1.0, win_size=7)
    value = ssim(y_pred, y)
    assert value.shape == (3, 1) and torch.all(value < 1)
    assert SSIMMetric(spatial_dims=2, data_range=1.0, win_size=7)(y, y).mean().item() == pytest.approx(1.0)
