"""ScanRefiner: a zero-initialised refiner is NLM exactly; channels share it; it learns; the export script loads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from dpe_monai.networks import GlobalLocalNet, ScanRefiner
from dpe_monai.networks.nonlocal_means import NonLocalMeans, noise_sigma
from dpe_monai.networks.scan_refiner import window_of

SCRIPT = Path(__file__).resolve().parents[1] / "bundles" / "dpe_enhancement" / "scripts" / "train_scan_refiner.py"


def _scan(seed: int = 0, size: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    disc = ((yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.1).float()
    clean = 0.1 + 0.2 * disc + 0.05 * torch.sin(9 * xx)
    return (clean + 0.02 * torch.randn(clean.shape, generator=g)).clamp(0, 1)[None, None]


def _script():
    spec = importlib.util.spec_from_file_location("train_scan_refiner", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_untrained_refiner_is_nlm_exactly():
    x = _scan().expand(1, 3, 48, 48).contiguous()
    rel = torch.tensor([1.0])
    torch.manual_seed(0)
    plain = GlobalLocalNet(channels=(8, 12, 16), prefilter="nlm", prefilter_on="relative").eval()
    refined = GlobalLocalNet(channels=(8, 12, 16), prefilter="nlm", prefilter_on="relative", scan_refiner=True).eval()
    missing = refined.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("refiner.") for k in missing)
    with torch.no_grad():
        assert torch.equal(plain(x, relative=rel), refined(x, relative=rel))


def test_channels_share_the_refiner_and_grey_stays_grey():
    torch.manual_seed(0)
    ref = ScanRefiner(2).eval()
    torch.nn.init.normal_(ref.head.weight, std=0.1)
    grey = _scan()
    x = torch.cat([grey, _scan(1), grey], dim=1)
    s = noise_sigma(x)
    d = NonLocalMeans(2)(x, s)
    with torch.no_grad():
        out = ref(x, d, s, window_of(x))
        one = ref(grey, d[:, :1], s, window_of(x))
    assert not torch.equal(out, d)
    assert torch.allclose(out[:, 0], out[:, 2]) and torch.allclose(out[:, :1], one, atol=1e-6)


def test_mean_mode_adds_one_correction_to_every_channel():
    """``channels="mean"``: a grey image with independent noise per channel gains no chroma from the refiner, and the
    correction is the one learned on the channel mean at the mean's own noise level."""
    torch.manual_seed(0)
    each = ScanRefiner(2).eval()
    torch.nn.init.normal_(each.head.weight, std=0.1)
    mean = ScanRefiner(2, channels="mean").eval()
    mean.load_state_dict(each.state_dict())
    x = torch.cat([_scan(0), _scan(1), _scan(2)], dim=1)
    s = noise_sigma(x)
    d = NonLocalMeans(2)(x, s)
    with torch.no_grad():
        out = mean(x, d, s)
        xm, dm = x.mean(1, keepdim=True), d.mean(1, keepdim=True)
        expected = (d + each(xm, dm, noise_sigma(xm), window_of(x)) - dm).clamp(0, 1)
        chroma_each = (each(x, d, s) - d).std(dim=1).mean()
    assert torch.allclose(out, expected, atol=1e-6)
    inside = (out > 0).all(dim=1) & (out < 1).all(dim=1)  # no channel clamped
    spread = (out - d).std(dim=1)[inside]
    assert inside.float().mean() > 0.5 and float(spread.max()) < 1e-6 < float(chroma_each)  # one correction for all
    assert float((out - d).abs().max()) > 1e-3


def test_window_is_the_percentile_window():
    x = torch.rand(2, 1, 64, 64)
    w = window_of(x)
    for i in range(2):
        lo, hi = np.percentile(x[i].numpy(), [0.5, 99.5])
        assert abs(float(w[i, 0]) - lo) < 2e-3 and abs(float(w[i, 1]) - hi) < 2e-3


def test_it_learns_on_the_scripts_pairs():
    """Adam steps on one fixed batch of the training script's pairs bring the error against the noise-free target
    well below NLM's: gradients reach the zero-initialised head and the body through the bound."""
    mod = _script()
    torch.manual_seed(0)
    yy, xx = np.meshgrid(np.linspace(0, 1, 48), np.linspace(0, 1, 48), indexing="ij")
    disc = (((yy - 0.5) ** 2 + (xx - 0.5) ** 2) < 0.1).astype(np.float32)  # black background, as MR/CT have
    scans = {"a": [(disc * (0.5 + 0.3 * k + 0.1 * np.sin(9 * xx))).astype(np.float32) for k in range(3)]}
    x, t, s, w = mod.batch(scans, np.random.default_rng([0]), 8, 32, 0.0)
    nlm, model = NonLocalMeans(2), ScanRefiner(2, features=16)
    span = (w[:, 1] - w[:, 0]).clamp_min(model.min_span).reshape(-1, 1, 1, 1)  # the script's loss: window units
    with torch.no_grad():
        d = nlm(x, s)
        base = float(((d - t).abs() / span).mean())
        assert float(((model(x, d, s, w) - t).abs() / span).mean()) == base  # zero-initialised: NLM exactly
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(100):
        loss = ((model(x, d, s, w) - t).abs() / span).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(((model(x, d, s, w) - t).abs() / span).mean()) < 0.8 * base


def test_export_makes_a_loadable_candidate(tmp_path):
    mod = _script()
    torch.manual_seed(0)
    net = GlobalLocalNet(channels=(8, 12, 16), prefilter="nlm", prefilter_on="relative")
    base = tmp_path / "model.pt"
    torch.save({"model": net.state_dict()}, base)
    ref = ScanRefiner(2)
    torch.nn.init.normal_(ref.head.weight, std=0.1)
    (tmp_path / "run").mkdir()
    torch.save({"model": ref.state_dict(), "iteration": 7}, tmp_path / "run" / "latest.pt")
    mod.export(tmp_path / "run" / "latest.pt", base, tmp_path / "cand" / "model.pt")
    cand = GlobalLocalNet(channels=(8, 12, 16), prefilter="nlm", prefilter_on="relative", scan_refiner=True)
    cand.load_state_dict(torch.load(tmp_path / "cand" / "model.pt", weights_only=True)["model"])  # strict
    assert torch.equal(cand.refiner.head.weight, ref.head.weight)
