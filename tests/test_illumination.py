"""LIME and DUAL (dpe_monai.baselines.illumination): exact cases, ranges, grey/RGB handling, registration."""

from __future__ import annotations

import numpy as np
import torch

from dpe_monai.baselines import CLASSICAL, ClassicalEnhancer
from dpe_monai.baselines.illumination import dual, exposure_fusion, lime, refine_illumination


def _scene(shape=(48, 40), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] / max(shape)
    base = 0.5 + 0.3 * np.sin(7 * xx) * np.cos(5 * yy)
    rgb = np.stack([base, 0.8 * base, 1 - 0.6 * base], -1) + rng.normal(0, 0.01, (*shape, 3))
    return np.clip(rgb, 0, 1)


def test_refine_keeps_constant_map_and_smooths_noise():
    flat = np.full((20, 30), 0.3)
    np.testing.assert_allclose(refine_illumination(flat), flat, atol=1e-10)  # the smoothness term vanishes
    noisy = flat + np.random.default_rng(0).normal(0, 0.05, flat.shape)
    refined = refine_illumination(noisy, alpha=1.0)
    assert refined.std() < noisy.std() and abs(refined.mean() - noisy.mean()) < 1e-2


def test_lime_exact_on_uniform_grey_and_brightens_dark_rgb():
    grey = np.full((16, 16), 0.25)
    np.testing.assert_allclose(lime(grey), 0.25**0.2, atol=1e-8)  # I / T^0.8 with T = I
    dark = _scene() * 0.25
    out = lime(dark)
    assert out.shape == dark.shape and out.min() >= 0 and out.max() <= 1
    assert out.mean() > 2 * dark.mean()


def test_exposure_fusion_of_identical_images_is_exact():
    img = _scene((37, 29))
    np.testing.assert_allclose(exposure_fusion([img, img, img]), img, atol=1e-10)
    grey = img[..., 0]
    np.testing.assert_allclose(exposure_fusion([grey, grey]), grey, atol=1e-10)


def test_dual_corrects_both_exposures():
    img = _scene()
    under, over = dual(img * 0.3), dual(np.clip(0.4 + img, 0, 1))
    assert under.mean() > (img * 0.3).mean()
    assert over.mean() < np.clip(0.4 + img, 0, 1).mean()
    for out in (under, over, dual(img[..., 1])):
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_registered_as_classical_methods():
    assert CLASSICAL["lime"] is lime and CLASSICAL["dual"] is dual
    x = torch.from_numpy(np.moveaxis(_scene((24, 24)) * 0.3, -1, 0)).float()[None]
    for name in ("lime", "dual"):
        y = ClassicalEnhancer(name)(torch.cat([x, x.mean(1, keepdim=True).expand(-1, 3, -1, -1)]))
        assert y.shape == (2, 3, 24, 24) and y.dtype == torch.float32
        assert torch.allclose(y[1, 0], y[1, 2])  # a grey image stays grey
