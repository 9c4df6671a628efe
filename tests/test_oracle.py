"""The oracle ceiling: it knows the degradation, so it must beat every classical method in both noise orders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data, transform

from dpe_monai.baselines import ClassicalEnhancer, OracleEnhancer
from dpe_monai.baselines.classical import nlm
from dpe_monai.baselines.oracle import invert_intensity_map
from dpe_monai.transforms import RandLowQuality


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / ((a - b) ** 2).mean()))


def scene(rgb: bool) -> torch.Tensor:
    """``(3, 128, 128)`` real photograph in [0, 1]: grey (equal channels) or colour."""
    img = data.astronaut() if rgb else np.repeat(data.camera()[..., None], 3, axis=-1)
    img = transform.resize(img, (128, 128), anti_aliasing=True).astype(np.float32)
    return torch.from_numpy(np.moveaxis(img, -1, 0))


@pytest.mark.parametrize("order", ["before", "after"])
@pytest.mark.parametrize("rgb", [False, True])
def test_oracle_beats_the_best_classical_method(order, rgb):
    clean = scene(rgb)
    oracle, old, best = [], [], []
    for seed in range(3):
        t = RandLowQuality(mode="paper", noise_order=order, brightness_threshold=None).set_random_state(seed)
        lq = t(clean)
        params = t.last_params
        assert params["noise_after"] == (order == "after") and params["sigma"] > 0
        oracle.append(psnr(OracleEnhancer()(lq[None], params)[0], clean))
        naive = invert_intensity_map(lq.numpy().astype(np.float64), params)  # the earlier oracle: invert, then NLM
        old.append(psnr(ClassicalEnhancer(nlm)(torch.from_numpy(naive).float()[None])[0], clean))
        best.append(max(psnr(ClassicalEnhancer(m)(lq[None])[0], clean) for m in ("stretch_nlm", "nlm_stretch")))
    assert np.mean(oracle) > np.mean(best) + 1.0, (oracle, best)
    assert np.mean(oracle) >= np.mean(old) - 0.1, (oracle, old)  # never below inverting first


def test_oracle_refuses_unknown_factors():
    t = RandLowQuality(mode="paper", prob=0.0)
    lq = t(scene(False))
    with pytest.raises(ValueError, match="oracle needs"):
        OracleEnhancer()(lq[None], t.last_params)
