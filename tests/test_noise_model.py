"""The signal-dependent noise model: noise_level_function, NonLocalMeans(gain=...), GlobalLocalNet(noise_model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpe_monai.networks import GlobalLocalNet
from dpe_monai.networks.nonlocal_means import NonLocalMeans, noise_level_function, noise_sigma

PHOTONS = 300.0  # photons per unit intensity: variance x / 300, as low-dose CT at a third of the full dose


def _clean(shape=(96, 112)) -> np.ndarray:
    yy, xx = np.meshgrid(np.linspace(0, 1, shape[0]), np.linspace(0, 1, shape[1]), indexing="ij")
    return 0.08 + 0.6 * (xx > 0.5) + 0.25 * yy + 0.04 * np.sin(11 * xx)


def _poisson(clean: np.ndarray, seed: int = 0) -> np.ndarray:
    return np.clip(np.random.default_rng(seed).poisson(clean * PHOTONS) / PHOTONS, 0, 1)


def _gauss(clean: np.ndarray, sigma: float = 0.03, seed: int = 0) -> np.ndarray:
    return np.clip(clean + np.random.default_rng(seed).normal(0, sigma, clean.shape), 0, 1)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float32)[None, None].expand(1, 3, -1, -1).contiguous()


def _psnr(a: torch.Tensor, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a[0, 0].numpy() - b) ** 2)))


def test_noise_level_function_tells_poisson_from_gaussian():
    clean = _clean()
    sigma, gain = noise_level_function(torch.cat([_t(_poisson(clean)), _t(_gauss(clean))]))
    assert float(gain[0]) == pytest.approx(1.0 / PHOTONS, rel=0.3)  # the photon count comes back
    assert float(gain[1]) == 0.0  # additive noise keeps the Gaussian model exactly
    assert float(sigma[1]) == pytest.approx(float(noise_sigma(_t(_gauss(clean)))[0]))


def test_stabilised_nlm_beats_one_level_on_poisson_noise_and_is_plain_without_gain():
    clean = _clean()
    x = _t(_poisson(clean))
    layer = NonLocalMeans()
    sigma, gain = noise_level_function(x)
    with torch.no_grad():
        plain = layer(x, noise_sigma(x))
        stabilised = layer(x, sigma, gain)
        assert _psnr(stabilised, clean) > _psnr(plain, clean) + 1.0
        assert torch.equal(layer(x, noise_sigma(x), torch.zeros(1)), plain)


def test_auto_noise_model_changes_only_signal_dependent_scans():
    """Additive noise (with or without a clipped plateau) keeps the Gaussian model exactly; quantum noise is
    stabilised and comes closer to the noiseless image's own window."""
    torch.manual_seed(0)
    kw = {"channels": (8, 12, 16), "prefilter": "nlm", "prefilter_on": "relative"}
    gaussian, auto = GlobalLocalNet(**kw).eval(), GlobalLocalNet(noise_model="auto", **kw).eval()
    auto.load_state_dict(gaussian.state_dict())  # no weights of its own
    clean = _clean()
    rel = torch.ones(1)
    with torch.no_grad():
        additive = _t(_gauss(clean))
        assert torch.equal(auto(additive, relative=rel), gaussian(additive, relative=rel))
        plateau = clean.copy()
        plateau[:, -20:] = 1.0
        additive = _t(_gauss(plateau))
        assert torch.equal(auto(additive, relative=rel), gaussian(additive, relative=rel))
        quantum = _t(_poisson(clean))
        target = gaussian(_t(clean), relative=rel)[0, 0].numpy()  # the noiseless image's own window
        assert _psnr(auto(quantum, relative=rel), target) > _psnr(gaussian(quantum, relative=rel), target) + 1.0
        params = auto.estimate(quantum, relative=rel)
        assert params.shape[1] == gaussian.estimate(quantum, relative=rel).shape[1] + 1  # the gain column
        assert float(params[0, -2]) > 0 and float(params[0, -1]) == 1.0
        tile = quantum[..., :48, :64]  # tiles get the whole image's model with the params
        assert torch.allclose(auto(tile, params=params), auto(quantum, params=params)[..., :48, :64], atol=0.05)
        # TorchScript keeps the Gaussian model
        scripted = torch.jit.script(auto)
        assert torch.allclose(scripted(quantum, relative=rel), gaussian(quantum, relative=rel), atol=1e-5)
    with pytest.raises(ValueError, match="noise_model"):
        GlobalLocalNet(noise_model="poisson")
    with pytest.raises(ValueError, match="prefilter"):
        GlobalLocalNet(noise_model="auto")


def test_auto_noise_model_reads_a_volume():
    """A volume given to a 2-D network: the model is fitted on its slices and travels with the volume's params."""
    torch.manual_seed(0)
    net = GlobalLocalNet(channels=(8, 12, 16), prefilter="nlm", prefilter_on="relative", noise_model="auto").eval()
    vol = np.stack([_poisson(_clean((48, 56)), seed=s) for s in range(6)], -1)
    x = torch.tensor(vol, dtype=torch.float32)[None, None].expand(1, 3, -1, -1, -1).contiguous()
    with torch.no_grad():
        params = net.estimate(x, relative=torch.ones(1))
    assert params.shape[0] == 1 and float(params[0, -2]) == pytest.approx(1.0 / PHOTONS, rel=0.3)


def test_a_saturated_scan_keeps_its_clip_level():
    """Denoising pulls a clipped plateau below the clip level; the auto model's window keeps the input's maximum."""
    torch.manual_seed(0)
    # the window itself (keep_scale would give these full-range scans their own scale whatever the window)
    kw = {"channels": (8, 12, 16), "prefilter": "nlm", "prefilter_on": "relative", "keep_scale": None}
    gaussian, auto = GlobalLocalNet(**kw).eval(), GlobalLocalNet(noise_model="auto", **kw).eval()
    clean = _clean()
    clean[:, -20:] = 1.0  # a structure clipped at the top of the window (bone in a soft-tissue CT export)
    x = _t(_poisson(np.clip(clean, 0, None)))
    rel = torch.ones(1)
    with torch.no_grad():
        hi_auto = float(auto.estimate(x, relative=rel)[0, 1])
        hi_gauss = float(gaussian.estimate(x, relative=rel)[0, 1])
    assert hi_auto == 1.0 and hi_gauss < hi_auto
    # noise tails of bright tissue crossing the clip level are not a plateau: the window stays the denoised one
    tails = _t(_poisson(_clean()))
    with torch.no_grad():
        assert float(auto.estimate(tails, relative=rel)[0, 1]) < 0.99
