"""The colour path restored by non-local means instead of the learned body (``GlobalLocalNet(colour_restore="nlm")``):
``y = T(NLM(x))`` blended by the clean gate; scans exactly as before; scripts and exports."""

from __future__ import annotations

import pytest
import torch

from dpe_monai.networks import GlobalLocalNet
from dpe_monai.networks.global_intensity import apply_global_intensity
from dpe_monai.networks.nonlocal_means import noise_sigma

KW = dict(
    channels=(8, 12, 16),
    prefilter="nlm",
    prefilter_on="relative",
    scan_refiner=True,
    refiner_channels="mean",
    clean_gate=True,
    tone_window="channels",
    nlm_h_factor=1.2,
)


def _pair() -> tuple[GlobalLocalNet, GlobalLocalNet]:
    torch.manual_seed(0)
    body = GlobalLocalNet(**KW).eval()
    for p in body.parameters():  # a trained-like body, tone branch, refiner and gate
        p.data.add_(0.01 * torch.randn_like(p))
    nlm = GlobalLocalNet(colour_restore="nlm", **KW).eval()
    nlm.load_state_dict(body.state_dict())
    return body, nlm


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    ramp = torch.linspace(0.05, 0.4, 48).expand(40, 48)
    colour = torch.stack([ramp, 0.7 * ramp, 0.5 * ramp]) + 0.03 * torch.randn((3, 40, 48), generator=g)
    grey = (ramp + 0.03 * torch.randn((40, 48), generator=g)).expand(3, -1, -1)
    return torch.stack([colour, grey]).clamp(0, 1), torch.tensor([0.0, 1.0])


def test_colour_images_get_the_tone_map_of_their_nlm_output_and_scans_are_unchanged():
    body, nlm = _pair()
    x, rel = _batch()
    with torch.no_grad():
        yb, yn = body(x, relative=rel), nlm(x, relative=rel)
        assert torch.equal(yb[1], yn[1])  # the scan path does not change
        est = nlm.estimate(x[:1], torch.zeros(1))  # tone map, noise level, gate w, flag
        t = apply_global_intensity(nlm.prefilter(x[:1], noise_sigma(x[:1])), est[:, :-3]).clamp(0, 1)
        w = est[0, -2]
        assert torch.allclose(yn[0], (x[:1] + (1 - w) * (t - x[:1]))[0], atol=1e-6)
        assert not torch.allclose(yb[0], yn[0], atol=1e-3)


def test_the_body_is_not_run_on_the_colour_path():
    _, nlm = _pair()
    x, rel = _batch()
    with torch.no_grad():
        before = nlm(x, relative=rel)
        for p in nlm.body.parameters():
            p.data.normal_()
        assert torch.equal(nlm(x, relative=rel), before)
        assert torch.equal(nlm(x[:1]), nlm(x[:1], relative=torch.zeros(1)))  # no flag: a colour image


def test_nlm_smooths_noise_and_adds_no_dark_structure():
    """A flat colour field with noise comes back flatter than the tone map alone would make it, and no pixel is
    darker than the tone map of the field's darkest noisy value."""
    _, nlm = _pair()
    g = torch.Generator().manual_seed(5)
    x = (torch.tensor([0.3, 0.2, 0.1])[:, None, None] + 0.02 * torch.randn((3, 48, 48), generator=g))[None].clamp(0, 1)
    with torch.no_grad():
        est = nlm.estimate(x, torch.zeros(1))
        tone = apply_global_intensity(x, est[:, :-3])
        y = nlm(x, relative=torch.zeros(1))
    assert float(y.std(dim=(2, 3)).mean()) < 0.5 * float(tone.std(dim=(2, 3)).mean())
    assert float(y.amin()) >= float(tone.amin()) - 1e-6


def test_option_is_checked_and_the_network_scripts():
    with pytest.raises(ValueError, match="colour_restore"):
        GlobalLocalNet(colour_restore="nlm")  # no prefilter
    with pytest.raises(ValueError, match="colour_restore"):
        GlobalLocalNet(colour_restore="median", **KW)
    _, nlm = _pair()
    x, rel = _batch()
    scripted = torch.jit.script(nlm)
    with torch.no_grad():
        assert torch.allclose(scripted(x, relative=rel), nlm(x, relative=rel), atol=1e-6)
