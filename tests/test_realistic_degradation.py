"""Tests for the realistic simulator modes: MRI bias field + Rician noise, low-dose CT, under-exposed radiograph."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor

from dpe_monai.baselines.oracle import invert_intensity_map
from dpe_monai.evaluators.common import degrade
from dpe_monai.transforms import RandLowQuality, RandLowQualityd, SeededLowQualityd
from dpe_monai.transforms.realistic import (
    CT_FULL_DOSE_PHOTONS,
    REALISTIC_MODES,
    REALISTIC_PARAM_KEYS,
    bias_gain,
    lowdose_ct,
    xray_underexposed,
)

BASE_KEYS = {"applied", "luminance", "sigma", "contrast", "brightness", "contrast_first", "noise_after", "pivot"}
ALL_KEYS = BASE_KEYS | {"mode"} | set(REALISTIC_PARAM_KEYS)
MODE_KEYS = {
    "mri_bias_rician": ("bias_coeff_max", "bias_min"),
    "lowdose_ct": ("dose",),
    "xray_underexposed": ("exposure", "gamma"),
}


def textured(shape=(1, 32, 32), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.2, 0.9, size=shape).astype(np.float32)


def phantom(n: int = 128) -> np.ndarray:
    """``(1, n, n)`` bright disc with a smooth internal pattern and a small bright insert on a dark background."""
    yy, xx = np.mgrid[:n, :n] / (n - 1) * 2.0 - 1.0
    img = np.full((n, n), 0.1)
    disc = xx**2 + yy**2 < 0.8**2
    img[disc] = 0.6 + 0.25 * np.sin(4 * np.pi * xx[disc]) * np.cos(3 * np.pi * yy[disc])
    img[(xx - 0.3) ** 2 + (yy + 0.2) ** 2 < 0.15**2] = 0.95
    return img[None].astype(np.float32)


def affine_fit_psnr(clean: np.ndarray, lq: np.ndarray) -> float:
    """PSNR of the best global affine map ``a * lq + b`` (least squares on ``clean``): bounds any global stretch."""
    design = np.stack([lq.ravel().astype(np.float64), np.ones(lq.size)], axis=1)
    target = clean.ravel().astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    mse = float(np.mean((design @ coef - target) ** 2))
    return 10.0 * math.log10(1.0 / max(mse, 1e-30))


def run(mode: str, img, seed: int = 0, **kwargs):
    t = RandLowQuality(mode=mode, **kwargs).set_random_state(seed)
    return t(img), t.last_params


# ---------------------------------------------------------------- array transform, every realistic mode


@pytest.mark.parametrize("mode", REALISTIC_MODES)
@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 24, 20), (1, 12, 10, 6)])
def test_seeded_bounded_float32_shape(mode, shape):
    img = textured(shape)
    a, pa = run(mode, img, seed=3)
    b, pb = run(mode, img, seed=3)
    c, _ = run(mode, img, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == img.shape and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert not np.allclose(a, img, atol=1e-3)
    assert pa["applied"] is True and pa["mode"] == mode
    assert all(math.isclose(pa[k], pb[k]) for k in MODE_KEYS[mode])


@pytest.mark.parametrize("mode", REALISTIC_MODES)
def test_numpy_torch_metatensor_agree(mode):
    img = textured((1, 24, 24, 4))
    ref, _ = run(mode, img, seed=9)
    out_t, _ = run(mode, torch.from_numpy(img), seed=9)
    meta = MetaTensor(torch.from_numpy(img), meta={"filename_or_obj": "x.nii"})
    out_m, _ = run(mode, meta, seed=9)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    np.testing.assert_array_equal(out_t.numpy(), ref)
    assert isinstance(out_m, MetaTensor) and out_m.meta["filename_or_obj"] == "x.nii"
    np.testing.assert_array_equal(out_m.numpy(), ref)


@pytest.mark.parametrize("mode", REALISTIC_MODES)
def test_grey_stored_as_rgb_stays_grey(mode):
    grey3 = np.repeat(textured((1, 32, 32)), 3, axis=0)
    out, _ = run(mode, grey3, seed=1)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])
    single, _ = run(mode, grey3[:1], seed=1)
    np.testing.assert_array_equal(out[:1], single)  # the grey image is degraded exactly like its one-channel form

    rgb = textured((3, 32, 32), seed=2)  # a real colour image: independent noise per channel
    out_rgb, _ = run(mode, rgb, seed=1)
    assert not np.array_equal(out_rgb[0] - rgb[0], out_rgb[1] - rgb[1])


@pytest.mark.parametrize("mode", REALISTIC_MODES)
def test_params_keys_types_and_unknown_intensity_map(mode):
    img = textured()
    _, p = run(mode, img)
    _, p_paper = run("paper", img, brightness_threshold=None)
    off = RandLowQuality(mode=mode, prob=0.0)
    out_off = off(img)
    assert set(p) == set(p_paper) == set(off.last_params) == ALL_KEYS  # same keys whatever the mode: batches collate
    assert all(math.isnan(p[k]) for k in ("contrast", "brightness", "pivot", "luminance"))
    assert all(isinstance(p[k], float) and math.isfinite(p[k]) for k in (*MODE_KEYS[mode], "sigma"))
    assert all(math.isnan(p[k]) for k in set(REALISTIC_PARAM_KEYS) - set(MODE_KEYS[mode]))
    assert p_paper["mode"] == "paper" and all(math.isnan(p_paper[k]) for k in REALISTIC_PARAM_KEYS)
    assert off.last_params["applied"] is False and off.last_params["mode"] == mode
    np.testing.assert_array_equal(out_off, img)
    with pytest.raises(ValueError):  # the oracle cannot invert a degradation it does not know
        invert_intensity_map(img, p)


@pytest.mark.parametrize("mode", REALISTIC_MODES)
def test_no_gate_noise_order_ignored_quantize_applies(mode):
    dark = np.full((1, 16, 16), 0.05, np.float32)  # the paper's gate would skip this image
    out, p = run(mode, dark, noise_order="mixed")
    assert p["applied"] is True and not np.array_equal(out, dark)
    q, _ = run(mode, textured(), quantize=True)
    np.testing.assert_allclose(q * 255.0, np.round(q * 255.0), atol=1e-4)


def test_ranges_are_drawn_within_bounds():
    img = textured((1, 16, 16))
    for seed in range(20):
        p = run("mri_bias_rician", img, seed, bias_coeff_range=(0.2, 0.3), rician_sigma_range=(4, 5))[1]
        assert 0.2 <= p["bias_coeff_max"] <= 0.3 and 4 <= p["sigma"] <= 5 and 0 < p["bias_min"] <= 1
        assert 0.2 <= run("lowdose_ct", img, seed, dose_range=(0.2, 0.25))[1]["dose"] <= 0.25
        p = run("xray_underexposed", img, seed, exposure_range=(0.3, 0.4), gamma_range=(1.5, 1.6))[1]
        assert 0.3 <= p["exposure"] <= 0.4 and 1.5 <= p["gamma"] <= 1.6


# ---------------------------------------------------------------- the physics, roughly


def test_lowdose_ct_keeps_mean_noise_follows_dose():
    flat = np.full((1, 128, 128), 0.5, np.float32)
    for dose in (0.1, 0.5):
        y = lowdose_ct(flat, np.random.RandomState(0), dose, electronic_sigma=0.0)
        assert y.mean() == pytest.approx(0.5, abs=0.005)
        assert y.std() == pytest.approx(math.sqrt(0.5 / (CT_FULL_DOSE_PHOTONS * dose)), rel=0.05)


def test_xray_darkens_by_exposure_and_gamma():
    flat = np.full((1, 128, 128), 0.5, np.float32)
    y = xray_underexposed(flat, np.random.RandomState(0), exposure=0.4, gamma=1.5, read_sigma=0.0)
    assert y.mean() == pytest.approx(0.4 * 0.5**1.5, rel=0.02)


def test_bias_gain_peaks_at_one_and_is_smooth():
    gain = bias_gain((64, 64), 0.4, seed=0)
    assert gain.shape == (1, 64, 64) and gain.max() == pytest.approx(1.0) and gain.min() > 0
    coords = np.linspace(-1.0, 1.0, 64)
    xx, yy = np.meshgrid(coords, coords, indexing="ij")
    basis = np.polynomial.legendre.legvander2d(xx.ravel(), yy.ravel(), [3, 3])  # (64 * 64, 16)
    log_gain = np.log(gain[0].astype(np.float64)).ravel()
    coef, *_ = np.linalg.lstsq(basis, log_gain, rcond=None)
    assert np.abs(basis @ coef - log_gain).max() < 1e-4  # exp of a degree-3 polynomial: smooth
    assert gain.min() < 0.8  # and clearly visible
    np.testing.assert_array_equal(gain, bias_gain((64, 64), 0.4, seed=0))
    assert bias_gain((8, 8, 4), 0.4, seed=0).shape == (1, 8, 8, 4)


def test_bias_field_is_not_undone_by_a_global_stretch():
    """The best global affine map recovers the paper's noiseless degradation but not a bias field.

    Measured on this phantom: paper mode with ``max_sigma=0`` fits to > 140 dB (it is affine up to float error);
    noiseless ``mri_bias_rician`` with the default ``bias_coeff_range`` gives 23-33 dB over seeds 0-9 (median 26).
    """
    clean = phantom()
    paper = [run("paper", clean, s, max_sigma=0.0, brightness_threshold=None)[0] for s in range(10)]
    assert min(affine_fit_psnr(clean, lq) for lq in paper) > 40.0
    biased = [run("mri_bias_rician", clean, s, rician_sigma_range=(0.0, 0.0))[0] for s in range(10)]
    psnrs = [affine_fit_psnr(clean, lq) for lq in biased]
    assert max(psnrs) < 36.0 and float(np.median(psnrs)) < 30.0, psnrs


# ---------------------------------------------------------------- dict twin, seeded set, evaluation helper


@pytest.mark.parametrize("mode", REALISTIC_MODES)
def test_dict_seeded_and_degrade(mode):
    img = textured((3, 24, 24))
    out = RandLowQualityd(keys="image", mode=mode).set_random_state(0)({"image": img})
    assert out["image"] is img and out["lq"].shape == img.shape and out["lq_params"]["mode"] == mode
    multi = RandLowQualityd(keys=["a", "b"], mode=mode).set_random_state(0)({"a": img, "b": img.copy()})
    pa, pb = multi["a_lq_params"], multi["b_lq_params"]
    assert all(pa[k] == pb[k] for k in MODE_KEYS[mode])  # scalars (and the bias field) shared by the keys

    seeded = SeededLowQualityd(keys="image", seed=5, id_key="id", mode=mode)
    s1, s2 = seeded({"image": img, "id": "a/b.png"}), seeded({"image": img, "id": "a/b.png"})
    np.testing.assert_array_equal(s1["lq"], s2["lq"])
    assert s1["lq_params"]["mode"] == mode and s1["lq_params"]["applied"] is True

    lq, params = degrade(torch.from_numpy(img), 5, "a/b.png", mode=mode)
    assert isinstance(lq, torch.Tensor) and lq.dtype == torch.float32 and lq.shape == img.shape
    np.testing.assert_array_equal(lq.numpy(), s1["lq"])
    assert params["mode"] == mode and 0.0 <= float(lq.min()) and float(lq.max()) <= 1.0


def test_dataloader_collates_params():
    data = [{"image": textured(seed=i)} for i in range(6)]
    ds = Dataset(data, transform=RandLowQualityd(keys="image", mode="mri_bias_rician", prob=0.5).set_random_state(1))
    batch = next(iter(DataLoader(ds, batch_size=6, num_workers=0)))
    params = batch["lq_params"]
    assert set(params) == ALL_KEYS and params["mode"] == ["mri_bias_rician"] * 6
    applied = params["applied"]
    assert 0 < int(applied.sum()) < 6  # a mix of degraded and clean -> clean items collates
    assert torch.isnan(params["bias_min"][~applied]).all() and not torch.isnan(params["bias_min"][applied]).any()


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bias_coeff_range": (0.5, 0.2)},
        {"bias_coeff_range": (-0.1, 0.2)},
        {"bias_coeff_range": (0.2, 3.0)},
        {"rician_sigma_range": (-1.0, 5.0)},
        {"rician_sigma_range": (1.0, float("nan"))},
        {"dose_range": (0.0, 0.5)},
        {"dose_range": (0.2, 1.5)},
        {"exposure_range": (0.0, 0.5)},
        {"exposure_range": (0.6, 0.3)},
        {"gamma_range": (0.0, 2.0)},
        {"gamma_range": (1.0,)},
        {"gamma_range": "ab"},
        {"mode": "ultrasound"},
    ],
)
def test_invalid_ranges_raise(kwargs):
    with pytest.raises(ValueError):
        RandLowQuality(**{"mode": "paper", **kwargs})
    with pytest.raises(ValueError):
        RandLowQualityd(keys="image", **{"mode": "lowdose_ct", **kwargs})
