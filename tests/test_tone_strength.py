"""The strength of the colour path's learned tone correction (``GlobalLocalNet(tone_strength=...)``) and the
leave-one-source-out script that chooses it (``scripts/tone_strength.py``)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from dpe_monai.networks import GlobalIntensity, GlobalLocalNet
from dpe_monai.networks.global_intensity import apply_global_intensity
from tests.bundle_utils import BUNDLE


def _branch(strength: float = 1.0) -> GlobalIntensity:
    torch.manual_seed(0)
    branch = GlobalIntensity(in_channels=3, window="channels", strength=strength)
    torch.nn.init.normal_(branch.mlp[-1].weight, std=0.5)  # a trained-like, far from zero correction
    torch.nn.init.normal_(branch.mlp[-1].bias, std=0.5)
    return branch.eval()


def _image() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    ramp = torch.linspace(0.05, 0.5, 48).expand(40, 48)
    return (torch.stack([ramp, 0.8 * ramp, 0.6 * ramp]) + 0.02 * torch.rand((3, 40, 48), generator=g))[None]


def test_strength_zero_is_the_base_window_and_one_the_fitted_correction():
    x = _image()
    full, off = _branch(), _branch()
    off.strength = 0.0
    with torch.no_grad():
        base = full(x, relative=torch.ones(1))  # a scan's map: the base window, no correction
        base_col = apply_global_intensity(x, _branch(0.0)(x, relative=torch.zeros(1)))
        want = apply_global_intensity(x, GlobalIntensity(in_channels=3, window="channels")(x, relative=torch.zeros(1)))
        assert torch.allclose(base_col, want, atol=1e-6)  # strength 0 on the colour path: the untrained branch
        assert not torch.allclose(apply_global_intensity(x, full(x, relative=torch.zeros(1))), want, atol=1e-2)
        assert torch.equal(off(x, relative=torch.ones(1)), base)  # scans are unaffected by any strength


def test_strength_moves_the_map_monotonically_between_the_two():
    """The mean distance from the base window's output grows with the strength (0 -> 1), with no overshoot."""
    x = _image()
    with torch.no_grad():
        base = apply_global_intensity(x, _branch(0.0)(x, relative=torch.zeros(1)))
        dist = [
            float((apply_global_intensity(x, _branch(s)(x, relative=torch.zeros(1))) - base).abs().mean())
            for s in (0.0, 0.25, 0.5, 0.75, 1.0)
        ]
    assert dist[0] == 0.0 and all(b > a for a, b in zip(dist, dist[1:]))


def test_strength_is_checked_scripts_and_loads_any_checkpoint():
    with pytest.raises(ValueError, match="strength"):
        GlobalIntensity(strength=1.5)
    torch.manual_seed(0)
    full = GlobalLocalNet(channels=(8, 12, 16), tone_window="channels").eval()
    half = GlobalLocalNet(channels=(8, 12, 16), tone_window="channels", tone_strength=0.5).eval()
    half.load_state_dict(full.state_dict())  # no weights of its own
    assert half.global_branch.strength == 0.5
    scripted = torch.jit.script(_branch(0.3))
    x = _image()
    with torch.no_grad():
        assert torch.allclose(scripted(x, relative=torch.zeros(1)), _branch(0.3)(x, relative=torch.zeros(1)))


def test_held_out_psnr_scores_each_strength_on_degraded_instances_only():
    spec = importlib.util.spec_from_file_location("tone_strength", BUNDLE / "scripts" / "tone_strength.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from dpe_monai.networks.global_intensity import global_summary

    x = _image()
    clean = x.reshape(1, 3, -1)
    low = 0.5 * x  # a darkened copy, and a clean pair that must not count
    summary = global_summary(torch.cat([low, x]))
    data = [summary, torch.cat([low.reshape(1, 3, -1), clean]), torch.cat([clean, clean])]
    branch = GlobalIntensity(in_channels=3, window="channels")  # untrained: every strength is the base window
    curve = module.held_out_psnr(branch, data, [0.0, 1.0])
    with torch.no_grad():
        y = apply_global_intensity(low.reshape(1, 3, -1), branch(low, summary=summary[:1]))
    want = float(-10 * torch.log10(((y - clean) ** 2).mean()))
    assert curve == pytest.approx([want, want], abs=1e-4)
