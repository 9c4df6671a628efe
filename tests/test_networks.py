"""DPENet / DPEDiscriminator: parameter count, arbitrary sizes, channels and dimensionality."""

import pytest
import torch

from dpe_monai.networks import DPEDiscriminator, DPENet

SMALL = (8, 12, 16, 20, 24)


def n_trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_paper_parameter_count():
    assert n_trainable(DPENet()) == 4_486_987


def test_ablation_switches_change_parameter_count():
    full = n_trainable(DPENet(channels=SMALL))
    assert n_trainable(DPENet(channels=SMALL, use_gates=False)) < full
    assert n_trainable(DPENet(channels=SMALL, use_residual=False)) < full


@pytest.mark.parametrize("shape", [(1, 3, 250, 250), (2, 3, 97, 131), (1, 3, 16, 16), (1, 3, 5, 7)])
def test_any_size_is_padded_and_cropped_back(shape):
    net = DPENet(channels=SMALL).eval()
    x = torch.rand(*shape)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_paper_model_odd_size():
    with torch.no_grad():
        y = DPENet().eval()(torch.rand(1, 3, 97, 131))
    assert y.shape == (1, 3, 97, 131)


def test_crop_back_is_aligned():
    """A fully convolutional net must map a shifted input to a shifted output: check the crop is not off by one."""
    torch.manual_seed(0)
    net = DPENet(channels=SMALL).eval()
    x = torch.rand(1, 3, 30, 30)
    with torch.no_grad():
        y = net(x)
        y_pad = net(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"))[..., 1:-1, 1:-1]
    # not exactly equal (different padding context), but far closer than a misaligned crop
    assert (y - y_pad).abs().mean() < (y[..., 1:, :] - y_pad[..., :-1, :]).abs().mean()


def test_single_channel_and_3d():
    net = DPENet(in_channels=1, out_channels=1, channels=SMALL)
    assert net(torch.rand(2, 1, 33, 40)).shape == (2, 1, 33, 40)
    net3d = DPENet(spatial_dims=3, in_channels=1, out_channels=1, channels=(4, 8, 12))
    assert net3d(torch.rand(1, 1, 9, 17, 10)).shape == (1, 1, 9, 17, 10)
    assert isinstance(net3d.head, torch.nn.Conv3d)


def test_identity_at_init_with_global_residual_is_close_to_input():
    """With the global residual, a freshly initialised net starts near (not at) the identity."""
    torch.manual_seed(0)
    net = DPENet(channels=SMALL).eval()
    x = torch.rand(1, 3, 32, 32) * 0.5 + 0.25
    with torch.no_grad():
        y = net(x)
    assert (y - x).abs().mean() < 0.25


def test_wrong_input_raises_clear_error():
    net = DPENet(channels=SMALL)
    with pytest.raises(ValueError, match="input channels"):
        net(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="4-D tensor"):
        net(torch.rand(3, 16, 16))


def test_discriminator_conditional_and_unconditional():
    d = DPEDiscriminator(channels=(8, 8, 16, 16))
    x, c = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    logits = d(x, c)
    assert logits.shape == (2, 1, 8, 8)
    assert torch.all((d.probability(x, c) > 0) & (d.probability(x, c) < 1))
    with pytest.raises(ValueError, match="condition"):
        d(x)
    u = DPEDiscriminator(conditional=False, channels=(8, 8, 16, 16), norm="batch")
    assert u(x).shape == (2, 1, 8, 8)
    convs = [m for m in DPEDiscriminator().modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 9 and convs[-1].kernel_size == (1, 1)
    assert convs[0].in_channels == 6  # conditional: sees input + candidate
    d3 = DPEDiscriminator(spatial_dims=3, in_channels=1, channels=(4, 4, 8, 8))
    assert d3(torch.rand(1, 1, 16, 16, 16), torch.rand(1, 1, 16, 16, 16)).shape == (1, 1, 2, 2, 2)


def test_torch_compile_runs_at_several_sizes():
    """``torch.compile(DPENet)`` failed inside inductor at its second input size (dynamic shapes): the pad was
    written as ``(m - s % m) % m``; it is now rounded up as ``(s + m - 1) // m`` (which ONNX exports
    too)."""
    torch.manual_seed(0)
    net = DPENet(channels=(8, 12, 16)).eval()
    compiled = torch.compile(net)
    with torch.no_grad():
        for shape in ((64, 64), (50, 70)):
            x = torch.rand(1, 3, *shape)
            torch.testing.assert_close(compiled(x), net(x), atol=1e-5, rtol=0)
