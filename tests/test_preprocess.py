"""ToRGB, EnsureMinSize and the per-item seeded degradation used for validation/test sets."""

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, MetaTensor

from dpe_monai.contract import is_relative, is_scan
from dpe_monai.transforms import EnsureMinSize, EnsureMinSized, SeededLowQualityd, ToRGB, ToRGBd, grey_mask, is_grey


def test_grey_mask_and_is_grey():
    g = torch.rand(1, 5, 6)
    rgb = ToRGB()(g)
    colour = rgb.clone()
    colour[1, 2, 3] += 1e-3  # one pixel off in one channel: colour
    batch = torch.stack([rgb, colour, ToRGB()(torch.zeros(1, 5, 6))])
    assert grey_mask(batch).tolist() == [True, False, True]
    assert grey_mask(g[None]).tolist() == [True]
    assert grey_mask(torch.rand(2, 4, 5, 6)).tolist() == [False, False]
    assert is_grey(rgb) and is_grey(rgb.numpy()) and is_grey(g) and not is_grey(colour)


def test_is_relative_rule():
    assert is_relative("percentile") and is_relative("dicom") and is_relative("minmax")
    assert not is_relative("container") and not is_relative(None)


def test_is_scan_route():
    """Grey images of any bit depth and relative-windowed ones are scans; colour 8-bit images are not."""
    assert is_scan("container", grey=True) and is_scan("percentile", grey=False) and is_scan("dicom", grey=True)
    assert not is_scan("container", grey=False) and not is_scan(None, grey=False)


def test_is_near_grey_tolerates_storage_chroma_noise_only():
    """Grey up to the chroma noise of lossy colour storage: mean channel spread <= 3 and p99 <= 10 levels of 255."""
    from dpe_monai.transforms import is_grey, is_near_grey

    rng = np.random.default_rng(0)
    grey = rng.random((1, 40, 50)).astype(np.float32)
    assert is_near_grey(grey) and is_near_grey(np.repeat(grey, 3, 0))  # one channel; three equal ones
    assert not is_near_grey(np.repeat(grey, 2, 0))  # neither grey nor RGB
    cast = np.repeat(grey, 3, 0)
    cast[0] += 2.5 / 255  # a constant 2.5-level cast: mean spread 2.5
    assert not is_grey(cast) and is_near_grey(cast) and is_near_grey(torch.from_numpy(cast))
    cast[0] += 1.0 / 255  # 3.5 levels: colour
    assert not is_near_grey(cast)
    spots = np.repeat(grey, 3, 0)
    spots[1, :4] += 20.0 / 255  # 8 % of the pixels 20 levels apart: mean 1.6, but the 99th percentile is 20
    assert not is_near_grey(spots)


def test_to_rgb():
    g = np.random.rand(1, 5, 6).astype(np.float32)
    out = ToRGB()(g)
    assert out.shape == (3, 5, 6) and isinstance(out, np.ndarray) and np.array_equal(out[2], g[0])
    rgb = torch.rand(3, 5, 6)
    assert ToRGB()(rgb) is rgb
    assert ToRGB(drop_alpha=True)(torch.rand(4, 5, 6)).shape == (3, 5, 6)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        ToRGB()(torch.rand(2, 5, 6))
    assert ToRGBd("image")({"image": g})["image"].shape == (3, 5, 6)


def test_ensure_min_size_only_upsamples_small_images():
    small = torch.rand(3, 32, 48)
    assert EnsureMinSize(64)(small).shape == (3, 64, 96)
    big = torch.rand(3, 200, 130)
    assert EnsureMinSize(128)(big) is big
    assert EnsureMinSized("image", 16)({"image": torch.rand(1, 8, 8, 8)})["image"].shape == (1, 16, 16, 16)


def test_seeded_degradation_is_per_item_and_cacheable():
    items = [
        {"image": MetaTensor(torch.rand(3, 32, 32) * 0.4 + 0.6, meta={"filename_or_obj": f"{i}.png"})} for i in range(3)
    ]
    t = SeededLowQualityd("image", seed=3)
    first = [t(dict(d))["lq"] for d in items]
    again = [t(dict(d))["lq"] for d in reversed(items)][::-1]
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], first[1])
    other_seed = SeededLowQualityd("image", seed=4)(dict(items[0]))["lq"]
    assert not torch.equal(first[0], other_seed)
    ds = CacheDataset(items, transform=t, cache_rate=1.0, progress=False)
    assert torch.equal(ds[0]["lq"], first[0])
    with pytest.raises(ValueError, match="id_key"):
        t({"image": torch.rand(3, 8, 8)})
    assert SeededLowQualityd("image", id_key="name")({"image": torch.rand(3, 8, 8), "name": "x"})["lq"].shape == (
        3,
        8,
        8,
    )


def test_ensure_min_size_updates_a_metatensors_affine_and_inverts():
    """A MetaTensor keeps its physical extent: the spacing shrinks as the grid grows, and the resize is recorded (the
    affine stayed, doubling the image's size in millimetres)."""
    import numpy as np
    import torch
    from monai.data import MetaTensor

    from dpe_monai.transforms import EnsureMinSize

    affine = torch.diag(torch.tensor([1.0, 1.0, 2.0, 1.0]))
    img = MetaTensor(torch.rand(1, 32, 32, 16), affine=affine)
    t = EnsureMinSize(32)
    out = t(img)
    assert out.shape == (1, 64, 64, 32)
    np.testing.assert_allclose(np.diag(out.affine.numpy())[:3], [0.5, 0.5, 1.0])
    plain = t(img.as_tensor())  # a plain tensor: the same values
    np.testing.assert_allclose(out.as_tensor().numpy(), plain.numpy(), atol=1e-6)
    assert out.applied_operations
