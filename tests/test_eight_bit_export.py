"""The 8-bit export transform: grey relative-windowed images become absolute 8-bit ones; nothing else changes."""

from __future__ import annotations

import numpy as np
import torch

from dpe_monai.transforms import EightBitExport, RandEightBitExportd, RelativeFlagd, is_grey


def _item(channels: int = 1, rule: str = "percentile", seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    img = torch.rand(1, 32, 32, generator=gen).expand(channels, -1, -1).clone() if channels else None
    return {"image": img, "image_window": {"lo": 10.0, "hi": 900.0, "dtype": "uint16", "mode": "auto", "rule": rule}}


def test_export_rounds_to_8_bits_and_keeps_range():
    x = torch.rand(1, 16, 16)
    y = EightBitExport()(x)
    assert torch.allclose(y * 255, torch.round(y * 255), atol=1e-4)
    assert float((y - x).abs().max()) <= 0.5 / 255 + 1e-6
    arr = EightBitExport()(x.numpy())
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float32


def test_grey_relative_image_becomes_absolute_export():
    d = RandEightBitExportd(keys="image", prob=1.0)(_item(3))
    assert d["image_window"]["rule"] == "container" and d["image_window"]["exported_from"] == "percentile"
    assert torch.allclose(d["image"] * 255, torch.round(d["image"] * 255), atol=1e-4)
    flag = RelativeFlagd(keys="image_window")(d)["relative"]
    assert float(flag) == 0.0


def test_colour_and_absolute_images_are_left_alone():
    colour = _item(3)
    colour["image"][1] *= 0.5
    assert not is_grey(colour["image"])
    out = RandEightBitExportd(keys="image", prob=1.0)(colour)
    assert out["image"] is colour["image"] and out["image_window"]["rule"] == "percentile"
    absolute = _item(1, rule="container")
    out = RandEightBitExportd(keys="image", prob=1.0)(absolute)
    assert out["image"] is absolute["image"] and "exported_from" not in out["image_window"]


def test_prob_zero_is_identity_and_prob_half_is_seeded():
    item = _item(1)
    assert RandEightBitExportd(keys="image", prob=0.0)(item)["image_window"]["rule"] == "percentile"

    def draws(seed: int) -> list[str]:
        t = RandEightBitExportd(keys="image", prob=0.5)
        t.set_random_state(seed)
        return [t(_item(1))["image_window"]["rule"] for _ in range(40)]

    first = draws(3)
    assert first == draws(3)
    assert 5 < first.count("container") < 35
