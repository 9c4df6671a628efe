"""GlobalLocalNet: the global tone-map branch, the residual DPE body, tiling with one tone map, 3-D, export."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from dpe_monai.baselines.classical import percentile_stretch
from dpe_monai.contract import body_percentiles
from dpe_monai.inference import Enhancer
from dpe_monai.networks import GlobalLocalNet, apply_global_intensity, global_summary
from dpe_monai.transforms import GlobalContextd


def _net(**kw) -> GlobalLocalNet:
    torch.manual_seed(0)
    net = GlobalLocalNet(channels=(8, 12, 16), **kw).eval()
    if net.refiner is not None:  # a refiner that acts (its head starts at zero), so export tests see it
        torch.nn.init.normal_(net.refiner.head.weight, std=0.05)
    return net


def _image(shape=(3, 70, 90), seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, shape[1]), torch.linspace(0, 1, shape[2]), indexing="ij")
    base = 0.2 + 0.3 * yy * xx + 0.05 * torch.sin(12 * xx)
    return (base[None].repeat(shape[0], 1, 1) + 0.01 * torch.rand(shape, generator=g)).clamp(0, 1)


def test_untrained_model_is_the_contract_percentile_stretch():
    x = _image()
    with torch.no_grad():
        y = _net()(x[None])[0]
    ref = percentile_stretch(np.moveaxis(x.numpy().astype(np.float64), 0, -1))
    assert np.abs(np.moveaxis(y.numpy(), 0, -1) - ref).max() < 2e-3
    lo, hi = body_percentiles(x.mean(0).numpy())
    s = global_summary(x[None])
    assert abs(float(s[0, 0]) - lo) < 2e-3 and abs(float(s[0, 1]) - hi) < 2e-3


def test_curve_is_monotone_and_bounded():
    params = torch.tensor([[0.1, 0.9, 0.0, 0.1, 0.5, 0.6, 1.0]])
    x = torch.linspace(0, 1, 101).view(1, 1, 1, 101)
    y = apply_global_intensity(x, params)
    assert float(y.min()) == 0.0 and float(y.max()) == 1.0
    assert bool((y[..., 1:] >= y[..., :-1]).all())


def test_context_from_whole_image_matches_inference_on_the_whole_image():
    net = _net()
    with torch.no_grad():
        net.global_branch.mlp[-1].weight.normal_(0, 0.1)  # a non-trivial correction
    x = _image((3, 96, 128))
    ctx = GlobalContextd("lq")({"lq": x})["lq_context"]
    crop = x[None, :, 10:74, 20:84]
    with torch.no_grad():
        whole = net(x[None])[..., 10:74, 20:84]
        from_ctx = net(crop, context=ctx[None])
        from_crop = net(crop)
    assert (whole - from_ctx).abs().mean() < (whole - from_crop).abs().mean() + 1e-7
    assert torch.allclose(net.estimate(x[None])[:, :-1], net.global_branch(crop, summary=ctx[None]), atol=1e-6)


def test_enhancer_tiles_and_slices_share_one_tone_map():
    net = _net()
    x = _image((3, 130, 150))[None]
    e_full = Enhancer(net, precision="fp32", tile_size=512)
    e_tiled = Enhancer(net, precision="fp32", tile_size=64, overlap=0.5)
    full, tiled = e_full(x), e_tiled(x)
    assert (full - tiled).abs().mean() < 0.01  # no per-tile stretch (which would be far off on a gradient image)
    vol = torch.stack([_image((1, 40, 48), s) * (0.5 + 0.1 * s) for s in range(6)], dim=-1)[None]
    out = Enhancer(net, precision="fp32")(vol)
    assert out.shape == vol.shape
    # one tone map for the volume: slice brightness order is kept (a per-slice stretch would equalise it)
    means = out.mean(dim=(0, 1, 2, 3))
    assert bool((means[1:] >= means[:-1] - 1e-4).all())


VARIANTS = [
    {},
    {"denoise_first": True},
    {"prefilter": "nlm"},
    {"prefilter": "nlm", "prefilter_on": "relative"},
    {"prefilter": "nlm", "scan_refiner": True},
    {"prefilter": "nlm", "scan_refiner": True, "refiner_channels": "mean"},
]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dims", [2, 3])
def test_any_size_2d_3d(dims, variant):
    net = _net(spatial_dims=dims, **variant)
    shape = (1, 3, 23, 37) if dims == 2 else (1, 3, 17, 20, 9)
    with torch.no_grad():
        y = net(torch.rand(shape))
    assert y.shape == shape and float(y.min()) >= 0 and float(y.max()) <= 1


@pytest.mark.parametrize("variant", VARIANTS)
def test_torchscript_and_onnx_export(tmp_path, variant):
    net = _net(**variant)
    x = _image((3, 48, 64))[None]
    big = _image((3, 150, 140))[None]
    with torch.no_grad():
        ref = net(x)
        scripted = torch.jit.script(net)  # scripted, so every size takes the same branches as eager
        assert torch.allclose(scripted(x), ref, atol=1e-5)
        assert torch.allclose(scripted(big), net(big), atol=1e-5)
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    path = tmp_path / "gl.onnx"  # the legacy exporter traces: export at the size class you deploy
    torch.onnx.export(net, (x,), str(path), input_names=["image"], output_names=["enhanced"], dynamo=False)
    out = ort.InferenceSession(str(path)).run(None, {"image": x.numpy()})[0]
    assert np.abs(out - ref.numpy()).max() < 1e-4


def test_relative_images_get_exactly_the_contract_stretch():
    """Percentile/DICOM-windowed images (relative=1) bypass the learned correction; 8-bit ones (0) keep it."""
    net = _net()
    with torch.no_grad():
        net.global_branch.mlp[-1].bias.normal_(0, 0.5)  # a large learned correction
    x = _image()[None]
    base = net.global_branch(x, relative=torch.ones(1))
    learned = net.global_branch(x, relative=torch.zeros(1))
    lo, hi = body_percentiles(x[0].mean(0).numpy())
    assert abs(float(base[0, 0]) - lo) < 2e-3 and abs(float(base[0, 1]) - hi) < 2e-3
    assert torch.allclose(base[0, 2:], torch.linspace(0, 1, base.shape[1] - 2), atol=1e-6)
    assert (learned - base).abs().max() > 0.01
    e = Enhancer(net, precision="fp32")
    params = e.global_params(x, relative=True)
    assert torch.allclose(params[:, :-1], base, atol=1e-6) and float(params[0, -1]) == 1.0
    assert float(e.global_params(x, relative=False)[0, -1]) == 0.0


def test_the_convention_flag_reaches_every_tile():
    """The body reads the flag: with a trained body, relative and absolute inputs differ, tiled or not."""
    net = _net()
    with torch.no_grad():
        last = net.body.tail.conv if hasattr(net.body.tail, "conv") else net.body.tail
        last.weight.normal_(0, 0.05)
        net.body.head.weight[:, -1].normal_(0, 1.0)
    x = _image((3, 130, 150))[None]
    whole = Enhancer(net, precision="fp32", tile_size=512)
    tiled = Enhancer(net, precision="fp32", tile_size=64, overlap=0.5)
    rel, ab = whole(x, relative=True), whole(x, relative=False)
    assert (rel - ab).abs().mean() > 1e-3
    assert (tiled(x, relative=True) - rel).abs().mean() < (tiled(x, relative=True) - ab).abs().mean()


def _perturbed(net: GlobalLocalNet, seed: int = 1) -> GlobalLocalNet:
    """``net`` with every weight moved off its initialisation (so the zero-initialised head does something)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net


