"""How large the regularised feature loss is beside L1, and what it costs (docs/LOSSES.md, "Scale" and "Cost").

    python -m benchmarks.loss_scale [--threads N] [--output JSON]

On the centre 128^2 crop of ``skimage.data.immunohistochemistry()`` (RGB, [0, 1]), each degradation below is
scored against the clean crop by L1 and by :class:`~dpe_monai.losses.RegularisedFeatureLoss` with HED VGG-16
``conv5_3`` in both forms (``regulariser="constant"``, the paper's, with ``lambda_r = 1``; ``"product"``, the
authors' code). Noise is Gaussian, seeded. Cost: forward + backward of the paper's :class:`~dpe_monai.networks.DPENet`
and of the constant-form RFL on its output, batch 4 at 128^2, median of 5 after one warm-up. Writes
``benchmarks/results/loss_scale.json``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

import numpy as np
import torch

from benchmarks.common import RESULTS, machine_info, write_json
from benchmarks.flops import time_call


def _degradations(clean: torch.Tensor) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)

    def noise(sigma: float) -> torch.Tensor:
        return sigma * torch.randn(clean.shape, generator=gen)

    mean = clean.mean()
    return {
        "darkened x0.6": clean * 0.6,
        "noise sigma 4/255": (clean + noise(4 / 255)).clamp(0, 1),
        "contrast x0.7 about the mean, brightness x0.7, noise sigma 0.02": (
            ((clean - mean) * 0.7 + mean) * 0.7 + noise(0.02)
        ).clamp(0, 1),
        "noise sigma 0.01": (clean + noise(0.01)).clamp(0, 1),
    }


def run(threads: int | None) -> dict[str, Any]:
    from skimage import data

    from dpe_monai.losses import RegularisedFeatureLoss
    from dpe_monai.networks import DPENet

    if threads:
        torch.set_num_threads(threads)
    img = data.immunohistochemistry()
    h, w = img.shape[0] // 2 - 64, img.shape[1] // 2 - 64
    clean = torch.from_numpy(img[h : h + 128, w : w + 128].astype(np.float32) / 255).permute(2, 0, 1)[None]
    constant = RegularisedFeatureLoss(regulariser="constant").eval()
    product = RegularisedFeatureLoss(regulariser="product").eval()
    rows = {}
    with torch.no_grad():
        for name, lq in _degradations(clean).items():
            rows[name] = {
                "l1": float((lq - clean).abs().mean()),
                "rfl_constant": float(constant(lq, clean)),
                "rfl_product": float(product(lq, clean)),
            }
    net = DPENet(spatial_dims=2, in_channels=3, out_channels=3)
    x = clean.repeat(4, 1, 1, 1)

    def generator_step() -> None:
        net.zero_grad()
        (net(x) - x).abs().mean().backward()

    out = net(x).detach().requires_grad_(True)

    def rfl_step() -> None:
        out.grad = None
        constant(out, x).backward()

    return {
        "benchmark": "loss_scale",
        "command": shlex.join(["python", "-m", "benchmarks.loss_scale", *sys.argv[1:]]),
        "machine": machine_info(),
        "crop": "skimage.data.immunohistochemistry(), centre 128x128, RGB / 255",
        "backbone": "HED VGG-16 conv5_3 (dpe_monai.losses.RegularisedFeatureLoss defaults, lambda_r=1)",
        "rows": rows,
        "ratio_rfl_constant_to_l1": {k: v["rfl_constant"] / v["l1"] for k, v in rows.items()},
        "seconds": {
            "generator_forward_backward_batch4": time_call(generator_step, warmup=1, repeats=5)[0],
            "rfl_forward_backward_batch4": time_call(rfl_step, warmup=1, repeats=5)[0],
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--output", default=str(RESULTS / "loss_scale.json"))
    args = ap.parse_args(argv)
    result = run(args.threads)
    write_json(args.output, result)
    for name, row in result["rows"].items():
        print(f"{name}: L1 {row['l1']:.4f}, RFL constant {row['rfl_constant']:.3f}, product {row['rfl_product']:.4f}")
    print(result["seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
