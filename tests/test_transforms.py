"""Tests for dpe_monai.transforms: the low-quality simulator (Algorithm 1) and intensity windowing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from monai.transforms import Compose

from dpe_monai.transforms import (
    L8_SCALE,
    LUMA_WEIGHTS,
    IntensityWindow,
    IntensityWindowd,
    InverseIntensityWindow,
    RandLowQuality,
    RandLowQualityD,
    RandLowQualityd,
    dicom_window_from_meta,
    mean_luminance_l8,
)


def grey(value: float, shape=(3, 32, 32)) -> np.ndarray:
    return np.full(shape, value, dtype=np.float32)


def textured(shape=(3, 32, 32), lo=0.55, hi=0.95, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(lo, hi, size=shape).astype(np.float32)


def srgb_l8(v: float) -> float:
    """Reference CIE L* of an sRGB grey level, on OpenCV's 8-bit scale."""
    y = v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4
    f = y ** (1 / 3) if y > (6 / 29) ** 3 else y / (3 * (6 / 29) ** 2) + 4 / 29
    return (116 * f - 16) * L8_SCALE


def contrast(x: np.ndarray, c: float) -> np.ndarray:
    m = (sum(w * x[i] for i, w in enumerate(LUMA_WEIGHTS)) if x.shape[0] == 3 else x[0]).mean()
    return m + c * (x - m)


# ---------------------------------------------------------------- luminance gate


@pytest.mark.parametrize("v", [0.2, 0.5, 0.7])
def test_luminance_l8_scale(v):
    assert mean_luminance_l8(grey(v)) == pytest.approx(srgb_l8(v), abs=0.05)
    assert mean_luminance_l8(grey(v, (1, 8, 8))) == pytest.approx(srgb_l8(v), abs=0.05)  # grey replicated


def test_luminance_ignores_black_pixels():
    img = grey(0.7)
    img[:, :, :16] = 0.0
    assert mean_luminance_l8(img) == pytest.approx(srgb_l8(0.7), abs=0.05)
    assert mean_luminance_l8(np.zeros((1, 4, 4), np.float32)) == 0.0


def test_gate_dark_untouched_bright_changed():
    t = RandLowQuality()
    t.set_random_state(0)
    dark = grey(0.2)  # L8 ~ 54 <= 100
    out = t(dark)
    assert t.last_params["applied"] is False
    assert t.last_params["luminance"] == pytest.approx(srgb_l8(0.2), abs=0.05)
    assert all(math.isnan(t.last_params[k]) for k in ("sigma", "contrast", "brightness"))
    np.testing.assert_array_equal(out, dark)
    assert out is not dark and out.dtype == np.float32

    bright = textured()
    out = t(bright)
    assert t.last_params["applied"] is True and t.last_params["luminance"] > 100
    assert out.shape == bright.shape and out.dtype == np.float32
    assert not np.allclose(out, bright)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out.mean() < bright.mean()  # brightness factor <= 0.8


def test_gate_threshold_parameter_and_disable():
    img = grey(0.5)  # L8 ~ 136
    t = RandLowQuality(brightness_threshold=140.0)
    t(img)
    assert not t.last_params["applied"]
    t = RandLowQuality(brightness_threshold=None)
    t(grey(0.1))
    assert t.last_params["applied"] and math.isnan(t.last_params["luminance"])


def test_prob_zero_never_applies():
    t = RandLowQuality(prob=0.0)
    img = textured()
    np.testing.assert_array_equal(t(img), img)
    assert t.last_params["applied"] is False


# ---------------------------------------------------------------- statistics


def test_noise_sigma_matches_residual_std():
    t = RandLowQuality()
    img = grey(0.6, (3, 64, 64))  # no clipping for sigma <= 10/255
    t.set_random_state(1)
    for _ in range(8):
        out = t(img)
        p = t.last_params
        # out = b * (m + c * (x + n - m)) with constant x, so std(out) = b * c * sigma / 255.
        est = out.std(dtype=np.float64) / (p["brightness"] * p["contrast"]) * 255.0
        assert est == pytest.approx(p["sigma"], rel=0.04, abs=0.02)
    # with factors fixed at 1 the residual is the noise itself
    t = RandLowQuality(min_factor=1.0, max_factor=1.0)
    t.set_random_state(2)
    out = t(img)
    assert (out - img).std() * 255 == pytest.approx(t.last_params["sigma"], rel=0.04, abs=0.02)
    assert abs((out - img).mean()) < 1e-3


