"""Colour images the packaged collection does not hold: does the colour path's learned tone map still help?

    python -m benchmarks.colour_conventions [--seeds 3] [--threads 2]

Algorithm 1 is one global intensity map per image, the same for every channel, so it erases where an image's black
and white points were. The colour path (``GlobalLocalNet`` on a colour 8-bit image: not a scan) starts from a joint
percentile stretch and learns a correction of it, one grey curve for all channels, from its training targets
(dermoscopy for the most part): it can only restore the brightness convention of the images it was trained on. This
measures how far that carries, on colour images scikit-image installs with it (astronaut, coffee, chelsea: not in
the collection; retina and immunohistochemistry: their tiles are in its training split) and on the collection's H&E
test tile (``microscopy/wsidicom_data/test_tile``). Per image and noise order, ``--seeds`` Algorithm 1 versions
(seeded per image as the quality benchmark seeds items; no luminance gate) are scored by PSNR against the clean
image for:

- ``base``: the network's own base, the joint percentile stretch (its learned correction off);
- ``tone``: the learned tone map alone (no body residual);
- ``dpe``: the shipped network as the CLI runs it on a colour image (clean gate, tone map, body);
- the classical pipelines ``auto_levels`` (the 1-99 % percentiles of all channel values to 0/1),
  ``auto_levels_nlm``, ``percentile_stretch`` (the contract's 0.5-99.5 % window of the grey body, every channel
  alike: the network's base without its learned parts), ``stretch_nlm``, ``nlm_stretch``, and the unreachable
  ``oracle`` (it inverts the true factors and denoises at the true noise level).

It also records how close each clean image already is to the stretch conventions: the PSNR of the clean image
against its own ``percentile_stretch`` and its own ``auto_levels`` (a photograph that spans black to white comes back
almost unchanged; Algorithm 1 maps every channel alike, so such an image is restored by the stretch alone, whatever
a learned convention says). Writes ``benchmarks/results/colour_conventions.json``.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import BUNDLE, DEFAULT_DATASET, RESULTS, machine_info, write_json

CLASSICAL = ("auto_levels", "auto_levels_nlm", "percentile_stretch", "stretch_nlm", "nlm_stretch")
ORDERS: dict[str, dict[str, Any]] = {"noise_before": {}, "noise_after": {"noise_order": "after"}}
SKIMAGE = {  # name -> (skimage.data function, in the collection's training split)
    "astronaut": ("astronaut", False),
    "coffee": ("coffee", False),
    "chelsea": ("chelsea", False),
    "retina": ("retina", True),
    "immunohistochemistry": ("immunohistochemistry", True),
}
MAX_SIDE = 512


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        raise ValueError(f"PSNR of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    mse = float(((a.float() - b.float()) ** 2).mean())
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def images(dataset_dir: str) -> dict[str, dict[str, Any]]:
    """``{name: {"image": (3, H, W) float32 in [0, 1], "in_training": bool, "source": str}}``."""
    from skimage import data, transform

    from dpe_monai.data import ensure_collection
    from dpe_monai.evaluators import load_datalist
    from dpe_monai.evaluators.common import load_clean

    out: dict[str, dict[str, Any]] = {}
    for name, (fn, seen) in SKIMAGE.items():
        im = getattr(data, fn)().astype(np.float32) / 255.0
        if max(im.shape[:2]) > MAX_SIDE:  # retina is 1411^2: the same resize for every method
            im = transform.resize(im, (MAX_SIDE, MAX_SIDE), anti_aliasing=True).astype(np.float32)
        out[name] = {
            "image": torch.from_numpy(im).permute(2, 0, 1).contiguous(),
            "in_training": seen,
            "source": f"skimage.data.{fn}()",
        }
    for item in load_datalist(str(ensure_collection(dataset_dir)), "test"):
        if "wsidicom_data" in str(item["image"]):
            out["he_tile"] = {"image": load_clean(item)["image"], "in_training": False, "source": str(item["image"])}
    return out


def run(dataset_dir: str, seeds: int) -> dict[str, Any]:
    from dpe_monai.baselines import ClassicalEnhancer, OracleEnhancer
    from dpe_monai.evaluators.common import degrade, enhance, for_item
    from dpe_monai.inference import Enhancer
    from dpe_monai.networks.global_intensity import apply_global_intensity

    start = time.perf_counter()
    dpe = Enhancer.from_bundle(str(BUNDLE), precision="fp32")
    net = dpe.network.eval()
    methods = {m: ClassicalEnhancer(m) for m in CLASSICAL}
    oracle = OracleEnhancer()
    rows: list[dict[str, Any]] = []
    conventions: dict[str, Any] = {}
    for name, info in images(dataset_dir).items():
        clean = info["image"]
        conventions[name] = {
            "in_training": info["in_training"],
            "source": info["source"],
            "size": list(clean.shape[1:]),
            "clean_vs_own_percentile_stretch_db": _psnr(enhance(methods["percentile_stretch"], clean), clean),
            "clean_vs_own_auto_levels_db": _psnr(enhance(methods["auto_levels"], clean), clean),
        }
        for order, kwargs in ORDERS.items():
            for seed in range(seeds):
                lq, params = degrade(clean, seed, name, brightness_threshold=None, **kwargs)
                x = lq[None]
                with torch.inference_mode():
                    est = net.estimate(x, torch.zeros(1))  # columns: tone map, noise level, gate w, route flag
                    tone = apply_global_intensity(x, est[:, :-3]).clamp(0.0, 1.0)
                    base = apply_global_intensity(x, net.global_branch(x, relative=torch.ones(1))).clamp(0.0, 1.0)
                row = {
                    "image": name,
                    "order": order,
                    "seed": seed,
                    "gate_w": float(est[0, -2]),
                    "base": _psnr(base[0], clean),
                    "tone": _psnr(tone[0], clean),
                    "dpe": _psnr(enhance(for_item(dpe, False), lq), clean),
                    "oracle": _psnr(enhance(for_item(oracle, False, params), lq), clean),
                    "degraded": _psnr(lq, clean),
                }
                row.update({m: _psnr(enhance(fn, lq), clean) for m, fn in methods.items()})
                rows.append(row)
                print({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    keys = ["degraded", "base", "tone", "dpe", *CLASSICAL, "oracle"]

    def mean(sel: list[dict[str, Any]]) -> dict[str, float]:
        return {k: float(np.mean([r[k] for r in sel])) for k in keys}

    summary: dict[str, Any] = {}
    for order in ORDERS:
        sel = [r for r in rows if r["order"] == order]
        per_image = {n: mean([r for r in sel if r["image"] == n]) for n in conventions}
        unseen = [n for n in conventions if not conventions[n]["in_training"]]
        summary[order] = {
            "per_image": per_image,
            "mean_of_images": {k: float(np.mean([per_image[n][k] for n in conventions])) for k in keys},
            "mean_of_unseen_images": {k: float(np.mean([per_image[n][k] for n in unseen])) for k in keys},
            "unseen": unseen,
        }
    return {
        "benchmark": "colour_conventions",
        "command": shlex.join(["python", "-m", "benchmarks.colour_conventions", *sys.argv[1:]]),
        "machine": machine_info(),
        "seeds": seeds,
        "max_side": MAX_SIDE,
        "conventions": conventions,
        "summary": summary,
        "rows": rows,
        "seconds": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset_dir", default=str(DEFAULT_DATASET))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--output", default=str(RESULTS / "colour_conventions.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args.dataset_dir, args.seeds)
    write_json(args.output, result)
    for order, s in result["summary"].items():
        print(order, {k: round(v, 2) for k, v in s["mean_of_unseen_images"].items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
