"""Enhancer: the shared inference path (tiling, precision choice, grey handling, 3-D slicing, bundles)."""

from __future__ import annotations

import pytest
import torch

from dpe_monai.inference import Enhancer, EnhancerInferer
from dpe_monai.networks import DPENet
from tests.tiny_bundle import make_tiny_bundle


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return DPENet(channels=(8, 12, 16)).eval()


def test_matches_network_and_tiles_without_seams(net):
    x = torch.rand(1, 3, 80, 100)
    full = Enhancer(net, precision="fp32", tile_size=512)(x)
    with torch.no_grad():
        assert torch.allclose(full, net(x).clamp(0, 1), atol=1e-5)
    tiled = Enhancer(net, precision="fp32", tile_size=48, overlap=0.5)(x)
    assert tiled.shape == x.shape
    assert (tiled - full).abs().mean() < 0.02  # Gaussian-blended tiles stay close to the untiled result


def test_precision_auto_is_checked_against_fp32(net):
    e = Enhancer(net, precision="auto")
    assert e.precision in ("fp32", "bf16")
    if e.precision == "bf16":
        assert e.precision_check["max_abs_diff"] <= e.tolerance
    with pytest.raises(ValueError, match="fp16"):
        Enhancer(net, device="cpu", precision="fp16")


def test_grey_inputs_and_volumes(net):
    e = Enhancer(net, precision="fp32")
    grey = torch.rand(2, 1, 33, 40)
    assert e(grey).shape == (2, 1, 33, 40)
    rgb_grey = e(grey.expand(-1, 3, -1, -1))
    assert torch.equal(rgb_grey[:, 0], rgb_grey[:, 2])
    vol = torch.rand(1, 1, 20, 24, 5)
    out = e(vol)
    assert out.shape == vol.shape
    assert torch.allclose(out[..., 2], e(vol[..., 2]), atol=1e-6)  # slice-wise along the last axis
    with pytest.raises(ValueError, match="channels"):
        e(torch.rand(1, 2, 16, 16))


def test_from_bundle_and_inferer(tmp_path, net):
    bundle = make_tiny_bundle(tmp_path / "bundle")
    e = Enhancer.from_bundle(bundle, precision="fp32")
    assert e(torch.rand(1, 3, 30, 30)).shape == (1, 3, 30, 30)
    inferer = EnhancerInferer(precision="fp32")
    assert inferer(torch.rand(1, 3, 24, 24), net).shape == (1, 3, 24, 24)


def test_a_volume_sliced_into_lines_is_refused_by_name(net):
    """A (96, 96, 1) volume sliced along axis 0 gives 96x1 slices: a clear refusal, not an index error deep inside."""
    with pytest.raises(ValueError, match="slices along axis 0 are 96x1 pixels"):
        Enhancer(net, device="cpu", precision="fp32", axis=0)(torch.rand(1, 1, 96, 96, 1))
    assert Enhancer(net, device="cpu", precision="fp32", axis=2)(torch.rand(1, 1, 96, 96, 1)).shape == (1, 1, 96, 96, 1)


def test_a_colour_volume_enhances_outside_inference_mode(net):
    """An RGB volume called from plain code (no ``torch.inference_mode`` around it) once failed inside MONAI's
    slice inferer, which blends the slices in place."""
    out = Enhancer(net, device="cpu", precision="fp32")(torch.rand(1, 3, 40, 48, 3))
    assert out.shape == (1, 3, 40, 48, 3) and torch.isfinite(out).all()


def test_inputs_outside_the_unit_range_are_refused(net):
    """Integer data, NaN and values outside [0, 1] are refused with one line; before, [-1, 1] gave an all-NaN result
    through the clean gate's log, [0, 255] a saturated one and one NaN an index error deep in the tone map."""
    e = Enhancer(net, precision="fp32")
    x = torch.rand(1, 3, 32, 32)
    for bad, match in (
        ((x * 255).to(torch.uint8), "floating-point"),
        (x * 2 - 1, r"must lie in \[0, 1\], got \[-"),
        (x * 255, r"must lie in \[0, 1\]"),
        (torch.where(x > 0.99, torch.nan, x), "NaN/inf"),
    ):
        with pytest.raises(ValueError, match=match):
            e(bad)
    assert e(x).shape == x.shape
    with pytest.raises(ValueError, match=r"too small to enhance \(spatial size \(1, 9\)\)"):
        e(torch.rand(1, 3, 1, 9))  # it was an IndexError from inside the network


def test_a_network_in_training_keeps_its_mode_and_the_output_can_enter_autograd():
    """Enhancing with a network that is being trained (a validation image mid-training) once left it in eval mode
    and returned an inference-mode tensor, which raises as soon as autograd has to save it."""
    torch.manual_seed(0)
    net = DPENet(channels=(8, 12, 16)).train()
    x = torch.rand(1, 3, 32, 40)
    y = Enhancer(net, device="cpu", precision="fp32")(x)
    assert net.training and all(m.training for m in net.modules())
    assert not y.is_inference()
    w = torch.ones(1, requires_grad=True)
    (y * w).sum().backward()  # raised "Inference tensors cannot be saved for backward"
    assert w.grad is not None
    with torch.no_grad():
        assert torch.allclose(y, net.eval()(x).clamp(0, 1), atol=1e-5)
    v = Enhancer(net.train(), device="cpu", precision="fp32")(torch.rand(1, 1, 24, 24, 3))
    assert net.training and not v.is_inference()