def test_factor_ranges_roughly_uniform():
    t = RandLowQuality()
    t.set_random_state(3)
    img = grey(0.7, (1, 4, 4))
    draws = {"sigma": [], "contrast": [], "brightness": []}
    for _ in range(2000):
        t(img)
        for k in draws:
            draws[k].append(t.last_params[k])
    s, c, b = (np.array(draws[k]) for k in ("sigma", "contrast", "brightness"))
    assert s.min() >= 0 and s.max() <= 10
    for f in (c, b):
        assert f.min() >= 0.1 and f.max() <= 0.8
        assert f.mean() == pytest.approx(0.45, abs=0.02)
        assert np.quantile(f, 0.25) == pytest.approx(0.275, abs=0.03)
    assert s.mean() == pytest.approx(5.0, abs=0.3)
    assert np.quantile(s, 0.75) == pytest.approx(7.5, abs=0.4)


# ---------------------------------------------------------------- types, shapes, determinism


@pytest.mark.parametrize("shape", [(1, 24, 24), (3, 24, 24), (1, 12, 12, 6), (3, 12, 12, 6)])
def test_shapes_determinism_numpy_torch(shape):
    img = textured(shape)
    a = RandLowQuality().set_random_state(seed=42)(img)
    b = RandLowQuality().set_random_state(seed=42)(torch.as_tensor(img))
    c = RandLowQuality().set_random_state(state=np.random.RandomState(42))(img)
    d = RandLowQuality().set_random_state(seed=43)(img)
    assert isinstance(a, np.ndarray) and isinstance(b, torch.Tensor)
    assert a.shape == shape and b.dtype == torch.float32
    np.testing.assert_array_equal(a, b.numpy())
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, d)


def test_metatensor_meta_kept():
    img = MetaTensor(torch.as_tensor(textured((1, 16, 16))), affine=torch.diag(torch.tensor([2.0, 3.0, 1.0, 1.0])))
    img.meta["filename_or_obj"] = "x.nii.gz"
    out = RandLowQuality().set_random_state(0)(img)
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32
    assert out.meta["filename_or_obj"] == "x.nii.gz"
    torch.testing.assert_close(out.affine, img.affine)


def test_bad_channels_and_args():
    with pytest.raises(ValueError):
        RandLowQuality()(np.ones((2, 8, 8), np.float32))
    with pytest.raises(ValueError):
        RandLowQuality(mode="nope")
    with pytest.raises(ValueError):
        RandLowQuality(min_factor=0.9, max_factor=0.8)


# ---------------------------------------------------------------- reference_code mode


def test_reference_code_mode():
    t = RandLowQuality(mode="reference_code").set_random_state(5)
    orders = set()
    for i in range(12):
        img = np.random.default_rng(i).uniform(0, 0.3, (3, 16, 16)).astype(np.float32)  # dark: no gate here
        out = t(img)
        p = t.last_params
        assert p["applied"] and math.isnan(p["sigma"])
        assert 0.1 <= p["contrast"] <= 0.8 and 0.1 <= p["brightness"] <= 0.8
        if p["contrast_first"]:
            expected = p["brightness"] * contrast(img, p["contrast"])
        else:
            expected = contrast(p["brightness"] * img, p["contrast"])
        noise = out - expected
        assert noise.min() >= -1e-6 and noise.max() < 4 / 255
        assert noise.mean() == pytest.approx(2 / 255, abs=0.2 / 255)
        orders.add(p["contrast_first"])
    assert orders == {True, False}


# ---------------------------------------------------------------- dictionary transform


