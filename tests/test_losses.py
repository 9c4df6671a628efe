"""Tests of dpe_monai.losses: offline backbones, regularised feature loss, adversarial losses and DPELoss."""

from __future__ import annotations

import socket

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dpe_monai.losses import (
    DiscriminatorLoss,
    DPELoss,
    GeneratorAdversarialLoss,
    RegularisedFeatureLoss,
    VGGFeatures,
    discriminator_loss,
    generator_adversarial_loss,
    gradient_difference,
    hed_weights_path,
    load_hed_vgg16_state,
    noisy_labels,
)
from dpe_monai.losses.backbones import VGG_CONFIGS, _load_torch_state, layer_names
from dpe_monai.networks import DPEDiscriminator, DPENet


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails inside the test."""

    def refuse(*args, **kwargs):
        raise OSError("network access disabled in this test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield
    # the fixture's monkeypatch undoes both on teardown


def _square(size: int = 64) -> torch.Tensor:
    x = torch.zeros(1, 3, size, size)
    x[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1.0
    return x


def _vgg19_torchvision_state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state, c_prev = {}, 3
    flat = iter(c for block in VGG_CONFIGS["vgg19"] for c in block)
    for idx, name in enumerate(layer_names("vgg19")):
        if name.startswith("conv"):
            c = next(flat)
            state[f"features.{idx}.weight"] = torch.randn(c, c_prev, 3, 3, generator=g) * 0.05
            state[f"features.{idx}.bias"] = torch.randn(c, generator=g) * 0.01
            c_prev = c
    state["classifier.0.weight"] = torch.zeros(4, 4)  # ignored: not part of the conv stack
    return state


# ----------------------------------------------------------------------------------------------- backbones
def test_socket_is_blocked(no_network):
    with pytest.raises(OSError):
        socket.create_connection(("example.com", 80))


def test_hed_vgg16_loads_offline(no_network):
    load_hed_vgg16_state.cache_clear()
    net = VGGFeatures("hed_vgg16")
    assert net.layers == ("conv5_3",) and net.input_norm == "caffe_bgr"
    assert not net.training and all(not p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training
    with h5py.File(hed_weights_path(), "r") as f:
        kernel = np.asarray(f["block1/layers/conv2d/vars/0"])  # Keras (kh, kw, in, out)
        assert f["block5/layers/conv2d_2/vars"].attrs["name"] == "block5_conv3"
    assert torch.equal(net.body["conv1_1"].weight, torch.from_numpy(kernel).permute(3, 2, 0, 1))
    assert len(load_hed_vgg16_state()) == 26  # 13 convolutions x (weight, bias)


def test_hed_features_sane_and_differ_from_random():
    x = _square()
    hed, rnd = VGGFeatures("hed_vgg16", layers=["relu1_2", "conv5_3"]), VGGFeatures("random")
    f1, f5 = hed(x)
    assert f1.shape == (1, 64, 64, 64) and f5.shape == (1, 512, 4, 4)
    assert torch.isfinite(f5).all() and f5.std() > 0
    assert not torch.allclose(hed.body["conv3_1"].weight, rnd.body["conv3_1"].weight)
    assert not torch.allclose(f5, rnd(x)[0])


def test_hed_weights_detect_edges():
    """Rebuild the full HED (side outputs + fusion, read from the same file) on our backbone: a white square on
    black must give edge probability near its boundary and none inside; this pins the kernel transposition,
    the BGR/mean preprocessing and the 'same' pooling."""
    layers = ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"]
    net, x = VGGFeatures("hed_vgg16", layers=layers), _square(64)
    with h5py.File(hed_weights_path(), "r") as f:

        def conv1x1(name, t):
            k = torch.from_numpy(np.asarray(f[f"{name}/vars/0"])).permute(3, 2, 0, 1)
            return F.conv2d(t, k, torch.from_numpy(np.asarray(f[f"{name}/vars/1"])))

        sides = [F.interpolate(conv1x1(f"dsn{i}", t), size=(64, 64), mode="bilinear") for i, t in enumerate(net(x), 1)]
        edges = torch.sigmoid(conv1x1("fuse", torch.cat(sides, 1)))[0, 0]
    assert edges[32, 15:17].max() > 0.8  # left border of the square (column 16)
    assert edges[32, 32] < 0.05 and edges[4, 4] < 0.05


def test_vgg19_state_dict_loads_offline(tmp_path, no_network):
    state = _vgg19_torchvision_state()
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    _load_torch_state.cache_clear()
    net = VGGFeatures("vgg19", weights_path=path)
    assert net.layers == ("conv5_4",) and net.names[-1] == "conv5_4"
    assert torch.equal(net.body["conv5_4"].weight, state["features.34.weight"])
    assert torch.equal(net.body["conv1_1"].bias, state["features.0.bias"])
    assert net(torch.rand(1, 3, 32, 32))[0].shape == (1, 512, 2, 2)
    # strict on the convolutions that are used
    del state["features.34.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(KeyError):
        VGGFeatures("vgg19", weights_path=tmp_path / "broken.pth")
    assert VGGFeatures("vgg19", weights_path=tmp_path / "broken.pth", layers="relu5_3").names[-1] == "relu5_3"
    with pytest.raises(ValueError):
        VGGFeatures("vgg19")  # no weights path


def test_random_backbone_offline_and_seeded(no_network):
    a, b, c = VGGFeatures("random", seed=1), VGGFeatures("random", seed=1), VGGFeatures("random", seed=2)
    assert torch.equal(a.body["conv2_1"].weight, b.body["conv2_1"].weight)
    assert not torch.equal(a.body["conv2_1"].weight, c.body["conv2_1"].weight)


def test_backbone_channels_and_volumes():
    net = VGGFeatures("random", layers=["relu2_2", "pool3"])
    grey = torch.rand(2, 1, 20, 24)
    for f_grey, f_rgb in zip(net(grey), net(grey.repeat(1, 3, 1, 1))):
        torch.testing.assert_close(f_grey, f_rgb)
    vol = torch.rand(2, 1, 16, 16, 3)  # MONAI's layout: depth last
    f_vol = net(vol)[1]
    assert f_vol.shape == (2, 256, 2, 2, 3)
    torch.testing.assert_close(f_vol[..., 1], net(vol[..., 1])[1])
    with pytest.raises(ValueError):
        net(torch.rand(1, 2, 16, 16))
    with pytest.raises(ValueError):
        VGGFeatures("random", layers="conv5_4")  # VGG-16 has no conv5_4
    with pytest.raises(ValueError):
        VGGFeatures("imagenet_vgg16")


# ---------------------------------------------------------------------------------- regularised feature loss
def test_gradient_difference_value():
    pred = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]])  # dx: [1, 0], dy: [0, -1]
    target = torch.zeros_like(pred)
    assert gradient_difference(pred, target).item() == pytest.approx((1 + 1) / 4)
    assert gradient_difference(target, target).item() == 0.0


@pytest.mark.parametrize("regulariser", ["constant", "product"])
def test_rfl_zero_positive_and_gradient(regulariser):
    loss_fn = RegularisedFeatureLoss("random", regulariser=regulariser)
    target = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert loss_fn(target.clone(), target).item() == 0.0
    pred = (target + 0.1 * torch.randn(target.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    pred.requires_grad_(True)
    loss = loss_fn(pred, target)
    assert loss.item() > 0
    loss.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss_fn.parameters())


def test_rfl_definitions():
    target, pred = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    const = RegularisedFeatureLoss("random", lambda_r=2.5)
    feats = const.backbone
    expected = (feats(pred)[0] - feats(target)[0]).abs().mean()
    torch.testing.assert_close(const(pred, target), 2.5 * expected)
    prod = RegularisedFeatureLoss(feats, regulariser="product")
    torch.testing.assert_close(prod(pred, target), gradient_difference(pred, target) * expected)


def test_rfl_hed_grey_and_volume():
    target = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    loss_fn = RegularisedFeatureLoss()  # paper default: HED VGG-16, conv5_3, constant regulariser
    assert loss_fn(target, target).item() == 0.0 and loss_fn(target.flip(-1), target).item() > 0
    vol_loss = RegularisedFeatureLoss("random", spatial_dims=3, regulariser="product")
    vol = torch.rand(1, 1, 3, 32, 32)
    pred = vol.roll(1, dims=-1).requires_grad_(True)
    out = vol_loss(pred, vol)
    out.backward()
    assert out.item() > 0 and pred.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        vol_loss(target, target)  # 2-D input to a 3-D loss


# ------------------------------------------------------------------------------------------- adversarial
def test_adversarial_losses_match_bce_on_probabilities():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(4, 1, 4, 4, generator=g), torch.randn(4, 1, 4, 4, generator=g)
    bce = F.binary_cross_entropy
    expected_d = bce(torch.sigmoid(real), torch.ones_like(real)) + bce(torch.sigmoid(fake), torch.zeros_like(fake))
    torch.testing.assert_close(discriminator_loss(real, fake), expected_d)
    torch.testing.assert_close(DiscriminatorLoss()(real, fake), expected_d)
    expected_g = bce(torch.sigmoid(fake), torch.ones_like(fake))
    torch.testing.assert_close(generator_adversarial_loss(fake), expected_g)
    torch.testing.assert_close(GeneratorAdversarialLoss()(fake), expected_g)


def test_label_noise_ranges_and_reproducibility():
    logits = torch.zeros(2000, 1, 2, 2)
    real = noisy_labels(logits, 0.7, 1.0, generator=torch.Generator().manual_seed(0))
    fake = noisy_labels(logits, 0.0, 0.3, generator=torch.Generator().manual_seed(0))
    assert real.shape == logits.shape and (real[:, :, :1, :1] == real).all()  # one label per sample
    assert 0.7 <= real.min() and real.max() < 1.0 and real.std() > 0.05
    assert 0.0 <= fake.min() and fake.max() < 0.3
    with pytest.raises(ValueError):
        noisy_labels(logits, 0.7, 1.2)  # the authors' range: targets > 1 are invalid
    r, f = torch.randn(8, 1), torch.randn(8, 1)
    a = discriminator_loss(r, f, label_noise=True, generator=torch.Generator().manual_seed(3))
    b = discriminator_loss(r, f, label_noise=True, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, discriminator_loss(r, f))
    assert DiscriminatorLoss(label_noise=True, seed=0)(r, f).isfinite()


# ---------------------------------------------------------------------------------------------- DPELoss
def test_dpe_loss_components_sum_to_total():
    pred, target, logits = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), torch.randn(2, 1, 4, 4)
    loss_fn = DPELoss(lambda_l1=2.0, lambda_rfl=0.5, lambda_adv=0.1, backbone="random")
    parts = loss_fn.components(pred, target, logits)
    assert set(parts) == {"l1", "rfl", "adv", "total"}
    torch.testing.assert_close(parts["l1"], (pred - target).abs().mean())
    torch.testing.assert_close(parts["adv"], generator_adversarial_loss(logits))
    torch.testing.assert_close(parts["total"], 2.0 * parts["l1"] + 0.5 * parts["rfl"] + 0.1 * parts["adv"])
    torch.testing.assert_close(loss_fn(pred, target, logits), parts["total"])
    no_adv = loss_fn.components(pred, target)
    assert no_adv["adv"].item() == 0.0
    torch.testing.assert_close(no_adv["total"], 2.0 * no_adv["l1"] + 0.5 * no_adv["rfl"])


def test_dpe_loss_modes_and_ablations():
    paper = DPELoss()  # HED backbone
    assert paper.lambda_adv == 1e-4 and paper.feature_loss.regulariser == "constant"
    assert paper.feature_loss.backbone.source == "hed_vgg16"
    ref = DPELoss(mode="reference_code", backbone="random")
    assert ref.lambda_adv == 1e-3 and ref.feature_loss.regulariser == "product"
    assert DPELoss(mode="reference_code", lambda_adv=0.5, backbone="random").lambda_adv == 0.5
    pred, target = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    for base in (DPELoss(feature_loss=None), DPELoss(lambda_rfl=0.0)):
        assert base.feature_loss is None
        parts = base.components(pred, target)
        assert parts["rfl"].item() == 0.0
        torch.testing.assert_close(parts["total"], parts["l1"])
    custom = DPELoss(feature_loss=RegularisedFeatureLoss("random", lambda_r=3.0))
    assert custom.components(pred, target)["rfl"].item() > 0
    with pytest.raises(ValueError):
        DPELoss(mode="unknown")


def test_gan_steps_reduce_losses():
    """A few Adam steps on a tiny conditional GAN: D's loss falls with G fixed, then G's DPE loss with D fixed."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 32, 32, generator=g)
    degraded = (0.5 * target + 0.05 * torch.rand(2, 3, 32, 32, generator=g)).clamp(0, 1)
    gen = DPENet(channels=(8, 16, 24))
    disc = DPEDiscriminator(channels=(8, 8, 16, 16))
    loss_fn = DPELoss(backbone="random", lambda_adv=1e-2)

    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-3)
    with torch.no_grad():
        fake = gen(degraded)
    d_losses = []
    for _ in range(20):  # D starts with near-zero logits (loss 2 ln 2) and needs a few steps to leave it
        opt_d.zero_grad()
        d_loss = discriminator_loss(disc(target, degraded), disc(fake, degraded))
        d_loss.backward()
        opt_d.step()
        d_losses.append(d_loss.item())

    opt_g = torch.optim.Adam(gen.parameters(), lr=2e-3)
    disc.requires_grad_(False)
    g_losses = []
    for _ in range(6):
        opt_g.zero_grad()
        pred = gen(degraded)
        g_loss = loss_fn(pred, target, disc(pred, degraded))
        g_loss.backward()
        opt_g.step()
        g_losses.append(g_loss.item())
    assert d_losses[-1] < d_losses[0] - 0.05  # seeds 0-7 measured: a drop of 0.19-0.53
    assert g_losses[-1] < 0.97 * g_losses[0]  # seeds 0-5 measured: 9-30 % lower


