"""RegionalLimit: the colour path body may not darken whole regions (bundle >= 0.13.0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpe_monai.cli import default_bundle
from dpe_monai.data.fundusprep_data import SOURCE
from dpe_monai.inference import Enhancer
from dpe_monai.networks import GlobalLocalNet, RegionalLimit
from dpe_monai.networks.global_intensity import apply_global_intensity


def test_small_residuals_and_brightening_pass_unchanged() -> None:
    g = torch.Generator().manual_seed(0)
    r = 0.04 * (2 * torch.rand(1, 3, 96, 128, generator=g) - 1)  # texture / noise: every cell's mean is small
    r[..., :48, :64] += 0.5  # a brightened region
    limit = RegionalLimit(2, (0.05, 0.15))
    assert torch.equal(limit(r), r)


def test_a_darkened_region_and_its_edge_are_removed_the_rest_kept() -> None:
    r = torch.full((1, 3, 128, 128), 0.01)
    r[..., 32:96, 32:96] = -0.5  # a whole region blackened, as the dermoscopy prior did to dark retina
    out = RegionalLimit(2, (0.05, 0.15))(r)
    assert out[..., 32:96, 32:96].abs().max() == 0  # inside and up to the region's edge: the tone map itself
    assert torch.equal(out[..., :8, :], r[..., :8, :])  # two cells away: untouched
    assert out.shape == r.shape


def test_volumes_and_the_weight_range() -> None:
    r = torch.zeros(1, 1, 40, 40, 40)
    r[..., :16, :16, :16] = -1.0
    limit = RegionalLimit(3, (0.05, 0.15))
    w = limit.weight(r)
    assert w.shape == (1, 1, 40, 40, 40) and float(w.min()) == 0.0 and float(w.max()) == 1.0
    with pytest.raises(ValueError, match="0 <= t0 < t1"):
        RegionalLimit(2, (0.2, 0.1))


def test_the_limit_scripts_and_adds_no_weights() -> None:
    plain = GlobalLocalNet(channels=(8, 8, 8, 8, 8), clean_gate=True)
    limited = GlobalLocalNet(channels=(8, 8, 8, 8, 8), clean_gate=True, regional_limit=(0.05, 0.15))
    assert plain.state_dict().keys() == limited.state_dict().keys()  # shipped checkpoints load unchanged
    scripted = torch.jit.script(limited.eval())
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        assert torch.allclose(scripted(x), limited(x), atol=1e-6)


FUNDUS = SOURCE.path.parent / "retinalysis_fundusprep-1.1.0"


@pytest.mark.skipif(not FUNDUS.is_dir(), reason=f"{FUNDUS} is not extracted (python -m benchmarks.colour_conventions)")
@pytest.mark.parametrize("limit", [None, (0.05, 0.15), "shipped"])
def test_no_region_of_a_dark_fundus_photograph_is_blackened(limit) -> None:
    """retinalysis-fundusprep's ``sample_dark.png`` (a genuinely under-exposed fundus photograph the model never saw):
    on the body's colour path (bundles 0.12-0.14) the body blackened a fifth or more of the field (under 0.4 of the
    tone map) without the limit, none with it; the shipped colour path (0.15.0: NLM, no body) blackens none."""
    from dpe_monai.io import read_image

    enhancer = Enhancer.from_bundle(default_bundle(), precision="fp32")
    net = enhancer.network
    if limit != "shipped":
        net.colour_nlm, net.global_branch.strength = False, 1.0  # 0.14.0's colour path, which the limit bounds
        net.limit = None if limit is None else RegionalLimit(2, limit)
    x = torch.from_numpy(read_image(FUNDUS / "sample_dark.png").array[:, ::2, ::2] / 255.0).float()[None]
    with torch.inference_mode():
        y = enhancer(x, relative=False)
        tone = apply_global_intensity(x, net.estimate(x, torch.zeros(1))[:, :-3]).clamp(0, 1)
    field = tone.mean(1) > 0.05
    erased = float(((y.mean(1) < 0.4 * tone.mean(1)) & field).float().sum() / field.float().sum())
    if limit is None:
        assert erased > 0.2  # the failure this guards against, still there without the limit
    else:
        assert erased < 0.01
    assert np.isfinite(erased)