def test_widened_plain_checkpoint_computes_what_it_did():
    """A plain checkpoint converted for ``denoise_first`` gives the same output: training starts where it was."""
    plain = _perturbed(_net())
    wide = _net(denoise_first=True)
    wide.load_state_dict(GlobalLocalNet.widen_state_dict(plain.state_dict()))
    x = _image()[None]
    with torch.no_grad():
        assert torch.allclose(wide(x), plain(x), atol=1e-6)
    assert wide.body.tail.weight.shape[0] == 2 * plain.body.tail.weight.shape[0]


def test_denoise_first_restores_in_the_input_units():
    """The input-domain group acts before the tone map: a constant correction ``d`` of the input moves the output
    by the tone map's slope times ``d`` (here a pure stretch of a dark, flat-contrast image: slope 1 / width)."""
    net = _net(denoise_first=True)
    x = (0.1 + 0.1 * _image((3, 40, 40))).unsqueeze(0)
    with torch.no_grad():
        params = net.estimate(x)
        base = net(x, params=params)
        tail = net.body.tail
        tail.bias[:3] = 0.002  # tanh(0.002) * input_scale in the input's units, before the tone map
        moved = net(x, params=params)
    lo, hi = float(params[0, 0]), float(params[0, 1])
    shift = net.input_scale * float(torch.tanh(torch.tensor(0.002))) / (hi - lo)
    inside = (base > 0.05) & (base < 0.95 - shift)
    assert 0.005 < shift < 0.1 and inside.float().mean() > 0.5
    assert torch.allclose((moved - base)[inside], torch.full_like(base[inside], shift), atol=1e-4)