def test_vgg_features_slice_volumes_along_the_last_axis():
    """A MONAI volume ``(B, C, H, W, D)`` is sliced along D (it was sliced along H, so a 32x32x6 volume became 32
    slices of 32x6): each slice's features equal those of the slice as a 2-D image."""
    from dpe_monai.losses import VGGFeatures

    f = VGGFeatures("random", layers=("conv2_2",))
    vol = torch.rand(1, 3, 32, 32, 6)
    (out,) = f(vol)
    assert out.shape[0] == 1 and out.shape[-1] == 6 and out.shape[2:4] == (16, 16)
    (first,) = f(vol[..., 0])
    assert torch.allclose(out[..., 0], first, atol=1e-5)


@pytest.mark.parametrize("mode", ["paper", "reference_code"])
def test_losses_reduce_over_the_batch_as_monai_losses_do(mode):
    """``reduction="none"`` gives each sample's loss as for a batch of one; ``"sum"`` their sum; ``"mean"`` is the
    batch definition used in training (for the product regulariser, the authors' product of batch means)."""
    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(3, 3, 32, 32, generator=g), torch.rand(3, 3, 32, 32, generator=g)
    logits = torch.randn(3, 1, 4, 4, generator=g)
    each = DPELoss(mode=mode, backbone="random", reduction="none")
    batch = DPELoss(mode=mode, backbone="random")
    parts = each.components(pred, target, logits)
    assert all(v.shape == (3,) for v in parts.values())
    for i in range(3):
        one = batch.components(pred[i : i + 1], target[i : i + 1], logits[i : i + 1])
        for k in parts:
            torch.testing.assert_close(parts[k][i], one[k])
    summed = DPELoss(mode=mode, backbone="random", reduction="sum")(pred, target, logits)
    torch.testing.assert_close(summed, parts["total"].sum())
    mean = batch(pred, target, logits)
    if mode == "paper":  # the constant regulariser: the batch mean is the mean of the per-sample losses
        torch.testing.assert_close(mean, parts["total"].mean())
    rfl = RegularisedFeatureLoss("random", regulariser="product", reduction="none")
    assert rfl(pred, target).shape == (3,)
    torch.testing.assert_close(gradient_difference(pred, target, "none").mean(), gradient_difference(pred, target))
    with pytest.raises(ValueError, match="per-sample feature losses"):
        DPELoss(feature_loss=RegularisedFeatureLoss("random"), reduction="none")(pred, target)
    with pytest.raises(ValueError):
        DPELoss(backbone="random", reduction="average")