def test_dict_keeps_clean_writes_lq_and_params():
    img = textured()
    clean = img.copy()
    t = RandLowQualityd(keys="image").set_random_state(0)
    out = t({"image": img, "label": 1})
    assert out["image"] is img
    np.testing.assert_array_equal(out["image"], clean)
    assert out["lq"].shape == img.shape and not np.allclose(out["lq"], img)
    params = out["lq_params"]
    assert params["applied"] is True and all(isinstance(params[k], float) for k in ("sigma", "contrast", "luminance"))
    assert out["label"] == 1
    assert RandLowQualityD is RandLowQualityd

    multi = RandLowQualityd(keys=["a", "b", "c"]).set_random_state(0)({"a": img, "b": grey(0.1), "c": grey(0.8)})
    assert {"a_lq", "b_lq", "c_lq", "a_lq_params", "b_lq_params", "c_lq_params"} <= multi.keys()
    pa, pb, pc = (multi[f"{k}_lq_params"] for k in "abc")
    assert pa["applied"] and not pb["applied"] and pc["applied"]  # gate per key
    assert pa["contrast"] == pc["contrast"] and pa["sigma"] == pc["sigma"]  # factors shared by the keys

    off = RandLowQualityd(keys="image", prob=0.0)({"image": img})
    np.testing.assert_array_equal(off["lq"], img)
    assert off["lq"] is not img and off["lq_params"]["applied"] is False


def test_dict_deterministic_and_dataloader_collate():
    data = [{"image": textured(seed=i)} for i in range(4)] + [{"image": grey(0.15)}]
    a = RandLowQualityd(keys="image").set_random_state(7)(data[0])
    b = RandLowQualityd(keys="image").set_random_state(7)(data[0])
    np.testing.assert_array_equal(a["lq"], b["lq"])

    ds = Dataset(data, transform=RandLowQualityd(keys="image").set_random_state(0))
    batch = next(iter(DataLoader(ds, batch_size=5, num_workers=0)))
    assert batch["image"].shape == (5, 3, 32, 32) and batch["lq"].shape == (5, 3, 32, 32)
    assert batch["lq_params"]["applied"].tolist() == [True] * 4 + [False]
    assert batch["lq_params"]["sigma"].shape == (5,) and torch.isnan(batch["lq_params"]["sigma"][4])
    torch.testing.assert_close(batch["lq"][4], batch["image"][4])


# ---------------------------------------------------------------- intensity windowing


def test_percentile_window():
    x = np.arange(1000, dtype=np.float32).reshape(1, 10, 100)
    t = IntensityWindow()  # 0.5 / 99.5 percentiles
    y = t(x)
    assert y.dtype == np.float32 and y.min() == 0.0 and y.max() == 1.0
    assert t.last_params["lo"] == pytest.approx(np.percentile(x, 0.5))
    assert t.last_params["hi"] == pytest.approx(np.percentile(x, 99.5))
    y = IntensityWindow(lower=0, upper=100)(x)
    np.testing.assert_allclose(y, x / 999.0, atol=1e-6)


def test_uint16_dtype_round_trip_exact():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 65536, size=(1, 64, 64), dtype=np.uint16)
    x[0, 0, :2] = [0, 65535]
    t = IntensityWindow(mode="dtype")
    y = t(x)
    assert y.dtype == np.float32 and 0.0 <= y.min() and y.max() <= 1.0
    assert t.last_params == {"lo": 0.0, "hi": 65535.0, "dtype": "uint16", "mode": "dtype", "rule": "dtype"}
    back = InverseIntensityWindow(**{k: t.last_params[k] for k in ("lo", "hi", "dtype")})(y)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, x)
    np.testing.assert_array_equal(t.inverse(y), x)  # numpy: falls back on last_params


