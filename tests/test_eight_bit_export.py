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
    # the export is absolute 8-bit data, yet grey: a scan for the route, as the CLI flags such a file
    assert float(RelativeFlagd(keys="image_window")(d)["relative"]) == 1.0
    assert float(RelativeFlagd(keys="image_window", image_key=None)(d)["relative"]) == 0.0


def test_route_flag_reads_the_clean_image():
    """Colour 8-bit images take the learned path; grey ones and relative-windowed ones the scan path; the flag is
    read from the clean image, so a grey image stays a scan after the simulator adds per-channel noise to ``lq``."""
    colour = _item(3, rule="container")
    colour["image"][0] *= 0.5
    assert float(RelativeFlagd(keys="image_window")(colour)["relative"]) == 0.0
    grey = _item(3, rule="container")
    grey["lq"] = grey["image"] + 0.05 * torch.randn(grey["image"].shape, generator=torch.Generator().manual_seed(1))
    assert float(RelativeFlagd(keys="image_window")(grey)["relative"]) == 1.0
    relative_colour = _item(3, rule="percentile")
    relative_colour["image"][2] *= 0.5
    assert float(RelativeFlagd(keys="image_window")(relative_colour)["relative"]) == 1.0


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
