"""NonLocalMeans: the layer reproduces scikit-image's fast NLM, keeps clean images, and GlobalLocalNet(prefilter)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpe_monai.baselines.classical import _noise_sigma, nlm
from dpe_monai.networks import GlobalLocalNet
from dpe_monai.networks.nonlocal_means import NonLocalMeans, noise_sigma


def _noisy(shape=(64, 80), sigma=0.03, seed=0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, shape[0]), np.linspace(0, 1, shape[1]), indexing="ij")
    clean = 0.3 + 0.3 * (xx > 0.5) + 0.1 * np.sin(9 * yy)
    return clean, np.clip(clean + rng.normal(0, sigma, shape), 0, 1)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


def test_noise_sigma_matches_the_classical_estimate():
    _, noisy = _noisy()
    x = torch.tensor(noisy, dtype=torch.float32)[None, None].expand(2, 3, -1, -1)
    s = noise_sigma(x)
    assert s.shape == (2,)
    assert float(s[0]) == pytest.approx(_noise_sigma(noisy), rel=1e-3)


def test_layer_reproduces_scikit_image_fast_nlm():
    clean, noisy = _noisy()
    ref = nlm(noisy)
    x = torch.tensor(noisy, dtype=torch.float32)[None, None]
    with torch.no_grad():
        out = NonLocalMeans()(x)[0, 0].numpy()
    assert _psnr(out, ref) > 40.0  # the same filter (borders and float32 differ slightly)
    assert _psnr(out, clean) > _psnr(noisy, clean) + 3.0


def test_grey_as_three_channels_equals_grey_and_noiseless_is_unchanged():
    _, noisy = _noisy()
    grey = torch.tensor(noisy, dtype=torch.float32)[None, None]
    layer = NonLocalMeans()
    with torch.no_grad():
        assert torch.allclose(layer(grey.expand(1, 3, -1, -1))[:, :1], layer(grey), atol=1e-6)
        rgb = grey.expand(1, 3, -1, -1)  # the grey shortcut computes what the three-channel filter does
        assert torch.allclose(layer._denoise(rgb, noise_sigma(rgb)), layer(rgb), atol=1e-6)
        flat = torch.full((1, 1, 20, 20), 0.4)
        assert torch.equal(layer(flat), flat)  # sigma 0: returned as it is


def test_3d_and_torchscript():
    layer = NonLocalMeans(spatial_dims=3, patch_distance=2)
    x = torch.rand(1, 1, 12, 10, 9)
    with torch.no_grad():
        y = layer(x)
        assert y.shape == x.shape
        scripted = torch.jit.script(NonLocalMeans())
        x2 = torch.rand(1, 3, 30, 26)
        assert torch.allclose(scripted(x2), NonLocalMeans()(x2), atol=1e-6)


def test_prefilter_is_nlm_then_the_tone_map_untrained_and_loads_plain_weights():
    torch.manual_seed(0)
    plain = GlobalLocalNet(channels=(8, 12, 16)).eval()
    net = GlobalLocalNet(channels=(8, 12, 16), prefilter="nlm").eval()
    net.load_state_dict(plain.state_dict())  # no weights of its own: a shipped checkpoint loads as it is
    _, noisy = _noisy((48, 64))
    x = torch.tensor(noisy, dtype=torch.float32)[None, None].expand(1, 3, -1, -1).contiguous()
    with torch.no_grad():
        params = net.estimate(x)
        assert params.shape[1] == plain.estimate(x).shape[1] + 1  # the noise level travels with the tone map
        assert float(params[0, -2]) == pytest.approx(float(noise_sigma(x)[0]))
        want = plain(NonLocalMeans()(x, noise_sigma(x)), params=plain.estimate(x))
        assert torch.allclose(net(x), want, atol=1e-6)
        # tiles that get the whole image's params are filtered at the whole image's noise level
        tile = x[..., :32, :40]
        assert torch.allclose(
            net(tile, params=params), plain(NonLocalMeans()(tile, params[:, -2]), params=plain.estimate(x)), atol=1e-6
        )


def test_a_training_crop_is_denoised_at_its_whole_image_noise_level():
    """In training a crop gets its whole image's summary as ``context``; the prefilter must then use the whole
    image's noise level, as inference does, not the crop's (a crop of flat background reads 0)."""
    from dpe_monai.transforms import GlobalContextd

    torch.manual_seed(0)
    net = GlobalLocalNet(channels=(8, 12, 16), prefilter="nlm").eval()
    clean, noisy = _noisy((64, 96), sigma=0.04)
    noisy[:, :40] = 0.3  # flat background on the left, without noise
    whole = torch.tensor(noisy, dtype=torch.float32)[None].expand(3, -1, -1).contiguous()
    context = GlobalContextd(keys="image", context_keys="ctx")({"image": whole})["ctx"][None]
    crop = whole[None, :, :, :32]
    assert float(noise_sigma(crop)[0]) == 0.0 and float(context[0, -1]) > 0.0
    with torch.no_grad():
        assert torch.allclose(net(crop, context=context), net(crop, params=net.estimate(whole[None])), atol=1e-6)


def test_sure_picks_the_strength_with_the_lowest_true_error():
    """At a known noise level, Monte-Carlo SURE follows the true error against the noise-free image: the factor it
    picks is within 2 % of the best one's MSE, at two noise levels; the layer then denoises at that factor, and a
    scripted layer keeps the fixed factor."""
    from skimage import data

    clean = torch.tensor(data.camera()[::4, ::4] / 255.0, dtype=torch.float32)[None, None] * 0.5 + 0.1
    factors = [0.4, 0.8, 1.6]
    layer = NonLocalMeans(sure_factors=factors)
    for s in (0.01, 0.05):
        y = clean + s * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
        sigma = torch.tensor([s])
        mse = {f: float((NonLocalMeans(h_factor=f)(y, sigma) - clean).square().mean()) for f in factors}
        pick = min(factors, key=lambda f: abs(f - float(layer.sure_h_factor(y, sigma)[0])))
        assert mse[pick] <= 1.02 * min(mse.values()), (s, pick, mse)
        assert torch.allclose(layer(y, sigma), NonLocalMeans(h_factor=pick)(y, sigma), atol=1e-6)
    scripted = torch.jit.script(NonLocalMeans(sure_factors=factors))
    assert torch.allclose(scripted(y, sigma), NonLocalMeans()(y, sigma), atol=1e-5)  # h_factor 0.8 when scripted
