"""The colour path's base window over all channel values (``GlobalLocalNet(tone_window="channels")``, bundle 0.14.0),
and the tools that trained it: per-source sampling in fit_global.py, ship_checkpoint.py --base."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from dpe_monai.contract import body_percentiles
from dpe_monai.networks import GlobalIntensity, GlobalLocalNet, global_summary
from tests.bundle_utils import BUNDLE


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, BUNDLE / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _red(seed: int = 0) -> torch.Tensor:
    """A red-dominant ``(3, 64, 80)`` photograph-like image (as a fundus photograph): red up to 0.9, green and blue
    far below, so the channel mean ends near 0.45."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0.0, 1.0, 80).expand(64, 80)
    noise = 0.02 * torch.rand((3, 64, 80), generator=g)
    return (torch.stack([0.5 + 0.4 * ramp, 0.2 + 0.2 * ramp, 0.05 + 0.1 * ramp]) + noise).clamp(0, 1)


def _pair(**kw) -> tuple[GlobalLocalNet, GlobalLocalNet]:
    """The same weights (a perturbed tone branch and body) with the grey and with the channel window."""
    torch.manual_seed(0)
    grey = GlobalLocalNet(channels=(8, 12, 16), **kw).eval()
    for p in grey.parameters():
        p.data.add_(0.01 * torch.randn_like(p))
    chan = GlobalLocalNet(channels=(8, 12, 16), tone_window="channels", **kw).eval()
    chan.load_state_dict(grey.state_dict())
    return grey, chan


def test_summary_carries_the_window_over_all_channel_values():
    x = _red()
    s = global_summary(x[None])
    lo, hi = body_percentiles(x.numpy().reshape(-1))
    assert abs(float(s[0, -3]) - lo) < 2e-3 and abs(float(s[0, -2]) - hi) < 2e-3
    assert float(s[0, 1]) < hi - 0.3  # the grey window ends far below the red channel's top


def test_untrained_channel_window_does_not_clip_the_red_channel():
    """An untrained branch is its base window: the grey one clips most of a red-dominant image's red channel to
    white, the channel window clips only the top 0.5 % of values, as auto-levels would."""
    x = _red()[None]
    grey, chan = (
        GlobalLocalNet(channels=(8, 12, 16)).eval(),
        GlobalLocalNet(channels=(8, 12, 16), tone_window="channels"),
    )
    with torch.no_grad():
        clipped_grey = float((grey(x)[0, 0] >= 0.999).float().mean())
        clipped_chan = float((chan.eval()(x)[0, 0] >= 0.999).float().mean())
    assert clipped_grey > 0.5 and clipped_chan < 0.02


def test_scans_keep_the_grey_window_and_grey_images_have_about_one_window():
    """Scans (``relative``) keep the grey window on the scan path, colour or grey; a grey image given to the colour
    path (it never is by the CLI: grey images are scans) gets the same window up to the quantile's rounding over
    three times the samples; colour images on the colour path change."""
    grey_net, chan_net = _pair(prefilter="nlm", prefilter_on="relative", scan_refiner=True, refiner_channels="mean")
    g = _red()[:1].expand(3, -1, -1)[None].contiguous()
    c = _red()[None]
    rel, col = torch.ones(1), torch.zeros(1)
    with torch.no_grad():
        for x in (g, c):
            assert torch.equal(grey_net(x, relative=rel), chan_net(x, relative=rel))
        assert torch.allclose(grey_net(g, relative=col), chan_net(g, relative=col), atol=5e-3)
        assert not torch.allclose(grey_net(c, relative=col), chan_net(c, relative=col), atol=1e-2)


def test_channel_window_scripts_and_matches_eager():
    _, net = _pair(prefilter="nlm", prefilter_on="relative")
    scripted = torch.jit.script(net)
    x = _red()[None]
    for rel in (0.0, 1.0):
        flag = torch.tensor([rel])
        with torch.no_grad():
            assert torch.allclose(scripted(x, relative=flag), net(x, relative=flag), atol=1e-5)


def test_unknown_window_is_refused():
    with pytest.raises(ValueError, match="window must be 'grey' or 'channels'"):
        GlobalIntensity(window="lab")


def test_fit_global_draws_every_source_alike_at_power_one():
    weights = _script("fit_global")._weights(["ph2"] * 90 + ["he"] * 9 + ["photo"], 1.0)
    shares = [float(weights[a:b].sum() / weights.sum()) for a, b in ((0, 90), (90, 99), (99, 100))]
    assert np.allclose(shares, 1 / 3)
    uniform = _script("fit_global")._weights(["ph2"] * 90 + ["he"] * 10, 0.0)
    assert torch.all(uniform == 1.0)


def test_ship_checkpoint_keeps_the_base_tensors_the_run_did_not_train(tmp_path):
    """A body trained with train.json's plain network, shipped with ``--base``: the shipped model's refiner and gate
    come back unchanged and the trained tensors replace the rest."""
    shipped = GlobalLocalNet(channels=(8, 12, 16), prefilter="nlm", scan_refiner=True, clean_gate=True)
    for p in shipped.parameters():
        p.data.normal_()
    torch.save({"model": shipped.state_dict()}, tmp_path / "model.pt")
    trained = GlobalLocalNet(channels=(8, 12, 16))
    state = {"module." + k: torch.zeros_like(v) for k, v in trained.state_dict().items()}
    torch.save({"ema_network": {**state, "n_averaged": torch.tensor(3)}}, tmp_path / "latest.pt")
    info = _script("ship_checkpoint").ship(tmp_path / "latest.pt", tmp_path / "out.pt", base=tmp_path / "model.pt")
    out = torch.load(tmp_path / "out.pt")["model"]
    base = shipped.state_dict()
    assert info["kept_from_base"] == len(base) - len(trained.state_dict())
    assert set(out) == set(base)
    for k, v in out.items():
        if k.startswith(("refiner.", "gate.")):
            assert torch.equal(v, base[k])
        else:
            assert not v.any()