def test_hu_int16_fixed_round_trip_metatensor():
    rng = np.random.default_rng(1)
    x = MetaTensor(torch.as_tensor(rng.integers(-1024, 3072, size=(1, 16, 16, 8)).astype(np.int16)))
    t = IntensityWindow(mode="fixed", lower=-1024, upper=3071)
    y = t(x)
    assert isinstance(y, MetaTensor) and y.dtype == torch.float32 and len(y.applied_operations) == 1
    back = t.inverse(y * 1.0)  # survives a torch op, as a network output would
    assert back.dtype == torch.int16 and len(back.applied_operations) == 0
    assert torch.equal(back.as_tensor(), x.as_tensor())
    # narrower HU window: clipped outside, exact within 1 LSB of (hi - lo) / 2**24 inside
    t = IntensityWindow(mode="fixed", lower=-1000, upper=1000)
    back = t.inverse(t(x))
    inside = (x >= -1000) & (x <= 1000)
    assert torch.equal(back[inside], x[inside]) and back.max() == 1000 and back.min() == -1000


def test_float_source_dtype_round_trip():
    x = np.random.default_rng(2).integers(0, 4096, size=(1, 8, 8)).astype(np.float32)  # as LoadImage gives
    t = IntensityWindow(mode="dtype", source_dtype="uint16")
    back = t.inverse(t(x))
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, x.astype(np.uint16))
    with pytest.raises(ValueError):
        IntensityWindow(mode="dtype")(x)


def test_dicom_window_meta_variants():
    assert dicom_window_from_meta({"0028|1050": "40\\400 ", "0028|1051": "400\\1500"}) == (40.0, 400.0)
    assert dicom_window_from_meta({"0028|1050": "40\\400", "0028|1051": "400\\1500"}, index=1) == (400.0, 1500.0)
    assert dicom_window_from_meta({"00281050": {"vr": "DS", "Value": [50]}, "00281051": {"Value": [350]}}) == (
        50.0,
        350.0,
    )
    assert dicom_window_from_meta({"WindowCenter": [40, 400], "WindowWidth": torch.tensor([400.0, 1500.0])}) == (
        40.0,
        400.0,
    )
    assert dicom_window_from_meta({"(0028,1050)": 10}) is None

    x = MetaTensor(torch.arange(-300, 300, dtype=torch.int16).reshape(1, 20, 30))
    x.meta["0028|1050"], x.meta["0028|1051"] = "40\\400", "401\\1500"
    t = IntensityWindow(mode="dicom")
    y = t(x)
    assert (t.last_params["lo"], t.last_params["hi"]) == (-160.5, 239.5)  # DICOM linear window edges
    assert torch.equal(IntensityWindow(mode="dicom", window_center=40, window_width=401)(x.as_tensor()), y.as_tensor())
    with pytest.raises(ValueError):
        IntensityWindow(mode="dicom")(np.zeros((1, 4, 4)))


def test_intensity_windowd_inverse():
    x = np.random.default_rng(3).integers(0, 65536, size=(1, 8, 8)).astype(np.uint16)
    t = IntensityWindowd(keys="image", mode="fixed", lower=0, upper=65535)
    d = t({"image": MetaTensor(torch.as_tensor(x.astype(np.int32)))})  # torch has no full uint16 support
    assert d["image"].dtype == torch.float32
    back = Compose([t]).inverse(d)["image"]
    assert back.dtype == torch.int32 and torch.equal(back.as_tensor(), torch.as_tensor(x.astype(np.int32)))

    t = IntensityWindowd(keys="image", mode="fixed", lower=0, upper=65535, params_postfix="window")
    d = t({"image": x})
    assert d["image_window"] == {"lo": 0.0, "hi": 65535.0, "dtype": "uint16", "mode": "fixed", "rule": "fixed"}
    np.testing.assert_array_equal(t.inverse(d)["image"], x)


def test_relative_flagd_takes_allow_missing_keys_and_has_aliases():
    from dpe_monai.transforms import RelativeFlagD, RelativeFlagd, RelativeFlagDict

    assert RelativeFlagD is RelativeFlagd and RelativeFlagDict is RelativeFlagd
    t = RelativeFlagd("image_window", allow_missing_keys=True)
    assert "relative" not in t({"image": torch.zeros(1, 4, 4)})
    out = t({"image": torch.zeros(1, 4, 4), "image_window": {"rule": "percentile"}})
    assert float(out["relative"]) == 1.0