def _script(name: str):
    import importlib.util

    from tests.bundle_utils import BUNDLE

    spec = importlib.util.spec_from_file_location(name, BUNDLE / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_widen_checkpoint_script_resumes_as_the_plain_model(tmp_path):
    """widen_checkpoint.py turns a bundle ``model.pt`` into a resumable run whose EMA generator, shipped again by
    ship_checkpoint.py, loads into a ``denoise_first`` network and reproduces the plain model."""
    plain = _perturbed(_net())
    torch.save({"model": plain.state_dict()}, tmp_path / "model.pt")
    info = _script("widen_checkpoint").widen(tmp_path / "model.pt", tmp_path / "run" / "latest.pt")
    assert info["weights"] == "model"
    ckpt = torch.load(tmp_path / "run" / "latest.pt", weights_only=False)
    assert ckpt["trainer"]["epoch"] == 0 and "g_optimizer" not in ckpt
    _script("ship_checkpoint").ship(tmp_path / "run" / "latest.pt", tmp_path / "wide.pt")
    wide = _net(denoise_first=True)
    wide.load_state_dict(torch.load(tmp_path / "wide.pt")["model"])
    x = _image()[None]
    with torch.no_grad():
        assert torch.allclose(wide(x), plain(x), atol=1e-6)


def test_zero_head_start_is_nlm_then_the_shipped_tone_map(tmp_path):
    """widen_checkpoint.py --zero_head: a prefilter run starts as exactly "NLM, then the source's tone map"."""
    from dpe_monai.networks.nonlocal_means import NonLocalMeans, noise_sigma

    plain = _perturbed(_net())
    torch.save({"model": plain.state_dict()}, tmp_path / "model.pt")
    _script("widen_checkpoint").widen(tmp_path / "model.pt", tmp_path / "run" / "latest.pt", zero_head=True)
    _script("ship_checkpoint").ship(tmp_path / "run" / "latest.pt", tmp_path / "nlm.pt")
    net = _net(prefilter="nlm")
    net.load_state_dict(torch.load(tmp_path / "nlm.pt")["model"])
    x = _image()[None]
    with torch.no_grad():
        tone = plain.estimate(x)
        want = apply_global_intensity(NonLocalMeans()(x, noise_sigma(x)), tone[:, :-1]).clamp(0, 1)
        assert torch.allclose(net(x), want, atol=1e-6)
        assert not torch.allclose(net(x), plain(x), atol=1e-3)  # the source's body no longer acts


def test_scan_path_denoises_once():
    """A scan enhanced in one piece runs the NLM layer once (the tone map's estimate reuses it), and gets exactly
    what estimating first and passing the parameters gives (the tiled path)."""
    net = _net(prefilter="nlm", prefilter_on="relative")
    calls = []
    net.prefilter.register_forward_hook(lambda *_: calls.append(1))
    x = (0.3 + 0.2 * _image((1, 48, 48))[None]).expand(2, 3, 48, 48).contiguous()
    x = (x + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    rel = torch.tensor([1.0, 0.0])
    with torch.no_grad():
        once = net(x, relative=rel)
        assert len(calls) == 1
        calls.clear()
        twice = net(x, params=net.estimate(x, relative=rel))
        assert len(calls) == 2 and torch.equal(once, twice)
        calls.clear()
        e = Enhancer(net, precision="fp32")
        assert torch.equal(e(x[:1], relative=True), once[:1]) and len(calls) == 1
        calls.clear()
        small = Enhancer(net, precision="fp32", tile_size=32)  # tiled: the estimate first, then every tile
        small(x[:1], relative=True)
        assert len(calls) > 2


def test_prefilter_on_relative_scans_only():
    """prefilter_on="relative": a relative scan comes back as stretch(NLM(x)) with the window measured on the
    denoised image and nothing learned acting; an absolute image takes the plain network's path unchanged."""
    from dpe_monai.networks.nonlocal_means import NonLocalMeans, noise_sigma

    plain = _perturbed(_net())
    net = _net(prefilter="nlm", prefilter_on="relative")
    net.load_state_dict(plain.state_dict())
    x = (
        0.3
        + 0.2 * _image((1, 64, 64))[None]
        + 0.03 * torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    )
    x = x.expand(1, 3, 64, 64).clamp(0, 1).contiguous()  # a noisy low-contrast grey scan
    rel, ab = torch.ones(1), torch.zeros(1)
    with torch.no_grad():
        den = NonLocalMeans()(x, noise_sigma(x))
        lo, hi = body_percentiles(den[0].mean(0).numpy())
        want = ((den - lo) / (hi - lo)).clamp(0, 1)
        e = Enhancer(net, precision="fp32")
        assert torch.allclose(e(x, relative=True), want, atol=2e-3)
        assert torch.allclose(net(x, relative=rel), want, atol=2e-3)
        noisy_lo, noisy_hi = body_percentiles(x[0].mean(0).numpy())
        assert noisy_hi - noisy_lo > (hi - lo) + 0.02  # the noisy window is wider: the denoised one is the target's
        assert torch.allclose(net(x, relative=ab), plain(x, relative=ab), atol=1e-6)
        assert torch.allclose(e(x, relative=False), Enhancer(plain, precision="fp32")(x, relative=False), atol=1e-6)
        both = net(torch.cat([x, x]), relative=torch.tensor([1.0, 0.0]))  # a mixed batch: each its own path
        assert torch.allclose(both[:1], want, atol=2e-3) and torch.allclose(both[1:], plain(x, relative=ab), atol=1e-5)
        vol = torch.stack([x[0] * (0.8 + 0.05 * s) for s in range(5)], dim=-1)[None]  # a volume, 2-D network
        out = e(vol, relative=True)
        assert out.shape == vol.shape and float(out.min()) >= 0 and float(out.max()) <= 1


def test_well_exposed_scans_keep_their_own_scale():
    """keep_scale=(0.8, 0.9): a scan whose denoised values span >= 0.9 (minimum to 99.5th percentile) comes back as
    NLM(x) on its own scale; one spanning <= 0.8 gets its window exactly as with keep_scale=None; in between the
    output moves continuously from one to the other."""
    from dpe_monai.networks.nonlocal_means import NonLocalMeans, noise_sigma

    net = _net(prefilter="nlm", prefilter_on="relative", keep_scale=(0.8, 0.9))
    ref = _net(prefilter="nlm", prefilter_on="relative", keep_scale=None)
    ref.load_state_dict(net.state_dict())
    with pytest.raises(ValueError, match="keep_scale"):
        _net(prefilter="nlm", keep_scale=(0.9, 0.8))
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    body = ((yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.16).float()  # a disc on a black background, as a brain slice

    def scan(top: float) -> torch.Tensor:
        x = body * (0.3 + (top - 0.3) * (yy - 0.1) / 0.8) + 0.005 * torch.randn(64, 64, generator=g) * body
        return x.clamp(0, 1)[None, None].expand(1, 3, 64, 64).contiguous()

    rel = torch.ones(1)
    with torch.no_grad():
        good = scan(0.95)
        den = NonLocalMeans()(good, noise_sigma(good))
        assert torch.allclose(net(good, relative=rel), den.clamp(0, 1), atol=1e-5)
        assert (ref(good, relative=rel) - good).abs().max() > 0.2  # the window alone would change it that much
        dim = scan(0.55)
        assert torch.allclose(net(dim, relative=rel), ref(dim, relative=rel), atol=1e-6)
        outs = [net(scan(t), relative=rel) for t in (0.86, 0.865, 0.87)]
        assert (outs[0] - outs[1]).abs().max() < 0.06 and (outs[1] - outs[2]).abs().max() < 0.06  # no jump
        mid = scan(0.865)  # inside the ramp: neither the window nor the own scale
        mid_den = NonLocalMeans()(mid, noise_sigma(mid)).clamp(0, 1)
        assert (net(mid, relative=rel) - ref(mid, relative=rel)).abs().max() > 0.01
        assert (net(mid, relative=rel) - mid_den).abs().max() > 0.01
        vol = torch.stack([good[0]] * 4, dim=-1)[None]  # a volume to a 2-D network: the same rule
        assert torch.allclose(Enhancer(net, precision="fp32")(vol, relative=True)[..., 0], den[0], atol=1e-4)


def test_nlm_strength_reaches_the_scan_path():
    """``nlm_h_factor`` sets the scan path's NLM strength (the default is scikit-image's 0.8): a larger factor gives
    a smoother scan."""
    assert _net(prefilter="nlm", prefilter_on="relative").prefilter.h_factor == 0.8
    gen = torch.Generator().manual_seed(1)
    x = (0.3 + 0.2 * _image((1, 64, 64))[None] + 0.03 * torch.randn(1, 1, 64, 64, generator=gen)).clamp(0, 1)
    x = x.expand(1, 3, 64, 64).contiguous()
    outs = {}
    with torch.no_grad():
        for h in (0.8, 1.0):
            net = _net(prefilter="nlm", prefilter_on="relative", nlm_h_factor=h)
            assert net.prefilter.h_factor == h
            outs[h] = net(x, relative=torch.ones(1))
    rough = {h: float((o[..., 1:] - o[..., :-1]).abs().mean()) for h, o in outs.items()}
    assert rough[1.0] < rough[0.8]


def test_double_precision_runs_on_both_paths():
    """``GlobalLocalNet(...).double()`` runs (it raised: the global branch cast its summary to float32 before its
    float64 MLP), on the colour and the scan path, and agrees with float32."""
    torch.manual_seed(0)
    kw = dict(prefilter="nlm", prefilter_on="relative", scan_refiner=True, clean_gate=True)
    net = GlobalLocalNet(channels=(8, 8, 8, 8, 8), **kw).eval()
    x = torch.rand(1, 3, 40, 48) * 0.5
    with torch.no_grad():
        for rel in (torch.tensor([0.0]), torch.tensor([1.0])):
            ref = net(x, relative=rel)
            out = copy.deepcopy(net).double()(x.double(), relative=rel)
            assert out.dtype == torch.float64 and torch.allclose(out.float(), ref, atol=1e-4)


def test_context_of_a_whole_volume_for_a_3d_network():
    """``GlobalContext`` took 2-D images only, so a 3-D global-local network could not be trained on crops of a
    volume with the volume's tone map."""
    from dpe_monai.transforms import GlobalContext

    net = GlobalLocalNet(spatial_dims=3, in_channels=1, out_channels=1, channels=(8, 8, 8, 8, 8)).eval()
    with torch.no_grad():
        net.global_branch.mlp[-1].weight.normal_(0, 0.1)
    vol = torch.stack([_image((1, 40, 48), s) * (0.4 + 0.1 * s) for s in range(8)], dim=-1)  # (1, 40, 48, 8)
    ctx = GlobalContextd("lq")({"lq": vol})["lq_context"]
    torch.testing.assert_close(ctx, net.global_branch.summary(vol[None])[0])
    crop = vol[None, :, 8:40, 16:48, 2:6]
    with torch.no_grad():
        assert torch.allclose(net.estimate(vol[None])[:, :-1], net.global_branch(crop, summary=ctx[None]), atol=1e-6)
        assert net(crop, context=ctx[None]).shape == crop.shape
    with pytest.raises(ValueError, match=r"\(C, H, W, D\) volumes"):
        GlobalContext()(torch.rand(1, 1, 8, 8, 8))
